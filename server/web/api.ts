/**
 * The dashboard's way to the fleet server's API: the session cookie travels by itself
 * (same origin), the CSRF token of the session goes with every mutating call, and an error
 * answer becomes an ApiError carrying the server's stable code (docs/errors.md).
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let csrf: string | null = null;

export function setCsrf(token: string | null): void {
  csrf = token;
}

async function failure(res: Response): Promise<ApiError> {
  let body: { code?: string; message?: string } = {};
  try {
    body = (await res.json()) as typeof body;
  } catch {
    // Not JSON: the status says enough.
  }
  return new ApiError(res.status, body.code ?? `HTTP_${res.status}`, body.message ?? res.statusText);
}

export interface Answer<T> {
  readonly body: T;
  readonly headers: Headers;
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<Answer<T>> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['x-csrf-token'] = csrf;
  const res = await fetch(path, { method, headers, credentials: 'same-origin', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  if (!res.ok) {
    const e = await failure(res);
    if (res.status === 401 && csrf !== null) window.dispatchEvent(new CustomEvent('sonde:signed-out'));
    throw e;
  }
  const text = res.status === 204 ? '' : await res.text();
  return { body: (text ? JSON.parse(text) : null) as T, headers: res.headers };
}

export const get = async <T>(path: string): Promise<T> => (await call<T>('GET', path)).body;
export const post = async <T>(path: string, body: unknown = {}): Promise<T> => (await call<T>('POST', path, body)).body;
export const patch = async <T>(path: string, body: unknown): Promise<T> => (await call<T>('PATCH', path, body)).body;
export const del = async (path: string): Promise<void> => {
  await call<unknown>('DELETE', path);
};

/**
 * Uploads a file as the raw body (a pack), reporting progress: fetch cannot report upload
 * progress, XMLHttpRequest can. The file is streamed from disk by the browser, never read whole.
 */
export function upload<T>(path: string, file: Blob, onProgress: (sent: number, total: number) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open('POST', path);
    x.setRequestHeader('content-type', 'application/octet-stream');
    if (csrf) x.setRequestHeader('x-csrf-token', csrf);
    x.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    x.onerror = () => reject(new ApiError(0, 'NETWORK_ERROR', 'the upload was cut: the server could not be reached'));
    x.onload = () => {
      let body: { code?: string; message?: string } = {};
      try {
        body = JSON.parse(x.responseText) as typeof body;
      } catch {
        // not JSON
      }
      if (x.status >= 200 && x.status < 300) resolve(body as T);
      else reject(new ApiError(x.status, body.code ?? `HTTP_${x.status}`, body.message ?? x.statusText));
    };
    x.send(file);
  });
}

export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

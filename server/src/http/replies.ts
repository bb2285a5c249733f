import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { PackError } from '../../../pack/src/index.js';
import { HTTP_STATUS, ServerError } from '../errors.js';

/**
 * Error answers: `{ statusCode, code, error, message }` (fastify's own shape), with the code of
 * docs/errors.md. A pack refused at upload answers 422 with the pack's code.
 */
export interface ErrorBody {
  readonly statusCode: number;
  readonly code: string;
  readonly error: string;
  readonly message: string;
}

const REASONS: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  416: 'Range Not Satisfiable',
  422: 'Unprocessable Entity',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  507: 'Insufficient Storage',
};

/** Pack codes that describe the server's own keyring, not the upload. */
const SERVER_SIDE_PACK_CODES = new Set(['KEYRING_INVALID', 'REVOCATIONS_INVALID', 'STAGING_WRITE_FAILED']);

export function errorBody(statusCode: number, code: string, message: string): ErrorBody {
  return { statusCode, code, error: REASONS[statusCode] ?? 'Error', message };
}

/** A request whose body the server will not read: close the connection after answering. */
function hasUnreadBody(req: FastifyRequest): boolean {
  return !req.raw.readableEnded && (req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined);
}

export function sendError(req: FastifyRequest, reply: FastifyReply, statusCode: number, code: string, message: string): FastifyReply {
  if (hasUnreadBody(req)) reply.header('connection', 'close');
  return reply.code(statusCode).type('application/json; charset=utf-8').send(errorBody(statusCode, code, message));
}

export function errorHandler(log: Logger) {
  return (error: FastifyError | Error, req: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (error instanceof ServerError) return sendError(req, reply, HTTP_STATUS[error.code], error.code, error.message);
    if (error instanceof PackError) {
      const status = SERVER_SIDE_PACK_CODES.has(error.code) ? 500 : 422;
      return sendError(req, reply, status, error.code, error.message);
    }
    const status = (error as FastifyError).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      const code = status === 413 ? 'BODY_TOO_LARGE' : 'BODY_INVALID';
      return sendError(req, reply, status, code, error.message);
    }
    log.error({ err: error.stack ?? error.message, route: req.routeOptions.url, method: req.method }, 'request failed');
    return sendError(req, reply, 500, 'INTERNAL_ERROR', 'internal error; see the server log');
  };
}

/** Parses a body, query or params object; a failure is BODY_INVALID naming the field. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, what: 'body' | 'query' | 'params'): z.output<S> {
  const r = schema.safeParse(value ?? (what === 'body' ? undefined : {}));
  if (!r.success) {
    const i = r.error.issues[0];
    const where = i && i.path.length ? `${what}.${i.path.join('.')}` : what;
    throw new ServerError('BODY_INVALID', `${where}: ${i?.message ?? 'invalid'}`);
  }
  return r.data;
}

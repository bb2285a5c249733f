import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../probe-app/probe-root.js';

/**
 * The real vsftpd from Debian, run by a test as a foreground child process (`background=NO`) on
 * loopback, on a free high port, writing anonymous uploads into `<ftp root>/incoming`: the same
 * shape as a probe's FTP drop (docs/ftp-drop.md), whose agent watches that folder as its inbox.
 * notes/machine-facts.md §4 has the pitfalls this respects: the anonymous root must be mode 555
 * and not writable, the upload folder is owned by ftp:ftp, secure_chroot_dir must exist,
 * seccomp_sandbox=NO, and one listen_address per process.
 *
 * vsftpd chroots and drops to the `ftp` user, so it needs root (as the lab and a probe do).
 */
export const VSFTPD = '/usr/sbin/vsftpd';

export interface FtpServer {
  readonly host: string;
  readonly port: number;
  /** The anonymous root (mode 555) and its upload folder (ftp:ftp): the agent's inbox. */
  readonly root: string;
  readonly incoming: string;
  readonly logFile: string;
  readonly pid: number;
  stop(): Promise<void>;
}

const running = new Set<FtpServer>();

/** The config a probe uses (docs/ftp-drop.md), with test paths, ports and the loopback address. */
export function vsftpdConfig(o: { port: number; pasvMin: number; pasvMax: number; root: string; empty: string; logFile: string; address?: string }): string {
  return `# Sonde FTP drop: anonymous uploads into incoming/, which the agent watches as its inbox
listen=YES
listen_ipv6=NO
background=NO
listen_address=${o.address ?? '127.0.0.1'}
listen_port=${o.port}
anonymous_enable=YES
anon_root=${o.root}
no_anon_password=YES
local_enable=NO
write_enable=YES
anon_upload_enable=YES
anon_mkdir_write_enable=NO
anon_other_write_enable=YES
anon_umask=077
pasv_enable=YES
pasv_min_port=${o.pasvMin}
pasv_max_port=${o.pasvMax}
connect_from_port_20=NO
idle_session_timeout=300
data_connection_timeout=120
secure_chroot_dir=${o.empty}
seccomp_sandbox=NO
xferlog_enable=YES
xferlog_std_format=NO
vsftpd_log_file=${o.logFile}
pam_service_name=vsftpd
ssl_enable=NO
`;
}

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const s = createServer();
    s.once('error', () => done(false));
    s.listen(port, '127.0.0.1', () => s.close(() => done(true)));
  });
}

/** `count` consecutive free loopback ports (passive data connections), from a random base. */
export async function freePortRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    let free = true;
    for (let p = base; p < base + count && free; p++) free = await portIsFree(p);
    if (free) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

async function ftpUser(): Promise<{ uid: number; gid: number }> {
  const line = (await readFile('/etc/passwd', 'utf8')).split('\n').find((l) => l.startsWith('ftp:'));
  const [, , uid, gid] = line?.split(':') ?? [];
  if (!uid || !gid) throw new Error('there is no `ftp` user: install vsftpd (scripts/setup.sh)');
  return { uid: Number(uid), gid: Number(gid) };
}

/** Resolves once the server greets with 220; rejects when the child exits first. */
function greeting(port: number, child: ChildProcess, stderr: () => string, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  return new Promise((done, fail) => {
    const attempt = (): void => {
      if (child.exitCode !== null || child.signalCode !== null) return fail(new Error(`vsftpd exited (${child.exitCode ?? child.signalCode}): ${stderr().trim()}`));
      if (Date.now() > until) return fail(new Error(`vsftpd did not answer on port ${port}: ${stderr().trim()}`));
      const sock = connect(port, '127.0.0.1');
      let text = '';
      sock.on('data', (d: Buffer) => {
        text += d.toString();
        if (/^220[ -]/m.test(text)) {
          sock.end('QUIT\r\n');
          done();
        }
      });
      sock.on('error', () => {
        sock.destroy();
        setTimeout(attempt, 25);
      });
    };
    attempt();
  });
}

export async function startVsftpd(): Promise<FtpServer> {
  if (!existsSync(VSFTPD)) throw new Error(`${VSFTPD} is missing: run scripts/setup.sh as root (it installs the vsftpd package)`);
  if (process.getuid?.() !== 0) throw new Error('vsftpd needs root (it chroots and drops to the ftp user)');
  const dir = await mkdtemp(join(tmpdir(), 'sonde-vsftpd-'));
  const root = join(dir, 'ftp');
  const incoming = join(root, 'incoming');
  const empty = join(dir, 'empty');
  const logFile = join(dir, 'vsftpd.log');
  await mkdir(incoming, { recursive: true });
  await mkdir(empty);
  const ftp = await ftpUser();
  await chown(incoming, ftp.uid, ftp.gid);
  await chmod(incoming, 0o755);
  // vsftpd refuses an anonymous root that the ftp user could write to.
  await chmod(root, 0o555);
  let lastError: unknown;
  // Ports are free when picked, not reserved: another process may take one first. Try again.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const pasvMin = await freePortRange(10);
    const conf = join(dir, 'vsftpd.conf');
    await writeFile(conf, vsftpdConfig({ port, pasvMin, pasvMax: pasvMin + 9, root, empty, logFile }));
    // Its own process group, so stop() reaches the per-session processes too.
    const child = spawn(VSFTPD, [conf], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      await greeting(port, child, () => stderr);
    } catch (e) {
      lastError = e;
      killGroup(child, 'SIGKILL');
      await exited;
      continue;
    }
    const server: FtpServer = {
      host: '127.0.0.1',
      port,
      root,
      incoming,
      logFile,
      pid: child.pid!,
      stop: async () => {
        running.delete(server);
        killGroup(child, 'SIGTERM');
        const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 2000);
        await exited;
        clearTimeout(timer);
        await chmod(root, 0o755).catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
      },
    };
    running.add(server);
    return server;
  }
  await rm(dir, { recursive: true, force: true });
  throw lastError;
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // already gone
  }
}

/** For afterAll: every server this process started and has not stopped. */
export async function stopAllVsftpd(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
}

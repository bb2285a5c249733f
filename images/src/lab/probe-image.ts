import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { chmod, chown, mkdir, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The lab's probe base image: a small read-only lower layer shared by every probe of every lab.
 * The host's /usr (and so node, busybox, vsftpd) is bind-mounted over `usr/` read-only; the host
 * is merged-/usr, so /bin, /lib, /lib64 and /sbin are symlinks into it. busybox is init, or the
 * host's systemd for a `--init systemd` probe (its boot, agent and FTP drop are units). The
 * layer holds no secret and no state: each probe's writable overlay (its `delta`) holds the
 * agent, the probe root with its release, the FTP drop and the enrollment file.
 */
export const FTP_UID = 990;
export const FTP_GID = 990;
export const PROBE_APP_PORT = 8080;

/** Where the agent lives inside a probe: the sonde-agent package's /usr/lib/sonde, mounted there read-only (lxc/src/agent-package.ts). */
export const AGENT_HOME = '/opt/sonde';
export const AGENT_CONFIG = '/etc/sonde/agent.json';
export const AGENT_CREDENTIALS = '/etc/sonde/enrollment.json';
export const AGENT_LOG = '/var/log/sonde-agent.log';
export const AGENT_STATE = '/var/lib/sonde';
export const FTP_ROOT = '/srv/sonde-ftp';
/** Host routes (`<addr> via <gateway>` lines) to a fleet server elsewhere on this machine. */
export const PROBE_ROUTES = '/etc/sonde/routes';
export const FTP_INBOX = `${FTP_ROOT}/incoming`;
/** The drop's outbox (sealed diagnostics bundles), downloadable by anonymous FTP. */
export const FTP_OUTBOX = `${FTP_ROOT}/outgoing`;

const INITTAB = `# Sonde lab probe: busybox init (images/src/lab/probe-image.ts)
::sysinit:/etc/init.d/rcS
::respawn:/etc/sonde/run-agent
::respawn:/usr/sbin/vsftpd /etc/sonde/vsftpd.conf
::shutdown:/bin/busybox sync
`;

/** The builder's init runs nothing: the image tooling drives `sonde agent install` itself. */
export const BUILDER_INITTAB = `::sysinit:/etc/init.d/rcS
::shutdown:/bin/busybox sync
`;

const RCS = `#!/bin/sh
# The probe's boot: no DHCP, no network set-up (LXC configures eth0; there is no default route).
/bin/busybox hostname -F /etc/hostname 2>/dev/null
/bin/busybox mkdir -p /run/vsftpd/empty /var/log ${AGENT_STATE}
# Host routes only (a server on another address of the lab's host); never a default route.
[ -f ${PROBE_ROUTES} ] && while read -r dst via gw; do /bin/busybox ip route add "$dst" via "$gw" dev eth0; done < ${PROBE_ROUTES}
echo "probe $(/bin/busybox hostname) booted at $(/bin/busybox date +%s)" >> /var/log/boot.log
`;

/**
 * The agent's command line, as the package's unit has it: the launcher picks the agent (the
 * packaged one or a committed self-update) and runs a self-update on trial (docs/self-update.md).
 */
const LAUNCH_AGENT = `/usr/bin/env SONDE_AGENT_PACKAGED=${AGENT_HOME} SONDE_AGENT_HOME=${AGENT_STATE}/agent ${AGENT_HOME}/agent-launch agent run --config ${AGENT_CONFIG}`;

const RUN_AGENT = `#!/bin/sh
# Started (and restarted when it exits) by busybox init.
exec ${LAUNCH_AGENT} >> ${AGENT_LOG} 2>&1
`;

/** docs/ftp-drop.md's vsftpd config, on every address of the probe's own network namespace. */
const VSFTPD_CONF = `# Sonde FTP drop (docs/ftp-drop.md): anonymous uploads into incoming/, downloads from outgoing/
listen=YES
listen_ipv6=NO
background=NO
listen_port=21
anonymous_enable=YES
anon_root=${FTP_ROOT}
no_anon_password=YES
local_enable=NO
write_enable=YES
anon_upload_enable=YES
anon_mkdir_write_enable=NO
anon_other_write_enable=YES
anon_umask=077
pasv_enable=YES
pasv_min_port=30000
pasv_max_port=30009
connect_from_port_20=NO
idle_session_timeout=300
data_connection_timeout=120
secure_chroot_dir=/run/vsftpd/empty
seccomp_sandbox=NO
xferlog_enable=YES
xferlog_std_format=NO
vsftpd_log_file=/var/log/vsftpd.log
ssl_enable=NO
ftp_username=ftp
nopriv_user=nobody
`;

/** What a lab probe boots as PID 1 (docs/lab.md): busybox init, or the host's systemd. */
export type ProbeInit = 'busybox' | 'systemd';

/**
 * A systemd probe's boot, as units: what rcS does (one shot, before the others), the agent
 * (restarted when it exits, logging where the busybox probe's agent logs) and the FTP drop.
 */
const SYSTEMD_UNITS: Readonly<Record<string, string>> = {
  'sonde-boot.service': `[Unit]
Description=Sonde lab probe boot: host routes, boot log
DefaultDependencies=no
After=local-fs.target
Before=sonde-agent.service sonde-ftp.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/etc/init.d/rcS

[Install]
WantedBy=multi-user.target
`,
  'sonde-agent.service': `[Unit]
Description=Sonde agent
After=sonde-boot.service

[Service]
ExecStart=${LAUNCH_AGENT}
StandardOutput=append:${AGENT_LOG}
StandardError=append:${AGENT_LOG}
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
`,
  'sonde-ftp.service': `[Unit]
Description=Sonde FTP drop (vsftpd)
After=sonde-boot.service

[Service]
ExecStart=/usr/sbin/vsftpd /etc/sonde/vsftpd.conf
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
`,
};

/** The unit a systemd builder masks, so that no agent daemon runs while the layer is built. */
export const SYSTEMD_AGENT_UNIT = 'sonde-agent.service';

/** The agent's config on a lab probe: quick health checks and state reports, the FTP drop. */
export function labAgentConfig(): object {
  return {
    root: '/',
    state: AGENT_STATE,
    credentials: AGENT_CREDENTIALS,
    inbox: FTP_INBOX,
    health: { required: 2, intervalMs: 500, windowMs: 20000 },
    // The lab's quick settings: a state every 10 s, a dead probe noticed in 45 s (docs/traffic.md
    // has the field's defaults; bench/idle-traffic measures those).
    report: { stateIntervalMs: 10000 },
    mqtt: { keepaliveSeconds: 30 },
    reconnect: { minMs: 500, maxMs: 5000 },
    poll: { intervalMs: 5000, maxIntervalMs: 30000, afterOfflineMs: 10000 },
    drop: { scanIntervalMs: 500, stableMs: 1000, incompleteExpiryMs: 600000, outbox: FTP_OUTBOX },
    download: { attempts: 50, maxDelayMs: 2000, idleTimeoutMs: 4000 },
    // A new agent on trial has 30 s to reach the server (the field's default is 300 s).
    selfUpdate: { windowSeconds: 30, settleMs: 5000 },
    log: { level: 'info' },
  };
}

async function write(path: string, text: string, mode = 0o644): Promise<void> {
  await writeFile(path, text, { mode });
  await chmod(path, mode);
}

/** Writes the base layer into `dir` (which must not exist). Takes a few milliseconds. */
export async function writeBaseLayer(dir: string, init: ProbeInit = 'busybox'): Promise<void> {
  for (const d of ['usr', 'etc/init.d', 'etc/sonde', 'var/log', 'var/lib', 'tmp', 'run', 'proc', 'sys', 'dev', 'root', 'mnt/samples', AGENT_HOME.slice(1)]) {
    await mkdir(join(dir, d), { recursive: true });
  }
  await chmod(join(dir, 'tmp'), 0o1777);
  for (const [link, target] of [['bin', 'usr/bin'], ['lib', 'usr/lib'], ['lib64', 'usr/lib64'], ['sbin', 'usr/sbin']] as const) {
    await symlink(target, join(dir, link));
  }
  await write(join(dir, 'etc/passwd'), `root:x:0:0:root:/root:/bin/sh\nftp:x:${FTP_UID}:${FTP_GID}:ftp:${FTP_ROOT}:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`);
  await write(join(dir, 'etc/group'), `root:x:0:\nftp:x:${FTP_GID}:\nnogroup:x:65534:\n`);
  await write(join(dir, 'etc/shadow'), 'root:*:19000:0:99999:7:::\nftp:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n', 0o600);
  await write(join(dir, 'etc/nsswitch.conf'), 'hosts: files\npasswd: files\ngroup: files\nshadow: files\n');
  await write(join(dir, 'etc/hosts'), '127.0.0.1 localhost\n::1 localhost\n');
  await write(join(dir, 'etc/resolv.conf'), '');
  await write(join(dir, 'etc/hostname'), 'probe\n');
  await write(join(dir, 'etc/init.d/rcS'), RCS, 0o755);
  if (init === 'busybox') {
    await write(join(dir, 'etc/inittab'), INITTAB);
  } else {
    // systemd: a transient machine id each boot, the host's os-release, and the probe's units enabled.
    await write(join(dir, 'etc/machine-id'), '');
    await symlink('../usr/lib/os-release', join(dir, 'etc/os-release'));
    await write(join(dir, 'etc/group'), `root:x:0:\nftp:x:${FTP_GID}:\nnogroup:x:65534:\nsystemd-journal:x:999:\n`);
    const units = join(dir, 'etc/systemd/system');
    await mkdir(join(units, 'multi-user.target.wants'), { recursive: true });
    for (const [name, text] of Object.entries(SYSTEMD_UNITS)) {
      await write(join(units, name), text);
      await symlink(`../${name}`, join(units, 'multi-user.target.wants', name));
    }
  }
  await write(join(dir, 'etc/sonde/run-agent'), RUN_AGENT, 0o755);
  await write(join(dir, 'etc/sonde/vsftpd.conf'), VSFTPD_CONF);
  await write(join(dir, AGENT_CONFIG.slice(1)), `${JSON.stringify(labAgentConfig(), null, 2)}\n`);
  // vsftpd refuses an anonymous root the ftp user can write to; the inbox is the ftp user's.
  await mkdir(join(dir, FTP_INBOX.slice(1)), { recursive: true });
  await chmod(join(dir, FTP_ROOT.slice(1)), 0o555);
  await chown(join(dir, FTP_INBOX.slice(1)), FTP_UID, FTP_GID);
  await chmod(join(dir, FTP_INBOX.slice(1)), 0o755);
  // The outbox is root's (the agent writes it); anonymous FTP reads its 0644 files.
  await mkdir(join(dir, FTP_OUTBOX.slice(1)), { recursive: true });
  await chmod(join(dir, FTP_OUTBOX.slice(1)), 0o755);
}

/**
 * A cheap fingerprint of a folder tree: paths, sizes and mtimes (for cache keys). Synchronous on
 * purpose: a few hundred stat calls take milliseconds this way, a tenth of a second as promises.
 */
export function treeFingerprint(dir: string, hash = createHash('sha256')): string {
  const walk = (d: string, rel: string): void => {
    const entries = readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p, `${rel}/${e.name}`);
      else {
        const st = statSync(p);
        hash.update(`${rel}/${e.name}\0${st.size}\0${st.mtimeMs}\n`);
      }
    }
  };
  walk(dir, '');
  return hash.digest('hex').slice(0, 16);
}

/**
 * Builds into a temporary sibling and renames it into place, so parallel labs that need the same
 * layer never see half of one. `build` gets the temporary folder. The folder's mtime is set each
 * time it is handed out: when it was last used, for `sonde lab prune` (lxc/src/lab-prune.ts).
 */
export async function buildOnce(dir: string, build: (tmp: string) => Promise<void>): Promise<string> {
  try {
    await stat(dir); // renamed into place only once whole
    await stampUsed(dir);
    return dir;
  } catch {
    // not built yet
  }
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  await mkdir(tmp, { recursive: true });
  try {
    await build(tmp);
    try {
      await rename(tmp, dir);
    } catch (e) {
      // Someone else finished first: theirs is as good as ours.
      if ((e as NodeJS.ErrnoException).code !== 'ENOTEMPTY' && (e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      await rm(tmp, { recursive: true, force: true });
    }
    await stampUsed(dir);
    return dir;
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Marks an image folder as used now (its mtime), which `sonde lab prune` reads as "keep it". */
export async function stampUsed(dir: string): Promise<void> {
  const now = new Date();
  await utimes(dir, now, now).catch(() => undefined); // a folder of another user's home: the stamp is only a hint
}

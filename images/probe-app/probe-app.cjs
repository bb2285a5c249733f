'use strict';
/**
 * probe-app: the sample network-supervision service that Sonde's sample packs ship (see README.md).
 *
 * One source file serves every sample release. What a release runs on is stated by the
 * release.json beside this file (db and config version ranges, an optional test fault); what the
 * app writes follows the schema version of the database it finds (v1 latency only, v2 adds
 * severity and alarms, v3 stores latency in microseconds and targets carry a site), so a database
 * that was migrated wrongly shows up as failed writes or wrong rows.
 *
 * Run as `node probe-app.cjs` with PROBE_ROOT (the probe root), PROBE_SLOT (the slot it runs
 * from) and NODE_PATH (a node_modules holding better-sqlite3).
 */
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const EXIT_CRASH = 1;
const EXIT_ENVIRONMENT = 2;
const EXIT_UNSUPPORTED = 3;
const DEFAULT_POLL_MS = 200;
const MIN_POLL_MS = 10;

function log(event, fields) {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), app: 'probe-app', event, ...fields })}\n`);
}

/** One line on stderr, then exit: what an operator or the agent reads when the app will not start. */
function refuse(code, line) {
  process.stderr.write(`${line}\n`);
  process.exit(code);
}

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** Reads `a.b.c` from an object, or undefined. */
function lookup(obj, dotted) {
  let v = obj;
  for (const key of dotted.split('.')) {
    if (v === null || typeof v !== 'object' || !Object.prototype.hasOwnProperty.call(v, key)) return undefined;
    v = v[key];
  }
  return v;
}

function inRange(value, range) {
  return Number.isInteger(value) && value >= range.min && value <= range.max;
}

// ---------------------------------------------------------------------------------------------
// Start-up: release, fault, environment, config, database. Nothing is written before all checks
// pass, so a refused start leaves the probe exactly as it was.

let release;
try {
  release = readJson(path.join(__dirname, 'release.json'));
} catch (e) {
  refuse(EXIT_ENVIRONMENT, `probe-app: cannot read ${path.join(__dirname, 'release.json')}: ${e.message}`);
}
const tag = `probe-app ${release.version}`;
const fault = release.fault ?? null;

if (fault === 'crash') {
  log('fault', { fault, version: release.version });
  process.stderr.write(`${tag}: crashing at start (test fault "crash" in release.json)\n`);
  process.exit(EXIT_CRASH);
}
if (fault !== null && fault !== 'unhealthy') {
  refuse(EXIT_ENVIRONMENT, `${tag}: unknown fault ${JSON.stringify(fault)} in release.json (known: unhealthy, crash)`);
}
for (const key of ['db', 'config']) {
  const r = release[key];
  if (!r || !Number.isInteger(r.min) || !Number.isInteger(r.max) || r.min > r.max) {
    refuse(EXIT_ENVIRONMENT, `${tag}: release.json "${key}" must be {"min": n, "max": m} with n <= m`);
  }
}

const root = process.env.PROBE_ROOT;
if (!root) refuse(EXIT_ENVIRONMENT, `${tag}: PROBE_ROOT is not set`);
const slot = process.env.PROBE_SLOT || path.dirname(__dirname);
const files = {
  config: path.join(root, 'etc', 'config.json'),
  db: path.join(root, 'data', 'probe.db'),
  license: path.join(root, 'license', 'license.json'),
  runDir: path.join(root, 'run'),
  inhibit: path.join(root, 'run', 'inhibit'),
};

let Database;
try {
  Database = require('better-sqlite3');
} catch (e) {
  refuse(EXIT_ENVIRONMENT, `${tag}: cannot load better-sqlite3 (set NODE_PATH to a node_modules that has it): ${e.message}`);
}

function loadConfig() {
  const c = readJson(files.config);
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new Error('not a JSON object');
  // A decimal string is accepted too, so that a template may take the port from a site variable.
  if (typeof c.port === 'string' && /^[0-9]{1,5}$/.test(c.port)) c.port = Number(c.port);
  if (!Number.isInteger(c.port) || c.port < 1 || c.port > 65535) throw new Error('"port" must be an integer 1..65535');
  return c;
}

let config;
try {
  config = loadConfig();
} catch (e) {
  refuse(EXIT_ENVIRONMENT, `${tag}: cannot use ${files.config}: ${e.message}`);
}

const problems = [];
if (!fs.existsSync(files.db)) {
  refuse(EXIT_UNSUPPORTED, `${tag} refuses to start: database ${files.db} is missing (supported database versions ${release.db.min}..${release.db.max})`);
}
const db = new Database(files.db, { fileMustExist: true });
const dbVersion = db.pragma('user_version', { simple: true });
if (!inRange(dbVersion, release.db)) problems.push(`database version ${dbVersion} is outside the supported ${release.db.min}..${release.db.max}`);
const configVersion = config.configVersion;
if (!inRange(configVersion, release.config)) {
  problems.push(`configVersion ${JSON.stringify(configVersion ?? null)} is outside the supported ${release.config.min}..${release.config.max}`);
}
if (problems.length > 0) {
  db.close();
  refuse(EXIT_UNSUPPORTED, `${tag} refuses to start: ${problems.join('; ')}`);
}
db.pragma('busy_timeout = 5000');
db.pragma('journal_mode = WAL');

// ---------------------------------------------------------------------------------------------
// Measurements. Each tick writes one row per enabled target in one transaction. Every write is
// synchronous (better-sqlite3) and signal handlers run between ticks, never inside one: once
// `paused` is set no further row is written, which is what lets the agent compare bytes.

function pollMs(c) {
  const v = lookup(c, 'schedule.intervalMs') ?? lookup(c, 'measurements.intervalMs') ?? c.pollMs ?? DEFAULT_POLL_MS;
  return Number.isInteger(v) && v >= MIN_POLL_MS ? v : DEFAULT_POLL_MS;
}

function thresholds(c) {
  return {
    warning: Number(lookup(c, 'alarms.warningMs') ?? 40),
    critical: Number(lookup(c, 'alarms.criticalMs') ?? 80),
  };
}

let tick = 0;
/** A fake latency in ms with one decimal: deterministic from the tick and the target. */
function fakeLatency(targetId) {
  return ((tick * 37 + targetId * 53) % 950) / 10;
}

function severityOf(latency, t) {
  if (latency >= t.critical) return 'critical';
  if (latency >= t.warning) return 'warning';
  return 'ok';
}

const statements = (() => {
  const s = { targets: db.prepare('SELECT id FROM targets WHERE enabled = 1 ORDER BY id') };
  if (dbVersion === 1) {
    s.insert = db.prepare('INSERT INTO measurements (target_id, taken_at, latency_ms) VALUES (?, ?, ?)');
  } else if (dbVersion === 2) {
    s.insert = db.prepare('INSERT INTO measurements (target_id, taken_at, latency_ms, severity) VALUES (?, ?, ?, ?)');
  } else {
    s.insert = db.prepare('INSERT INTO measurements (target_id, taken_at, latency_us, severity) VALUES (?, ?, ?, ?)');
  }
  if (dbVersion >= 2) {
    s.alarm = db.prepare('INSERT INTO alarms (target_id, raised_at, severity, measurement_id) VALUES (?, ?, ?, ?)');
    s.alarmCount = db.prepare('SELECT count(*) AS n FROM alarms');
  }
  s.count = db.prepare('SELECT count(*) AS n FROM measurements');
  s.targetCount = db.prepare('SELECT count(*) AS n FROM targets');
  s.addTarget = dbVersion >= 3
    ? db.prepare('INSERT OR IGNORE INTO targets (name, address, site) VALUES (?, ?, ?)')
    : db.prepare('INSERT OR IGNORE INTO targets (name, address) VALUES (?, ?)');
  return s;
})();

const measureOnce = db.transaction(() => {
  tick += 1;
  const now = new Date().toISOString();
  const t = thresholds(config);
  for (const { id } of statements.targets.all()) {
    const latency = fakeLatency(id);
    if (dbVersion === 1) {
      statements.insert.run(id, now, latency);
      continue;
    }
    const severity = severityOf(latency, t);
    const value = dbVersion === 2 ? latency : Math.round(latency * 1000);
    const { lastInsertRowid } = statements.insert.run(id, now, value, severity);
    if (severity !== 'ok') statements.alarm.run(id, now, severity, lastInsertRowid);
  }
});

/** Reference targets shipped as release data (config "targets.referenceFile", from 1.1.1). */
function importReferenceTargets() {
  const name = lookup(config, 'targets.referenceFile');
  if (typeof name !== 'string') return;
  const file = path.join(slot, 'data', path.basename(name));
  let list;
  try {
    list = readJson(file);
  } catch (e) {
    log('reference-targets-unreadable', { file, error: e.message });
    return;
  }
  let added = 0;
  db.transaction(() => {
    for (const t of Array.isArray(list) ? list : []) {
      if (typeof t?.name !== 'string' || typeof t?.address !== 'string') continue;
      const r = dbVersion >= 3 ? statements.addTarget.run(t.name, t.address, t.site ?? 'default') : statements.addTarget.run(t.name, t.address);
      added += r.changes;
    }
  })();
  log('reference-targets', { file, added });
}

let paused = false;
let lastWriteError = null;
let timer = null;

function startTimer() {
  if (timer) clearInterval(timer);
  timer = setInterval(() => {
    if (paused) return;
    try {
      measureOnce();
      lastWriteError = null;
    } catch (e) {
      if (lastWriteError === null) log('write-failed', { error: e.message });
      lastWriteError = e.message;
    }
  }, pollMs(config));
}

function setPaused(value, by) {
  if (paused === value) return;
  paused = value;
  if (paused) {
    // Fold the WAL into probe.db so that the main file alone holds every row while paused.
    try {
      db.pragma('wal_checkpoint(TRUNCATE)');
    } catch (e) {
      log('checkpoint-failed', { error: e.message });
    }
  }
  log(paused ? 'measurements-paused' : 'measurements-resumed', { by });
}

// ---------------------------------------------------------------------------------------------
// Licence: evaluation mode without one. Read again whenever it may have changed, since a licence
// pack is installed without restarting the app.

const EVALUATION = Object.freeze({ mode: 'evaluation', licensee: null, features: [] });
let licence = EVALUATION;
/** mtime, size and inode of the licence file when last read; undefined before the first read. */
let licenceStamp;

function refreshLicence() {
  let stamp = null;
  try {
    const st = fs.statSync(files.license);
    stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
  } catch {
    stamp = null;
  }
  if (stamp === licenceStamp) return;
  const first = licenceStamp === undefined;
  const before = licence.mode;
  licenceStamp = stamp;
  licence = EVALUATION;
  if (stamp !== null) {
    try {
      const l = readJson(files.license);
      if (typeof l.licensee !== 'string' || l.licensee.length === 0) throw new Error('no licensee');
      licence = { mode: 'licensed', licensee: l.licensee, features: Array.isArray(l.features) ? l.features : [] };
    } catch (e) {
      log('licence-invalid', { file: files.license, error: e.message });
    }
  }
  if (licence.mode === 'evaluation' && (first || before !== 'evaluation')) {
    log('evaluation-mode', { message: 'no valid licence installed: running in evaluation mode' });
  } else if (licence.mode === 'licensed') {
    log('licensed', { licensee: licence.licensee, features: licence.features });
  }
}

// ---------------------------------------------------------------------------------------------
// The "busy" inhibit: while <root>/run/inhibit exists the agent starts no install.

/** Who created the inhibit file in this run: 'config', 'http', or null when this run did not. */
let inhibitSource = null;

function setBusy(reason, source) {
  fs.mkdirSync(files.runDir, { recursive: true });
  const tmp = `${files.inhibit}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${reason}\n`);
  fs.renameSync(tmp, files.inhibit);
  inhibitSource = source;
  log('busy', { reason, by: source });
}

function setIdle(source) {
  fs.rmSync(files.inhibit, { force: true });
  if (inhibitSource !== null) log('idle', { by: source });
  inhibitSource = null;
}

function applyConfig(by) {
  setPaused(lookup(config, 'measurements.paused') === true, by);
  const busy = config.busy;
  if (typeof busy === 'string' && busy.length > 0) setBusy(busy, 'config');
  else if (inhibitSource === 'config') setIdle('config');
}

// ---------------------------------------------------------------------------------------------
// HTTP: health and status on 127.0.0.1:<config.port>.

function healthState() {
  if (fault === 'unhealthy') return { ok: false, reason: 'test fault "unhealthy" in release.json' };
  if (lastWriteError !== null) return { ok: false, reason: `measurement writes fail: ${lastWriteError}` };
  return { ok: true };
}

function status() {
  refreshLicence();
  const s = {
    product: release.product,
    version: release.version,
    dbVersion,
    configVersion,
    mode: licence.mode,
    licensee: licence.licensee,
    paused,
    busy: fs.existsSync(files.inhibit),
    measurementCount: statements.count.get().n,
    targetCount: statements.targetCount.get().n,
    pollMs: pollMs(config),
    // Never the password itself: site secrets stay out of every output.
    collectorConfigured: typeof lookup(config, 'collector.password') === 'string',
    slot,
    fault,
    pid: process.pid,
    uptimeMs: Math.round(process.uptime() * 1000),
  };
  if (statements.alarmCount) s.alarmCount = statements.alarmCount.get().n;
  return s;
}

function send(res, code, body) {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req, limit, done) {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size <= limit) chunks.push(c);
  });
  req.on('end', () => done(size <= limit ? Buffer.concat(chunks).toString('utf8') : null));
}

const healthPath = lookup(release, 'health.path') ?? '/health';

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://probe-app');
  try {
    if (req.method === 'GET' && url.pathname === healthPath) {
      refreshLicence();
      const h = healthState();
      send(res, h.ok ? 200 : 503, {
        status: h.ok ? 'ok' : 'unhealthy',
        ...(h.ok ? {} : { reason: h.reason }),
        version: release.version,
        mode: licence.mode,
        paused,
      });
    } else if (req.method === 'GET' && url.pathname === '/status') {
      send(res, 200, status());
    } else if (req.method === 'POST' && url.pathname === '/busy') {
      readBody(req, 1024, (text) => {
        const reason = (text ?? '').trim().split('\n')[0] || url.searchParams.get('reason') || 'busy (POST /busy)';
        setBusy(reason, 'http');
        send(res, 200, { busy: true, reason });
      });
    } else if (req.method === 'POST' && url.pathname === '/idle') {
      setIdle('http');
      send(res, 200, { busy: false });
    } else {
      send(res, 404, { error: `no route ${req.method} ${url.pathname}` });
    }
  } catch (e) {
    send(res, 500, { error: e.message });
  }
});

server.on('error', (e) => {
  process.stderr.write(`${tag}: cannot serve on 127.0.0.1:${config.port}: ${e.message}\n`);
  shutdown(EXIT_CRASH, 'listen-failed');
});

// ---------------------------------------------------------------------------------------------
// Signals: SIGUSR1 pauses measurement writes, SIGUSR2 resumes them, SIGHUP re-reads config.json,
// SIGTERM (or SIGINT) stops cleanly.

let stopping = false;
function shutdown(code, reason) {
  if (stopping) return;
  stopping = true;
  if (timer) clearInterval(timer);
  // A stopped app is not busy; an inhibit it did not create is left alone.
  if (inhibitSource !== null) fs.rmSync(files.inhibit, { force: true });
  try {
    db.close();
  } catch (e) {
    log('close-failed', { error: e.message });
  }
  log('stopped', { reason, exitCode: code });
  process.exit(code);
}

process.on('SIGTERM', () => shutdown(0, 'SIGTERM'));
process.on('SIGINT', () => shutdown(0, 'SIGINT'));
process.on('SIGUSR1', () => setPaused(true, 'SIGUSR1'));
process.on('SIGUSR2', () => setPaused(false, 'SIGUSR2'));
process.on('SIGHUP', () => {
  try {
    config = loadConfig();
  } catch (e) {
    log('config-reload-failed', { error: e.message });
    return;
  }
  if (config.configVersion !== configVersion) {
    log('config-version-changed', { running: configVersion, file: config.configVersion, message: 'restart to apply' });
  }
  applyConfig('SIGHUP');
  startTimer();
  log('config-reloaded', { pollMs: pollMs(config) });
});

log('starting', { version: release.version, dbVersion, configVersion, slot, fault, pid: process.pid });
refreshLicence();
importReferenceTargets();
applyConfig('config');
startTimer();
server.listen(config.port, '127.0.0.1', () => {
  log('listening', { host: '127.0.0.1', port: config.port, health: healthPath, mode: licence.mode, licensee: licence.licensee });
});

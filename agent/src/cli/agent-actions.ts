import { createInterface } from 'node:readline';
import { loadPrivateKey } from '../../../pack/src/index.js';
import { CliError } from '../../../base/src/cli/cli-error.js';
import { jsonEnvelope, printJson } from '../../../base/src/cli/output.js';
import { awaitsAgentRestart, Engine, type InstallOutcome } from '../update/engine.js';
import type { EngineOptions } from '../update/context.js';
import { layoutOf } from '../update/layout.js';
import { requireProbeRoot, resolveAgentPaths } from '../update/agent-paths.js';
import { receiptOf, shownOutcome } from '../update/receipts.js';
import { isVarName, setSiteVar, siteVarNames } from '../update/site-vars.js';
import { readStatus, readTrust, outcomeOf } from '../update/status.js';
import type { AgentFlags } from './agent-command.js';

async function engineFor(flags: AgentFlags, opts: { readOnly?: boolean } = {}): Promise<Engine> {
  const where = resolveAgentPaths(flags);
  if (opts.readOnly) requireProbeRoot(where);
  const options: EngineOptions = {
    root: where.root,
    state: where.state,
    ...(flags.keyring ? { keyring: flags.keyring } : {}),
    ...(flags.model ? { model: flags.model } : {}),
    ...(flags.key ? { recipientKey: await loadPrivateKey(flags.key, flags.passphraseFile ? { passphraseFile: flags.passphraseFile } : {}) } : {}),
    health: {
      ...(flags.healthChecks ? { required: flags.healthChecks } : {}),
      ...(flags.healthInterval ? { intervalMs: flags.healthInterval } : {}),
      ...(flags.healthWindow ? { windowMs: flags.healthWindow } : {}),
    },
  };
  return Engine.open(options, opts);
}

function report(engine: Engine, outcome: InstallOutcome, json: boolean): number {
  const d = outcome.deployment;
  if (awaitsAgentRestart(d)) {
    // An agent pack, installed by hand: the new agent runs once the agent restarts through its launcher.
    const next = 'restart the agent (systemctl restart sonde-agent) to run it on trial; it commits once it reaches the server or passes its self-check';
    if (json) process.stdout.write(`${jsonEnvelope({ onTrial: true, next, ...receiptOf(engine.context, d) }, true)}
`);
    else process.stdout.write(`ON TRIAL agent ${d.toVersion ?? ''} in agent slot ${d.targetSlot ?? '?'}: ${next}\n`);
    return 0;
  }
  if (json) {
    // A refusal or a rollback is a failure of the command: the envelope's code and message, then the receipt.
    const failure = outcome.committed ? {} : { code: d.errorCode ?? 'INSTALL_INTERNAL_ERROR', message: d.errorMessage ?? `the deployment ended in ${d.state}` };
    process.stdout.write(`${jsonEnvelope({ ...failure, ...receiptOf(engine.context, d) }, outcome.committed)}\n`);
  } else if (outcome.committed) {
    const a = d.after;
    process.stdout.write(`COMMITTED ${d.product ?? ''} ${d.toVersion ?? ''} (${d.kind ?? 'rollback'})${a?.slot ? ` in slot ${a.slot}` : ''}${a ? `, db ${a.dbVersion ?? '-'}, config ${a.configVersion ?? '-'}` : ''}\n`);
  } else {
    const word = d.outcome === 'rolled-back' ? 'ROLLED-BACK' : 'FAILED';
    process.stdout.write(`${word} ${d.errorCode ?? 'UNKNOWN'}: ${d.errorMessage ?? d.state}\n`);
  }
  return outcome.committed ? 0 : 1;
}

export async function installAction(pack: string, flags: AgentFlags): Promise<number> {
  const engine = await engineFor(flags);
  try {
    return report(engine, await engine.install(pack), flags.json === true);
  } finally {
    engine.close();
  }
}

export async function rollbackAction(flags: AgentFlags): Promise<number> {
  const engine = await engineFor(flags);
  try {
    return report(engine, await engine.rollback(), flags.json === true);
  } finally {
    engine.close();
  }
}

export async function recoverAction(flags: AgentFlags): Promise<void> {
  const engine = await engineFor(flags);
  try {
    const d = await engine.recover();
    if (flags.json) printJson({ recovered: d ? outcomeOf(d) : null });
    else process.stdout.write(d ? `recovered deployment ${d.id}: ${shownOutcome(d)}${d.errorCode ? ` (${d.errorCode})` : ''}\n` : 'nothing to recover\n');
  } finally {
    engine.close();
  }
}

export async function statusAction(flags: AgentFlags): Promise<void> {
  const engine = await engineFor(flags, { readOnly: true });
  try {
    const s = { ...(await readStatus(engine.context)), trust: await readTrust(engine.context) };
    if (flags.json) {
      printJson(s);
      return;
    }
    const lines = [
      `release   ${s.product ?? '-'} ${s.version ?? '(none installed)'}${s.appVersion && s.appVersion !== s.version ? ` (app ${s.appVersion})` : ''}`,
      `slot      ${s.slot ?? '-'}   ${s.slots.map((x) => `${x.name}: ${x.health}${x.version ? ` ${x.version}` : ''}`).join(', ')}`,
      `app       ${s.app.running ? `running (pid ${s.app.pid})` : 'not running'}${s.runner ? `, ${s.runner} runner` : ''}`,
      `database  version ${s.dbVersion ?? '-'}`,
      `config    version ${s.configVersion ?? '-'}`,
      `security  floor ${s.securityFloor}`,
      `trust     ${s.trust.keyringError ? `keyring unreadable (${s.trust.keyringError})` : `${s.trust.roots} root(s), root rotation ${s.trust.rootRotation}`}, revocation list ${s.trust.revocationSequence ?? '-'}, time floor ${s.trust.timeFloor ?? '-'}`,
      `agent     runs ${s.agent.runs === 'packaged' ? 'the packaged agent' : `slot ${s.agent.runs}`} (${s.agent.version ?? '?'})   ${s.agent.slots.map((x) => `${x.name}: ${x.version ?? 'empty'}`).join(', ')}${s.agent.trial ? `   TRIAL slot ${s.agent.trial.slot}, ${s.agent.trial.triesLeft} start(s) left` : ''}`,
      `last      ${s.lastOutcome ? `${s.lastOutcome.outcome} ${s.lastOutcome.version ?? ''}${s.lastOutcome.errorCode ? ` ${s.lastOutcome.errorCode}` : ''} at ${s.lastOutcome.endedAt}` : '-'}`,
    ];
    if (s.boot.type === 'block') {
      // Like `rauc status`: each partition, what the agent recorded there, what the bootloader thinks of it.
      lines.splice(2, 0, ...s.slots.map((x) => `  ${x.name} ${x.device ?? '?'} (${x.bootname ?? '?'})  agent: ${x.health}${x.version ? ` ${x.version}` : ''}  bootloader: ${x.boot ?? '?'}${s.boot.booted === x.name ? '  [booted]' : ''}${s.boot.primary === x.name ? '  [next boot]' : ''}`));
    }
    if (s.agent.lastFallback) lines.push(`fallback  ${s.agent.lastFallback}`);
    if (s.unfinished) lines.push(`PENDING   deployment ${s.unfinished.id} stopped in ${s.unfinished.state}: run sonde agent recover`);
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    engine.close();
  }
}

export async function historyAction(flags: AgentFlags): Promise<void> {
  const engine = await engineFor(flags, { readOnly: true });
  try {
    const h = engine.context.journal.history();
    if (flags.json) {
      printJson({ deployments: h.map((d) => receiptOf(engine.context, d)) });
      return;
    }
    for (const d of h) {
      process.stdout.write(`${d.startedAt}  ${shownOutcome(d).padEnd(11)} ${(d.product ?? '').padEnd(10)} ${d.fromVersion ?? '-'} -> ${d.toVersion ?? '-'}${d.errorCode ? `  ${d.errorCode}` : ''}\n`);
    }
  } finally {
    engine.close();
  }
}

async function readSecret(name: string): Promise<string> {
  if (!process.stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
  }
  // On a terminal: prompt without echoing what is typed.
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  const out = rl as unknown as { _writeToOutput: (s: string) => void };
  process.stderr.write(`value for ${name}: `);
  out._writeToOutput = () => undefined;
  const value = await new Promise<string>((resolve) => rl.question('', resolve));
  rl.close();
  process.stderr.write('\n');
  return value;
}

export async function varsSetAction(name: string, flags: AgentFlags): Promise<void> {
  const { root } = resolveAgentPaths(flags);
  // Never echo the argument: someone may have typed NAME=secret.
  if (!isVarName(name)) throw new CliError('USAGE', 'the variable name must be letters, digits and _, starting with a letter (the value is read from stdin)');
  const value = await readSecret(name);
  if (value === '') throw new CliError('USAGE', `no value given for ${name}`);
  await setSiteVar(layoutOf(root).siteVars, name, value);
  process.stdout.write(`set ${name}\n`);
}

export async function varsListAction(flags: AgentFlags): Promise<void> {
  const where = resolveAgentPaths(flags);
  requireProbeRoot(where);
  const json = flags.json === true;
  const names = await siteVarNames(layoutOf(where.root, where.state).siteVars);
  process.stdout.write(json ? `${jsonEnvelope({ names })}\n` : names.length ? `${names.join('\n')}\n` : '(no site variables)\n');
}

import { assertNever } from '../../../base/src/errors/sonde-error.js';

/**
 * The rollout state machines (issue 5, Rollouts; STYLE.md after Mender's client): two tables,
 * one for the rollout and one for each probe it targets, and nothing else decides an edge. The
 * engine and the operators only post events; a pair the table does not list is refused (an
 * operator's action answers ROLLOUT_STATE_CONFLICT, a late probe event is ignored). Every state
 * is in the store and written before the engine acts on it, so a restart re-derives what to do.
 *
 *   draft --start--> running --wave-passed--------> waiting ----wait-elapsed--> running (next wave)
 *                       |    --wave-passed-gated--> awaiting-approval --approve--> running (next wave)
 *                       |    --last-wave-passed---> completed
 *                       \--errors-exceeded / pause--> paused --resume--> running
 *   abort from every state that is not final -> aborted
 */
export const ROLLOUT_STATES = ['draft', 'running', 'waiting', 'awaiting-approval', 'paused', 'completed', 'aborted'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];

export const ROLLOUT_EVENTS = [
  // operators
  'start',
  'pause',
  'resume',
  'abort',
  'approve',
  'retry',
  // the engine, from the facts in the store
  'wave-passed',
  'wave-passed-gated',
  'last-wave-passed',
  'wait-elapsed',
  'errors-exceeded',
] as const;
export type RolloutEvent = (typeof ROLLOUT_EVENTS)[number];

/** What an edge does to the current wave: start the first, move to the next, or leave it. */
export type WaveStep = 'first' | 'next' | 'same';

export interface Edge {
  readonly to: RolloutState;
  readonly wave: WaveStep;
}

const e = (to: RolloutState, wave: WaveStep = 'same'): Edge => ({ to, wave });

export const ROLLOUT_TRANSITIONS: Readonly<Record<RolloutState, Partial<Record<RolloutEvent, Edge>>>> = {
  // created with `draft: true`: nothing sent yet
  draft: { start: e('running', 'first'), abort: e('aborted') },
  // the current wave's commands go out (inside a maintenance window) and its outcomes come in
  running: {
    'wave-passed': e('waiting'),
    'wave-passed-gated': e('awaiting-approval'),
    'last-wave-passed': e('completed'),
    'errors-exceeded': e('paused'),
    pause: e('paused'),
    abort: e('aborted'),
    retry: e('running'),
  },
  // the wave met the success threshold; the next one starts when the wait is over. Late failures
  // of the waves already started still count against the error threshold.
  waiting: { 'wait-elapsed': e('running', 'next'), 'errors-exceeded': e('paused'), pause: e('paused'), abort: e('aborted'), retry: e('waiting') },
  'awaiting-approval': { approve: e('running', 'next'), 'errors-exceeded': e('paused'), pause: e('paused'), abort: e('aborted'), retry: e('awaiting-approval') },
  // nothing is sent while paused; resume re-evaluates the current wave from the store
  paused: { resume: e('running'), abort: e('aborted'), retry: e('paused') },
  // final: the pack is unpinned; probes still in flight keep reporting into their target rows
  completed: {},
  aborted: {},
};

export function nextRollout(state: RolloutState, event: RolloutEvent): Edge | null {
  return ROLLOUT_TRANSITIONS[state][event] ?? null;
}

export function isFinal(state: RolloutState): boolean {
  switch (state) {
    case 'completed':
    case 'aborted':
      return true;
    case 'draft':
    case 'running':
    case 'waiting':
    case 'awaiting-approval':
    case 'paused':
      return false;
    default:
      return assertNever(state, 'rollout state');
  }
}

/** States in which the engine sends the commands of the waves already started. */
export function sends(state: RolloutState): boolean {
  switch (state) {
    case 'running':
    case 'waiting':
    case 'awaiting-approval':
      return true;
    case 'draft':
    case 'paused':
    case 'completed':
    case 'aborted':
      return false;
    default:
      return assertNever(state, 'rollout state');
  }
}

// ---------------------------------------------------------------------------------------------
// One probe of a rollout

/**
 * pending: in a wave, not commanded yet (its wave has not started, the rollout is paused, or the
 * maintenance window is closed). sent: an install command exists (the command service delivers it,
 * now or when the probe returns). accepted / installing: the probe said so. committed: its
 * install-outcome said committed, and only that (notes/field.md: never on staged or switched).
 * failed / rolled-back: its outcome or refusal said so. skipped: never commanded (already on the
 * version, or the rollout was aborted first) or its command was cancelled.
 */
export const TARGET_STATES = ['pending', 'sent', 'accepted', 'installing', 'committed', 'failed', 'rolled-back', 'skipped'] as const;
export type TargetState = (typeof TARGET_STATES)[number];

export const TARGET_EVENTS = ['issue', 'accepted', 'running', 'committed', 'failed', 'rolled-back', 'cancelled', 'retry', 'skip'] as const;
export type TargetEvent = (typeof TARGET_EVENTS)[number];

const OUTCOMES: Partial<Record<TargetEvent, TargetState>> = { committed: 'committed', failed: 'failed', 'rolled-back': 'rolled-back' };

export const TARGET_TRANSITIONS: Readonly<Record<TargetState, Partial<Record<TargetEvent, TargetState>>>> = {
  pending: { issue: 'sent', skip: 'skipped' },
  sent: { accepted: 'accepted', running: 'installing', ...OUTCOMES, cancelled: 'skipped' },
  accepted: { running: 'installing', ...OUTCOMES, cancelled: 'skipped' },
  installing: { ...OUTCOMES, cancelled: 'skipped' },
  // final for this attempt: a late or repeated report changes nothing
  committed: {},
  failed: { retry: 'pending' },
  'rolled-back': { retry: 'pending' },
  // a cancelled command the probe had already started may still commit: what the probe did is
  // the truth (the command service lets its outcome override the cancel the same way)
  skipped: { committed: 'committed' },
};

export function nextTarget(state: TargetState, event: TargetEvent): TargetState | null {
  return TARGET_TRANSITIONS[state][event] ?? null;
}

/** The edge the engine knows exists (a target it just read in `state`); none is a bug. */
export function targetAfter(state: TargetState, event: TargetEvent): TargetState {
  const to = nextTarget(state, event);
  if (to === null) throw new Error(`no target transition from ${state} on ${event}`);
  return to;
}

/** Commanded and not finished: what the engine follows. */
export function inFlight(state: TargetState): boolean {
  switch (state) {
    case 'sent':
    case 'accepted':
    case 'installing':
      return true;
    case 'pending':
    case 'committed':
    case 'failed':
    case 'rolled-back':
    case 'skipped':
      return false;
    default:
      return assertNever(state, 'target state');
  }
}

export function isFailure(state: TargetState): boolean {
  return state === 'failed' || state === 'rolled-back';
}

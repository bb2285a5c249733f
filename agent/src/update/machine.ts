import { assertNever } from '../../../base/src/errors/sonde-error.js';

/**
 * The install state machine (DESIGN.md, "The agent"; STYLE.md after Mender's client): states only
 * post events, and this one table decides every edge. Each state is written to the journal before
 * its action runs ("persist, then act"), so after a power cut the journal names the state whose
 * action may have run partly, and RESUME says what to do about it.
 *
 *   idle -> received -> verified -> staged -> switching -> trial -> committed
 *                 \          \          \           \         \-> rolling-back -> rolled-back
 *                  \----------\----------\-> failed  \-> rolling-back
 */
export const STATES = ['received', 'verified', 'staged', 'switching', 'trial', 'committed', 'rolling-back', 'rolled-back', 'failed'] as const;
export type State = (typeof STATES)[number];

/**
 * `interrupted`: the agent stopped in this state and restarted. `gave-up`: it did so more than
 * MAX_RESUMES times in a row (a crash loop); the deployment ends where it stands, with no action.
 */
export const EVENTS = ['ok', 'refused', 'error', 'applied', 'healthy', 'unhealthy', 'done', 'interrupted', 'gave-up'] as const;
export type Event = (typeof EVENTS)[number];

/** Outcome states: the deployment is over once their action (finalise or clean up) has run. */
export const OUTCOMES = ['committed', 'rolled-back', 'failed'] as const;
export type Outcome = (typeof OUTCOMES)[number];

export const TRANSITIONS: Readonly<Record<State, Partial<Record<Event, State>>>> = {
  // verify the signature and chain, then the policy checks: nothing on the probe has changed yet
  received: { ok: 'verified', refused: 'failed', error: 'failed', interrupted: 'failed', 'gave-up': 'failed' },
  // stage: payloads into the inactive slot (marked bad first), db and config migrated on copies;
  // licence and trust packs are applied here and need no switch
  verified: { ok: 'staged', applied: 'committed', refused: 'failed', error: 'failed', interrupted: 'failed', 'gave-up': 'failed' },
  // nothing to do but switch; kept as a state so that a crash here resumes as "not switched"
  staged: { ok: 'switching', interrupted: 'failed', 'gave-up': 'failed' },
  // database and config swapped in, the slot pointer flipped
  switching: { ok: 'trial', error: 'rolling-back', interrupted: 'rolling-back', 'gave-up': 'failed' },
  // the new app started and health-checked; only a healthy release is committed
  trial: { healthy: 'committed', unhealthy: 'rolling-back', error: 'rolling-back', interrupted: 'rolling-back', 'gave-up': 'failed' },
  // an outcome state whose finalisation crashes in a loop keeps its outcome; an undo that does
  // becomes a failure (the probe stands as the undo left it)
  committed: { done: 'committed', 'gave-up': 'committed' },
  'rolling-back': { done: 'rolled-back', 'gave-up': 'failed' },
  'rolled-back': { done: 'rolled-back', 'gave-up': 'rolled-back' },
  failed: { done: 'failed', 'gave-up': 'failed' },
};

/**
 * After a restart, what happens to a deployment whose journal shows `state` and no end. The
 * default, and every state before the commit, is to roll back; only undoing and finalising
 * continue (both are idempotent).
 */
export type ResumeAction = 'continue' | 'roll-back';
export const RESUME: Readonly<Record<State, ResumeAction>> = {
  received: 'roll-back',
  verified: 'roll-back',
  staged: 'roll-back',
  switching: 'roll-back',
  trial: 'roll-back',
  committed: 'continue',
  'rolling-back': 'continue',
  'rolled-back': 'continue',
  failed: 'continue',
};

/** A deployment resumed more often than this ends as it stands: a crash loop must not brick. */
export const MAX_RESUMES = 3;

export function next(state: State, event: Event): State {
  const to = TRANSITIONS[state][event];
  if (to === undefined) throw new Error(`no transition from ${state} on ${event}`);
  return to;
}

export function isOutcome(state: State): state is Outcome {
  switch (state) {
    case 'committed':
    case 'rolled-back':
    case 'failed':
      return true;
    case 'received':
    case 'verified':
    case 'staged':
    case 'switching':
    case 'trial':
    case 'rolling-back':
      return false;
    default:
      return assertNever(state, 'state');
  }
}

/** Has the probe possibly been switched to the new release in this state? */
export function mayHaveSwitched(state: State): boolean {
  return state === 'switching' || state === 'trial' || state === 'rolling-back' || state === 'rolled-back';
}

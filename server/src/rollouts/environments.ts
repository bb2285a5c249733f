/**
 * Promotion through environments (issue 5): integration → QA → UAT → production. A rollout may
 * name one; a rollout in a later environment is refused (PROMOTION_REQUIRED) until the same pack
 * completed a rollout in the environment just before AND someone approved the promotion (an
 * admin, `POST /api/v1/rollouts/{id}/promote` on that completed rollout; the audit log and the
 * rollout's approvals record who and when). A rollout that names no environment has no gate.
 */
export const ENVIRONMENTS = ['integration', 'qa', 'uat', 'production'] as const;
export type Environment = (typeof ENVIRONMENTS)[number];

/** The environment a pack must have completed in first, or null for the first one. */
export function previousEnvironment(env: Environment): Environment | null {
  const i = ENVIRONMENTS.indexOf(env);
  return i > 0 ? ENVIRONMENTS[i - 1]! : null;
}

/** Where a completed rollout in `env` may be promoted to, or null after production. */
export function nextEnvironment(env: Environment): Environment | null {
  const i = ENVIRONMENTS.indexOf(env);
  return i >= 0 && i < ENVIRONMENTS.length - 1 ? ENVIRONMENTS[i + 1]! : null;
}

import type { RolloutRepository } from './rollout-repository.js';

/**
 * The repository as the engine writes through it: every transition and every change of a
 * rollout's targets is also published on the change feed (the dashboard's live view of a wave).
 */
export function heard(repo: RolloutRepository, changed: (rolloutId: string) => void): RolloutRepository {
  const wrapped = Object.create(repo) as RolloutRepository;
  wrapped.transition = async (...args: Parameters<RolloutRepository['transition']>) => {
    const written = await repo.transition(...args);
    if (written) changed(args[0]);
    return written;
  };
  wrapped.updateTargets = async (...args: Parameters<RolloutRepository['updateTargets']>) => {
    const result = await repo.updateTargets(...args);
    changed(args[0]);
    return result;
  };
  return wrapped;
}

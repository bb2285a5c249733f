import { UpdateError } from '../../agent/src/update/errors.js';

/** The UpdateError `fn` throws (any other error is rethrown; no error fails the test). */
export function thrown(fn: () => unknown): UpdateError {
  try {
    fn();
  } catch (e) {
    if (e instanceof UpdateError) return e;
    throw e;
  }
  throw new Error('expected an UpdateError');
}

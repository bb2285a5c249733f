/**
 * mulberry32: a tiny, fast 32-bit PRNG, good enough to drive a fuzzer reproducibly (not for
 * anything secret). The same seed gives the same sequence on every platform.
 */
export interface Rng {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  /** An integer in [lo, hi]. */
  between(lo: number, hi: number): number;
  pick<T>(items: readonly T[]): T;
  /** A fresh 32-bit seed, to give each iteration its own stream. */
  seed(): number;
}

export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    next,
    int,
    between: (lo, hi) => lo + int(hi - lo + 1),
    pick: (items) => {
      if (items.length === 0) throw new Error('pick from nothing');
      return items[int(items.length)]!;
    },
    seed: () => Math.floor(next() * 2 ** 32) >>> 0,
  };
}

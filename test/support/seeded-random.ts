// xorshift32 for the workloads: the same seed makes the same sequence.

/** A generator of whole numbers below n, seeded: random(n) is in [0, n). */
export function seededRandom(seed: number): (n: number) => number {
  let state = seed * 2654435761 || 1;
  return (n) => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
}

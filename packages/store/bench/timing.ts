// Shared by the store benches: rate of an async step over a fixed time, and the median of rounds.
const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 1500);

/** Runs `step` (which handles `unit` events) repeatedly for BENCH_ROUND_MS (default 1500); returns events per second. */
export async function timedAsync(step: () => Promise<void>, unit = 1): Promise<number> {
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(ROUND_MS) * 1_000_000n;
  let n = 0;
  let now = start;
  while (now < deadline) {
    await step();
    n += unit;
    now = process.hrtime.bigint();
  }
  return n / (Number(now - start) / 1e9);
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

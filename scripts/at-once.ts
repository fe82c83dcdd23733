/**
 * Calls `work(i)` for `i` from 0 to `count` (excluded), at most `concurrency` calls at once, each
 * started as soon as one ends: the benchmarks' bounded bursts.
 */
export async function forEachAtOnce(
  count: number,
  concurrency: number,
  work: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await work(next++);
    }),
  );
}

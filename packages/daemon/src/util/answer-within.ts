/** `p`'s value, or `fallback` when it fails or takes longer than `ms` (the timer is cleared either way). */
export function answerWithin<T>(p: Promise<T>, ms: number, fallback: T | ((err?: unknown) => T)): Promise<T> {
  const value = (err?: unknown) => (typeof fallback === "function" ? (fallback as (e?: unknown) => T)(err) : fallback);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(value()), ms);
  });
  return Promise.race([p.catch((err: unknown) => value(err)), late]).finally(() => clearTimeout(timer));
}

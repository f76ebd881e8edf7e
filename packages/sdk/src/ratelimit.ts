/**
 * Token-bucket rate limiting per key (client address, user id, API token...).
 *
 *   const limiter = ratelimit.createRateLimiter({ capacity: 20, refillPerSecond: 5 });
 *   { method: "POST", path: "/tasks", handler: ratelimit.limited(limiter, handler) }
 *
 * A refused request is answered 429 with `Retry-After` (whole seconds, rounded up).
 *
 * Exactness: tokens are integer micro-tokens and time is integer microseconds. A bucket is `base + floor((now -
 * anchor) * refillPerSecond)` capped at capacity, computed afresh from a fixed anchor on every call, so many small
 * clock steps round once instead of accumulating error (no drift). The anchor only moves forward (when the bucket is
 * full) and the limiter's time is the latest the clock has shown, so a clock going backwards never adds tokens.
 *
 * Memory: a bucket is two float64 slots in a shared Float64Array plus one Map entry from its key to its slot (no
 * object per key). A full bucket is the same as no bucket, so full buckets are dropped as they are met (every call
 * looks at the two least recently used keys) or by `sweep()`. At `maxKeys` the least recently used key is evicted:
 * that key then starts again from a full bucket, which errs on the lenient side for the coldest key only.
 */
import type { Handler, PluginRequest } from "./contract.js";
import { HttpError } from "./contract.js";

export interface RateLimiterOptions {
  /** Tokens a full bucket holds (the burst), a positive integer. */
  capacity: number;
  /** Tokens added per second, > 0. */
  refillPerSecond: number;
  /** Clock in milliseconds (default `performance.now()`, which never goes backwards). */
  now?: () => number;
  /** Most keys tracked at once (default 100,000); past it the least recently used key is evicted. */
  maxKeys?: number;
}

export interface TakeResult {
  allowed: boolean;
  /** Whole tokens left after this call. */
  remaining: number;
  /** When refused: milliseconds until `cost` tokens are available (0 when allowed). */
  retryAfterMs: number;
}

export interface RateLimiter {
  readonly capacity: number;
  readonly refillPerSecond: number;
  /** Takes `cost` tokens (default 1) from `key`'s bucket if it has them. */
  take(key: string, cost?: number): TakeResult;
  /** Like `take`, but throws `HttpError` 429 `rate_limited` with a `Retry-After` header when refused. */
  consume(key: string, cost?: number): TakeResult;
  /** Whole tokens `key` has now, without taking any. */
  peek(key: string): number;
  /** Forgets `key` (its bucket is full again). */
  reset(key: string): void;
  /** Drops every bucket that has refilled to full; returns how many were dropped. */
  sweep(): number;
  /** Keys currently tracked. */
  readonly size: number;
}

const MICRO = 1_000_000;
const INITIAL_SLOTS = 1024;

export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const { capacity, refillPerSecond } = options;
  if (!Number.isSafeInteger(capacity) || capacity < 1)
    throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
  if (!(Number.isFinite(refillPerSecond) && refillPerSecond > 0))
    throw new RangeError(`refillPerSecond must be a positive number, got ${refillPerSecond}`);
  const maxKeys = options.maxKeys ?? 100_000;
  if (!Number.isSafeInteger(maxKeys) || maxKeys < 1) throw new RangeError(`maxKeys must be a positive integer`);
  const clock = options.now ?? (() => performance.now());
  const capMicro = capacity * MICRO;
  // 1 token/s = 1 micro-token per microsecond, so refillPerSecond is exactly micro-tokens per microsecond.
  const rate = refillPerSecond;

  /** key -> slot; Map order is recency order (a used key is re-inserted at the end). */
  const slots = new Map<string, number>();
  /** slot*2 = base micro-tokens, slot*2+1 = anchor (microseconds). */
  let state = new Float64Array(Math.min(INITIAL_SLOTS, maxKeys) * 2);
  const free: number[] = [];
  let nextSlot = 0;

  // The limiter's time never goes backwards: a clock stepping back freezes it until the clock passes the latest time
  // seen. Per-bucket checks would not be enough, since a dropped (full) bucket is recreated at "now".
  let latest = Number.NEGATIVE_INFINITY;
  const nowMicros = () => {
    const t = Math.round(clock() * 1000);
    if (t > latest) latest = t;
    return latest;
  };

  /** Micro-tokens in `slot` at `now` (capped), re-anchoring a full bucket so time spent full is not banked. */
  function level(slot: number, now: number): number {
    const base = state[slot * 2];
    const anchor = state[slot * 2 + 1];
    const micro = base + Math.floor((now - anchor) * rate);
    if (micro >= capMicro) {
      state[slot * 2] = capMicro;
      state[slot * 2 + 1] = now;
      return capMicro;
    }
    return micro;
  }

  function allocate(now: number): number {
    let slot = free.pop();
    if (slot === undefined) {
      if (nextSlot * 2 >= state.length) {
        const grown = new Float64Array(Math.min(state.length * 2, maxKeys * 2));
        grown.set(state);
        state = grown;
      }
      slot = nextSlot++;
    }
    state[slot * 2] = capMicro;
    state[slot * 2 + 1] = now;
    return slot;
  }

  function drop(key: string, slot: number): void {
    slots.delete(key);
    free.push(slot);
  }

  /** Looks at the two least recently used keys and drops them if full: amortised cleanup, no timer. */
  function dropColdFull(now: number): void {
    let n = 0;
    for (const [key, slot] of slots) {
      if (n++ >= 2) break;
      if (level(slot, now) >= capMicro) drop(key, slot);
      else break;
    }
  }

  function touch(key: string, now: number): number {
    let slot = slots.get(key);
    if (slot !== undefined) {
      slots.delete(key);
      slots.set(key, slot);
      return slot;
    }
    if (slots.size >= maxKeys) {
      const [oldKey, oldSlot] = slots.entries().next().value as [string, number];
      drop(oldKey, oldSlot);
    }
    slot = allocate(now);
    slots.set(key, slot);
    return slot;
  }

  function take(key: string, cost = 1): TakeResult {
    if (!Number.isSafeInteger(cost) || cost < 1 || cost > capacity)
      throw new RangeError(`cost must be an integer from 1 to capacity (${capacity}), got ${cost}`);
    const now = nowMicros();
    dropColdFull(now);
    const slot = touch(key, now);
    const micro = level(slot, now);
    const costMicro = cost * MICRO;
    if (micro >= costMicro) {
      state[slot * 2] -= costMicro;
      return { allowed: true, remaining: Math.floor((micro - costMicro) / MICRO), retryAfterMs: 0 };
    }
    const waitMicros = Math.ceil((costMicro - micro) / rate);
    return { allowed: false, remaining: Math.floor(micro / MICRO), retryAfterMs: waitMicros / 1000 };
  }

  return {
    capacity,
    refillPerSecond,
    take,
    consume(key, cost = 1) {
      const r = take(key, cost);
      if (!r.allowed) {
        const seconds = Math.max(1, Math.ceil(r.retryAfterMs / 1000));
        throw new HttpError(
          429,
          "rate_limited",
          `rate limit exceeded, retry in ${seconds} s`,
          { retryAfterSeconds: seconds },
          { "retry-after": String(seconds) },
        );
      }
      return r;
    },
    peek(key) {
      const slot = slots.get(key);
      return slot === undefined ? capacity : Math.floor(level(slot, nowMicros()) / MICRO);
    },
    reset(key) {
      const slot = slots.get(key);
      if (slot !== undefined) drop(key, slot);
    },
    sweep() {
      const now = nowMicros();
      let dropped = 0;
      for (const [key, slot] of slots) {
        if (level(slot, now) >= capMicro) {
          drop(key, slot);
          dropped++;
        }
      }
      return dropped;
    },
    get size() {
      return slots.size;
    },
  };
}

export interface LimitedOptions {
  /** Bucket key of a request (default: the client address). */
  key?: (req: PluginRequest) => string;
  /** Tokens one request costs (default 1). */
  cost?: number | ((req: PluginRequest) => number);
}

/**
 * Wraps a handler so each request first takes tokens from the bucket of its key; a refused request gets 429 with
 * Retry-After and the handler does not run.
 */
export function limited(limiter: RateLimiter, handler: Handler, options: LimitedOptions = {}): Handler {
  const keyOf = options.key ?? ((req: PluginRequest) => req.remoteAddress ?? "unknown");
  const cost = options.cost ?? 1;
  return (req) => {
    limiter.consume(keyOf(req), typeof cost === "function" ? cost(req) : cost);
    return handler(req);
  };
}

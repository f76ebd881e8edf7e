import assert from "node:assert/strict";
import { test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { PluginModule } from "../src/contract.js";
import { createRateLimiter, limited } from "../src/ratelimit.js";
import { createTestHarness } from "../src/runtime/harness.js";

/** A clock the test moves by hand (milliseconds). */
function fakeClock(start = 1_000_000) {
  let t = start;
  return {
    now: () => t,
    set: (ms: number) => {
      t = ms;
    },
    advance: (ms: number) => {
      t += ms;
    },
  };
}

/** Budget stated in packages/sdk/README.md (ratelimit section) for 1,000,000 tracked keys. */
const MILLION_KEYS_BUDGET_BYTES = 128 * 1024 * 1024;

test("exact burst: capacity tokens at once, then refused with the exact wait", () => {
  const clock = fakeClock();
  const rl = createRateLimiter({ capacity: 5, refillPerSecond: 2, now: clock.now });
  for (let i = 0; i < 5; i++) {
    const r = rl.take("a");
    assert.equal(r.allowed, true);
    assert.equal(r.remaining, 4 - i);
  }
  const refused = rl.take("a");
  assert.equal(refused.allowed, false);
  assert.equal(refused.remaining, 0);
  assert.equal(refused.retryAfterMs, 500);
  // A cost of 3 needs 1.5 s from empty.
  assert.equal(rl.take("a", 3).retryAfterMs, 1500);
  assert.throws(() => rl.take("a", 6), RangeError);
  assert.throws(() => rl.take("a", 0), RangeError);
  assert.throws(() => createRateLimiter({ capacity: 0, refillPerSecond: 1 }), RangeError);
  assert.throws(() => createRateLimiter({ capacity: 1, refillPerSecond: 0 }), RangeError);
});

test("refill: one token per 1/rate seconds, never above capacity", () => {
  const clock = fakeClock();
  const rl = createRateLimiter({ capacity: 3, refillPerSecond: 4, now: clock.now });
  for (let i = 0; i < 3; i++) assert.equal(rl.take("k").allowed, true);
  clock.advance(249);
  assert.equal(rl.take("k").allowed, false);
  clock.advance(1);
  assert.equal(rl.take("k").allowed, true);
  assert.equal(rl.take("k").allowed, false);
  clock.advance(60_000);
  assert.equal(rl.peek("k"), 3);
  for (let i = 0; i < 3; i++) assert.equal(rl.take("k").allowed, true);
  assert.equal(rl.take("k").allowed, false, "a long idle period does not bank more than capacity");
});

test("no drift over many small clock steps (integer and fractional rates)", () => {
  for (const rate of [3, 0.7, 1000 / 3]) {
    const clock = fakeClock(0);
    const rl = createRateLimiter({ capacity: 10_000, refillPerSecond: rate, now: clock.now });
    assert.equal(rl.take("k", 10_000).allowed, true);
    // 100,000 steps of 0.1 ms = 10 s, looking at the bucket at every step (as traffic would).
    for (let i = 1; i <= 100_000; i++) {
      clock.set(i / 10);
      const have = rl.peek("k");
      if (i % 10_000 === 0) assert.equal(have, Math.floor((rate * i) / 10_000), `rate ${rate} at step ${i}`);
    }
    assert.equal(rl.peek("k"), Math.floor(rate * 10));
    // Taking tokens along the way: 1 token per 1/rate s for 10 s gives exactly floor(10*rate) grants.
    const c2 = fakeClock(0);
    // Capacity above what 10 s refill, so the bucket never fills (a full bucket rightly wastes refill).
    const rl2 = createRateLimiter({ capacity: 10_000, refillPerSecond: rate, now: c2.now });
    rl2.take("k", 10_000);
    let granted = 0;
    for (let i = 1; i <= 100_000; i++) {
      c2.set(i / 10);
      if (rl2.take("k").allowed) granted++;
    }
    assert.equal(granted, Math.floor(rate * 10), `grants at rate ${rate}`);
  }
});

test("a clock going backwards never adds tokens", () => {
  const clock = fakeClock(10_000);
  const rl = createRateLimiter({ capacity: 2, refillPerSecond: 1, now: clock.now });
  assert.equal(rl.take("k", 2).allowed, true);
  clock.set(5_000);
  assert.equal(rl.peek("k"), 0);
  assert.equal(rl.take("k").allowed, false);
  clock.set(10_999);
  assert.equal(rl.take("k").allowed, false, "the second spent going back and forth is not counted twice");
  clock.set(11_000);
  assert.equal(rl.take("k").allowed, true);
  // Full bucket, then the clock jumps back: still only capacity, and no refill until time passes 11 s again.
  clock.set(20_000);
  assert.equal(rl.peek("k"), 2);
  clock.set(1_000);
  assert.equal(rl.take("k", 2).allowed, true);
  clock.set(19_999);
  assert.equal(rl.take("k").allowed, false);
  clock.set(21_000);
  assert.equal(rl.take("k").allowed, true);
  assert.equal(rl.take("k").allowed, false);
});

test("per-key isolation", () => {
  const clock = fakeClock();
  const rl = createRateLimiter({ capacity: 2, refillPerSecond: 1, now: clock.now });
  assert.equal(rl.take("a", 2).allowed, true);
  assert.equal(rl.take("a").allowed, false);
  assert.equal(rl.take("b").allowed, true);
  assert.equal(rl.peek("b"), 1);
  assert.equal(rl.peek("c"), 2);
  rl.reset("a");
  assert.equal(rl.peek("a"), 2);
});

test("bounded memory: full buckets dropped, maxKeys evicts the least recently used key", () => {
  const clock = fakeClock();
  const rl = createRateLimiter({ capacity: 2, refillPerSecond: 1, now: clock.now, maxKeys: 3 });
  rl.take("a");
  rl.take("b");
  rl.take("c");
  rl.take("a"); // a is now the most recently used, b the least
  rl.take("d");
  assert.equal(rl.size, 3);
  assert.equal(rl.peek("b"), 2, "b was evicted (starts full again)");
  assert.equal(rl.peek("a"), 0);
  clock.advance(2_000);
  assert.equal(rl.sweep(), 3, "every bucket refilled: all dropped");
  assert.equal(rl.size, 0);
  // Amortised cleanup without sweep(): cold full buckets go as new keys come.
  const rl2 = createRateLimiter({ capacity: 1, refillPerSecond: 1000, now: clock.now, maxKeys: 1_000_000 });
  for (let i = 0; i < 10_000; i++) {
    rl2.take(`k${i}`);
    clock.advance(1);
  }
  assert.ok(rl2.size < 10, `idle buckets are dropped as traffic goes on (size ${rl2.size})`);
});

test("1,000,000 keys stay within the stated memory budget", () => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  setFlagsFromString("--no-expose-gc");
  const clock = fakeClock();
  const n = 1_000_000;
  gc();
  const before = process.memoryUsage();
  const started = performance.now();
  let rl: ReturnType<typeof createRateLimiter> | undefined = createRateLimiter({
    capacity: 10,
    refillPerSecond: 1,
    now: clock.now,
    maxKeys: n,
  });
  for (let i = 0; i < n; i++) rl.take(`client-${i}`);
  const elapsedMs = performance.now() - started;
  assert.equal(rl.size, n);
  gc();
  const after = process.memoryUsage();
  const heap = after.heapUsed - before.heapUsed;
  const buffers = after.arrayBuffers - before.arrayBuffers;
  const total = heap + buffers;
  console.log(
    `BENCH_JSON ${JSON.stringify({ ratelimitKeys: n, heapBytes: heap, arrayBufferBytes: buffers, bytesPerKey: Math.round(total / n), takeMs: Math.round(elapsedMs) })}`,
  );
  assert.ok(total < MILLION_KEYS_BUDGET_BYTES, `1M keys used ${total} bytes (budget ${MILLION_KEYS_BUDGET_BYTES})`);
  // Past maxKeys the size stays capped.
  for (let i = 0; i < 1000; i++) rl.take(`late-${i}`);
  assert.equal(rl.size, n);
  rl = undefined;
});

test("limited(): 429 with Retry-After over real HTTP, handler not run when refused", async () => {
  const clock = fakeClock();
  const limiter = createRateLimiter({ capacity: 2, refillPerSecond: 0.4, now: clock.now });
  let runs = 0;
  const plugin: PluginModule = {
    manifest: () => ({ name: "rl", version: "1.0.0" }),
    init() {},
    routes: () => [
      {
        method: "POST",
        path: "/ping",
        handler: limited(
          limiter,
          () => {
            runs++;
            return { ok: true };
          },
          { key: (req) => String(req.headers["x-user"]) },
        ),
      },
    ],
  };
  const h = await createTestHarness(plugin);
  try {
    const { url } = await h.listen();
    const post = (user: string) => fetch(`${url}/ping`, { method: "POST", headers: { "x-user": user } });
    assert.equal((await post("u1")).status, 200);
    assert.equal((await post("u1")).status, 200);
    const refused = await post("u1");
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get("retry-after"), "3", "2.5 s until a token, rounded up");
    const body = (await refused.json()) as { error: { code: string; details: unknown } };
    assert.equal(body.error.code, "rate_limited");
    assert.deepEqual(body.error.details, { retryAfterSeconds: 3 });
    assert.equal(runs, 2);
    assert.equal((await post("u2")).status, 200, "another key has its own bucket");
    clock.advance(2500);
    assert.equal((await post("u1")).status, 200);
    assert.equal(runs, 4);
  } finally {
    await h.close();
  }
});

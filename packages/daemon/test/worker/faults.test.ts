import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Agent, request } from "undici";
import { type Env, setup, whoPlugin, writePlugin } from "./helpers.js";

const FAULTY = whoPlugin(
  "faulty",
  "1.0.0",
  `function extraRoutes() {
    return [
      { method: "GET", path: "/throw", handler: () => { throw new Error("boom"); } },
      { method: "GET", path: "/reject", handler: () => { Promise.reject(new Error("nobody listens")); return "ok"; } },
      { method: "GET", path: "/exit", handler: () => { process.exit(1); } },
      { method: "GET", path: "/loop", handler: () => { for (;;) {} } },
      { method: "GET", path: "/heap", handler: () => { const a = []; for (;;) a.push(new Array(1e5).fill(Math.random())); } },
    ];
  }`,
);

let env: Env;
const agent = new Agent({ keepAliveTimeout: 30_000, connections: 4 });
const events: string[] = [];

before(async () => {
  env = await setup({
    heartbeatIntervalMs: 250,
    heartbeatTimeoutMs: 1000,
    resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 8 },
    restartBudget: { maxRestarts: 3, windowMs: 60_000 },
  });
  env.workers.on("crashed", (name, reason) => events.push(`crashed ${name} ${reason}`));
  env.workers.on("restarted", (name) => events.push(`restarted ${name}`));
  env.workers.on("disabled", (name, reason) => events.push(`disabled ${name} ${reason}`));
  await env.workers.load(writePlugin(env.home, "faulty", "1.0.0", FAULTY));
  await env.workers.load(writePlugin(env.home, "good", "1.0.0", whoPlugin("good", "1.0.0")));
});
after(async () => {
  await agent.close();
  await env.close();
});

async function get(path: string): Promise<{ status: number; body: string; ms: number }> {
  const t0 = performance.now();
  const r = await request(`${env.base}${path}`, { dispatcher: agent });
  const body = await r.body.text();
  return { status: r.statusCode, body, ms: performance.now() - t0 };
}

/** Runs `fault` while probing /health and the good plugin; returns health latencies. */
async function during(fault: () => Promise<void>): Promise<number[]> {
  let stop = false;
  const health: number[] = [];
  const probe = async () => {
    while (!stop) {
      const h = await get("/health");
      assert.equal(h.status, 200);
      health.push(h.ms);
      const g = await get("/plugin/good/api/who");
      assert.equal(g.status, 200, `good plugin answered ${g.status}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const p = probe();
  try {
    await fault();
  } finally {
    stop = true;
    await p;
  }
  return health;
}

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timeout; events: ${events.join(" | ")}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function p99(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))];
}

test("fault matrix: only the faulty plugin fails, restarts within budget, then is disabled", async () => {
  const all: number[] = [];
  // throw -> 500, plugin keeps running
  all.push(
    ...(await during(async () => {
      const r = await get("/plugin/faulty/api/throw");
      assert.equal(r.status, 500);
      assert.equal(JSON.parse(r.body).error.code, "internal_error");
    })),
  );
  // unhandled rejection: logged, the plugin keeps serving
  all.push(
    ...(await during(async () => {
      assert.equal((await get("/plugin/faulty/api/reject")).status, 200);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal((await get("/plugin/faulty/api/who")).status, 200);
    })),
  );
  assert.equal(env.workers.get("faulty")?.restarts, 0);

  const crashes: [string, RegExp][] = [
    ["/exit", /exited with code 1/],
    ["/loop", /watchdog/],
    ["/heap", /memory|heap|watchdog/i],
  ];
  for (const [i, [path, why]] of crashes.entries()) {
    const thread = env.workers.get("faulty")!.threadId;
    all.push(
      ...(await during(async () => {
        const r = await get(`/plugin/faulty/api${path}`);
        assert.equal(r.status, 502, `${path}: ${r.status} ${r.body}`);
        assert.equal(JSON.parse(r.body).error.code, "plugin_crashed");
        await waitFor(() => env.workers.get("faulty")?.restarts === i + 1);
      })),
    );
    assert.match(events.filter((e) => e.startsWith("crashed"))[i], why);
    assert.notEqual(env.workers.get("faulty")!.threadId, thread);
    assert.equal((await get("/plugin/faulty/api/who")).status, 200, `restarted after ${path}`);
  }

  // 4th crash within the window: disabled, routes gone, lifecycle told.
  all.push(
    ...(await during(async () => {
      assert.equal((await get("/plugin/faulty/api/exit")).status, 502);
      await waitFor(() => env.workers.get("faulty")?.status === "disabled");
    })),
  );
  assert.match(events.at(-1)!, /^disabled faulty crashed 4 times/);
  assert.equal((await get("/plugin/faulty/api/who")).status, 404);
  assert.equal((await get("/plugin/good/api/who")).status, 200);
  const worst = p99(all);
  console.log(`# /health p99 ${worst.toFixed(1)} ms over ${all.length} probes`);
  assert.ok(worst < 100, `/health p99 ${worst} ms`);
  assert.equal(await env.workers.unload("faulty"), true);
});

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Pool } from "undici";
import { type Env, setup, whoPlugin, writePlugin } from "./helpers.js";

let env: Env;
before(async () => {
  env = await setup();
});
after(async () => {
  await env.close();
});

test("hot swap v1<->v2 20 times under keep-alive load: no failures, every answer from v1 or v2", async () => {
  const v1 = writePlugin(env.home, "hot", "1.0.0", whoPlugin("hot", "1.0.0"), {
    "package/priv/static/index.html": "s",
  });
  const v2 = writePlugin(env.home, "hot", "2.0.0", whoPlugin("hot", "2.0.0"), {
    "package/priv/static/index.html": "s",
  });
  await env.workers.load(v1);
  const pool = new Pool(env.base, { connections: 8, pipelining: 1, keepAliveTimeout: 30_000 });
  let stop = false;
  let ok = 0;
  const failures: string[] = [];
  const seen = new Set<string>();
  const client = async () => {
    while (!stop) {
      try {
        const r = await pool.request({ method: "GET", path: "/plugin/hot/api/who" });
        const text = await r.body.text();
        if (r.statusCode !== 200) failures.push(`${r.statusCode} ${text}`);
        else {
          const v = JSON.parse(text).version;
          if (v !== "1.0.0" && v !== "2.0.0") failures.push(`unexpected ${text}`);
          seen.add(v);
          ok++;
        }
      } catch (err) {
        failures.push(String(err));
      }
    }
  };
  const clients = Array.from({ length: 8 }, client);
  const swapMs: number[] = [];
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 30));
    const t0 = performance.now();
    const info = await env.workers.swap("hot", i % 2 === 0 ? v2 : v1, { deadlineMs: 2000 });
    swapMs.push(performance.now() - t0);
    assert.equal(info.version, i % 2 === 0 ? "2.0.0" : "1.0.0");
  }
  await new Promise((r) => setTimeout(r, 50));
  stop = true;
  await Promise.all(clients);
  await pool.close();
  assert.deepEqual(failures, []);
  assert.ok(ok > 100, `only ${ok} requests`);
  assert.deepEqual([...seen].sort(), ["1.0.0", "2.0.0"]);
  assert.equal(env.workers.get("hot")?.version, "1.0.0"); // 20 swaps: back to v1
  console.log(`# swap: ${ok} requests, swap ms median ${swapMs.sort((a, b) => a - b)[10].toFixed(1)}`);
});

test("a swap to a broken version keeps the old one serving", async () => {
  const bad = writePlugin(
    env.home,
    "hot",
    "3.0.0",
    whoPlugin("hot", "3.0.0").replace(
      "export function init() {}",
      "export function init() { throw new Error('v3 broken'); }",
    ),
  );
  await assert.rejects(env.workers.swap("hot", bad), /v3 broken/);
  const r = await fetch(`${env.base}/plugin/hot/api/who`);
  assert.equal(((await r.json()) as { version: string }).version, "1.0.0");
});

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { type Env, raw, setup, whoPlugin, writePlugin } from "./helpers.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

let env: Env;
before(async () => {
  env = await setup();
});
after(async () => {
  await env.close();
});

function heapMiB(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

test("unload frees code: main heap flat across 50 load/unload cycles of a 256 KiB module", async () => {
  // A big module body (256 KiB of code) makes a leak of module code visible.
  const filler = `export const big = [${Array.from({ length: 16_000 }, (_, i) => `"${i.toString(36).padStart(12, "x")}"`).join(",")}];`;
  const spec = writePlugin(env.home, "cycle", "1.0.0", whoPlugin("cycle", "1.0.0") + filler);
  const cycle = async () => {
    const loaded = await env.workers.load(spec);
    assert.equal(loaded.status, "running");
    const r = await raw(env.port, "GET", "/plugin/cycle/api/who");
    assert.equal(r.status, 200);
    assert.equal(await env.workers.unload("cycle", { deadlineMs: 1000 }), true);
  };
  for (let i = 0; i < 5; i++) await cycle(); // warm up
  const before = heapMiB();
  for (let i = 0; i < 50; i++) await cycle();
  const afterHeap = heapMiB();
  console.log(`# main heap before ${before.toFixed(2)} MiB, after 50 cycles ${afterHeap.toFixed(2)} MiB`);
  assert.ok(afterHeap - before < 4, `main heap grew ${(afterHeap - before).toFixed(2)} MiB`);
  assert.equal((await raw(env.port, "GET", "/plugin/cycle/api/who")).status, 404);
  assert.deepEqual(env.workers.list(), []);
});

/**
 * Handler deadlines and the reply cap for container plugins (fixtures/deadlines, an SDK plugin in a real container):
 * the daemon's settings reach the container's SDK, which answers through the same HttpExchanges as in-process
 * plugins: 504 `handler_timeout` past a route's deadline (its own `timeoutMs`, else the default) with the handler's
 * `req.signal` aborted, `0` = none, 502 `reply_too_large` for a body above the cap (a streamed one goes through
 * whole), and with an operator cap the proxy answers 504 itself for a container whose event loop is wedged.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { type Env, installPlugin, repoRoot, setup, skipReason } from "./helpers.js";

const skip = skipReason();
const FIXTURE = join(repoRoot, "packages/daemon/test/container/fixtures/deadlines");
const KiB = 1024;

async function get(url: string): Promise<{ status: number; ms: number; body: Record<string, unknown> | string }> {
  const t = performance.now();
  const r = await request(url);
  const text = await r.body.text();
  let body: Record<string, unknown> | string = text;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {}
  return { status: r.statusCode, ms: performance.now() - t, body };
}

const code = (b: unknown) => (b as { error?: { code?: string } }).error?.code;

describe("container plugins: handler deadlines and the reply cap (real podman)", { skip }, () => {
  let env: Env;
  let api: string;
  before(async () => {
    env = await setup({ replies: { handlerTimeoutMs: 1000, maxReplyBytes: 256 * KiB } });
    await env.containers.load(installPlugin(env.home, "dl", FIXTURE));
    api = `${env.base}/plugin/dl/api`;
  });
  after(async () => {
    await env?.close();
  });

  it("past the default deadline: 504 handler_timeout, and the handler's signal aborts", async () => {
    const r = await get(`${api}/sleep/3000?tag=default`);
    assert.equal(r.status, 504);
    assert.equal(code(r.body), "handler_timeout");
    assert.ok(r.ms >= 950 && r.ms < 2500, `answered after ${Math.round(r.ms)} ms`);
    const a = await get(`${api}/aborted/default`);
    assert.match(String((a.body as { reason: string }).reason), /^TimeoutError: .*1000 ms/);
    assert.equal((await get(`${api}/sleep/100`)).status, 200, "a quick answer is untouched");
  });

  it("a route's own timeoutMs wins over the default; 0 is no deadline", async () => {
    const own = await get(`${api}/own/3000`);
    assert.equal(own.status, 504);
    assert.ok(own.ms < 1000, `own 400 ms deadline, answered after ${Math.round(own.ms)} ms`);
    const none = await get(`${api}/none/1600`);
    assert.equal(none.status, 200);
    assert.deepEqual(none.body, { slept: 1600 });
  });

  it("a body above the cap is 502 reply_too_large; below it and streamed ones go through", async () => {
    const big = await get(`${api}/big/${300 * KiB}`);
    assert.equal(big.status, 502);
    assert.equal(code(big.body), "reply_too_large");
    const fits = await get(`${api}/big/${200 * KiB}`);
    assert.equal(fits.status, 200);
    assert.equal((fits.body as string).length, 200 * KiB);
    const streamed = await get(`${api}/stream/8`);
    assert.equal(streamed.status, 200);
    assert.equal((streamed.body as string).length, 8 * 64 * KiB, "512 KiB streamed, above the 256 KiB cap");
  });

  it("with an operator cap, the proxy answers 504 for a container whose event loop is wedged", async () => {
    const capped = env.newContainers({ replies: { maxHandlerTimeoutMs: 500 } });
    await capped.load(installPlugin(env.home, "dlcap", FIXTURE));
    const capApi = `${env.base}/plugin/dlcap/api`;
    // The cap bounds a route's `timeoutMs: 0` in the container's SDK...
    const none = await get(`${capApi}/none/3000`);
    assert.equal(none.status, 504);
    assert.ok(none.ms < 1500, `capped at 500 ms, answered after ${Math.round(none.ms)} ms`);
    // ...and when the SDK cannot answer (a busy loop), the proxy does, cap + its 2 s margin.
    const wedged = await get(`${capApi}/wedge/6000`);
    assert.equal(wedged.status, 504);
    assert.equal(code(wedged.body), "handler_timeout");
    assert.ok(wedged.ms >= 2400 && wedged.ms < 5000, `answered after ${Math.round(wedged.ms)} ms`);
    await capped.unload("dlcap");
  });
});

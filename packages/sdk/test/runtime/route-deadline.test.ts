/**
 * The route deadline option (`timeoutMs`) is checked at load and announced to the host (which enforces it, see the
 * daemon's test/worker/deadline.test.ts); the shorthand helpers carry it. A non-streamed reply above the dispatcher's
 * cap is answered 502 `reply_too_large` (with a log line) before it is encoded.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { PluginModule, RouteDefinition } from "../../src/contract.js";
import type { MainToWorker, WorkerToMain } from "../../src/protocol.js";
import * as routes from "../../src/routes.js";
import { Dispatcher } from "../../src/runtime/dispatcher.js";

const config = {
  pluginName: "dl",
  pluginVersion: "1.0.0",
  storeId: null,
  dataDir: "/nonexistent",
  paths: {} as never,
  apiPrefix: "/plugin/dl/api",
  staticPrefix: "/plugin/dl",
  settings: {},
  standalone: true,
};

function plugin(list: RouteDefinition[]): PluginModule {
  return { manifest: () => ({ name: "dl", version: "1.0.0" }), init() {}, routes: () => list };
}

test("timeoutMs travels in the announcement; an invalid one fails the load", async () => {
  const r = await new Dispatcher({ post() {} }).load(
    plugin([
      routes.get("/slow", () => "ok", { timeoutMs: 120_000 }),
      routes.get("/poll", () => "ok", { timeoutMs: 0 }),
    ]),
    config,
  );
  assert.equal(r.t, "ready", JSON.stringify(r));
  if (r.t === "ready")
    assert.deepEqual(
      r.routes.map((a) => a.timeoutMs),
      [120_000, 0],
    );
  for (const bad of [-1, 1.5, Number.POSITIVE_INFINITY, "5" as unknown as number]) {
    const f = await new Dispatcher({ post() {} }).load(
      plugin([routes.get("/x", () => "ok", { timeoutMs: bad })]),
      config,
    );
    assert.equal(f.t, "load-failed");
    if (f.t === "load-failed") assert.match(f.message, /timeoutMs must be a non-negative integer/);
  }
});

test("a body above maxReplyBytes is a 502 reply_too_large and a log line; at the cap it is sent", async () => {
  const posted: WorkerToMain[] = [];
  const d = new Dispatcher({ post: (m) => posted.push(m) }, { maxReplyBytes: 10 });
  const bodies: Record<string, unknown> = {
    "/ascii-10": "a".repeat(10),
    "/utf8-12": "\u00e9".repeat(6), // 6 units, 12 bytes
    "/bytes-11": new Uint8Array(11),
    "/json-12": ["1234567890"], // ["1234567890"] is 14 bytes
    "/json-ok": [1, 2],
  };
  const list = Object.entries(bodies).map(([path, body]) => routes.get(path, () => ({ body })));
  assert.equal((await d.load(plugin(list), config)).t, "ready");
  const req = (id: number, routeId: number): MainToWorker => ({
    t: "req",
    id,
    routeId,
    method: "GET",
    path: list[routeId].path,
    params: {},
    query: {},
    headers: {},
    complete: true,
  });
  for (let i = 0; i < list.length; i++) d.handle(req(i + 1, i));
  await new Promise((r) => setTimeout(r, 50));
  const statuses = Object.fromEntries(posted.flatMap((m) => (m.t === "res" ? [[list[m.id - 1].path, m.status]] : [])));
  assert.deepEqual(statuses, { "/ascii-10": 200, "/utf8-12": 502, "/bytes-11": 502, "/json-12": 502, "/json-ok": 200 });
  const logs = posted.filter((m) => m.t === "log").map((m) => (m as { msg: string }).msg);
  assert.equal(logs.filter((l) => /refused \(502\).*above the 10-byte cap/.test(l)).length, 3);
});

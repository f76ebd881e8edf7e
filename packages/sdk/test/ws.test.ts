import assert from "node:assert/strict";
import { test } from "node:test";
import { standaloneConfig } from "../src/config.js";
import type { PluginModule } from "../src/contract.js";
import type { MainToWorker, WorkerToMain } from "../src/protocol.js";
import { Dispatcher } from "../src/runtime/dispatcher.js";
import * as ws from "../src/ws.js";

const tick = () => new Promise((r) => setImmediate(r));

test("ws helper: topics, broadcast with backpressure, unsubscribe on close, closed at terminate", async () => {
  const out: WorkerToMain[] = [];
  const d = new Dispatcher({ post: (m) => out.push(m) });
  const mod: PluginModule = {
    manifest: () => ({ name: "w", version: "1.0.0" }),
    init() {},
    routes: () => [
      ws.endpoint(
        "/live",
        { onOpen: (c) => ws.subscribe(c, c.query.topic as string) },
        { allowedOrigins: ["https://x.example"] },
      ),
      ws.endpoint("/no", { onOpen: () => false }),
    ],
  };
  const ready = await d.load(mod, standaloneConfig("w"));
  assert.equal(ready.t, "ready");
  if (ready.t === "ready") assert.deepEqual(ready.routes[0].allowedOrigins, ["https://x.example"]);
  const open = (connId: number, topic: string, routeId = 0): MainToWorker => ({
    t: "ws-open",
    connId,
    routeId,
    path: "/live",
    params: {},
    query: { topic },
    headers: {},
  });
  d.handle(open(1, "a"));
  d.handle(open(2, "a"));
  d.handle(open(3, "b"));
  d.handle(open(4, "a", 1));
  await tick();
  assert.deepEqual(
    out.filter((m) => m.t === "ws-accept").map((m) => (m as { connId: number }).connId),
    [1, 2, 3],
  );
  assert.deepEqual(
    out.find((m) => m.t === "ws-reject"),
    { t: "ws-reject", connId: 4, status: 403 },
  );
  assert.equal(ws.subscribers("a"), 2);

  out.length = 0;
  const b1 = ws.broadcast("a", "one", { maxPending: 1 });
  await tick();
  const sends = out.filter((m) => m.t === "ws-send") as Extract<WorkerToMain, { t: "ws-send" }>[];
  assert.deepEqual(
    sends.map((s) => [s.connId, s.data]),
    [
      [1, "one"],
      [2, "one"],
    ],
  );
  // conn 2 acknowledges, conn 1 does not (slow consumer): the next broadcast skips conn 1.
  d.handle({ t: "ws-sent", connId: 2, seq: sends[1].seq });
  await tick();
  const b2 = ws.broadcast("a", "two", { maxPending: 1 });
  await tick();
  const s2 = out.filter((m) => m.t === "ws-send").slice(2) as Extract<WorkerToMain, { t: "ws-send" }>[];
  assert.deepEqual(
    s2.map((s) => s.connId),
    [2],
  );
  d.handle({ t: "ws-sent", connId: 2, seq: s2[0].seq });
  assert.deepEqual(await b2, { sent: 1, skipped: 1, failed: 0 });
  // conn 1 goes away: its pending send fails, it leaves the topic.
  d.handle({ t: "ws-closed", connId: 1, code: 1006, reason: "" });
  assert.deepEqual(await b1, { sent: 1, skipped: 0, failed: 1 });
  await tick();
  assert.equal(ws.subscribers("a"), 1);
  ws.unsubscribe({ id: "x" } as never, "a"); // unknown connection: no-op
  assert.equal(ws.connectionCount(), 2);

  out.length = 0;
  d.handle({ t: "terminate", deadlineMs: 100 });
  for (let i = 0; i < 20 && !out.some((m) => m.t === "terminated"); i++) await tick();
  const closes = out.filter((m) => m.t === "ws-close") as Extract<WorkerToMain, { t: "ws-close" }>[];
  assert.deepEqual(closes.map((c) => [c.connId, c.code]).sort(), [
    [2, 1001],
    [3, 1001],
  ]);
  assert.equal(out.at(-1)?.t, "terminated");
  assert.equal(ws.connectionCount(), 0);
  assert.equal(ws.subscribers("b"), 0);
});

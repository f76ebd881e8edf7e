/**
 * A client flooding a WebSocket route of a slow plugin: inbound messages are flow-controlled (ws-ack window), so
 * the daemon stops reading the client instead of queueing everything for the plugin; the plugin never has more
 * than a window's worth of messages in progress, and /health stays responsive.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { type Env, json, raw, setup, writePlugin } from "../worker/helpers.js";

let env: Env;

// onMessage takes 100 ms per message (async: the worker still answers heartbeats) and tracks how many are in progress.
const SLOW_SINK = `
export function manifest() { return { name: "sink", version: "1.0.0" }; }
export function init() {}
let received = 0, pending = 0, maxPending = 0;
export function routes() {
  return [
    { kind: "ws", path: "/sink", handlers: { onMessage: async () => {
      received++; pending++; maxPending = Math.max(maxPending, pending);
      await new Promise((r) => setTimeout(r, 100));
      pending--;
    } } },
    { method: "GET", path: "/stats", handler: () => ({ received, maxPending }) },
  ];
}
`;

before(async () => {
  env = await setup();
  await env.workers.load(writePlugin(env.home, "sink", "1.0.0", SLOW_SINK));
});
after(() => env.close());

test("a ws flood to a slow plugin is throttled by the daemon, not queued for the plugin", async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${env.port}/plugin/sink/api/sink`);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  const chunk = Buffer.alloc(256 * 1024, 7);
  // Queue 40 MiB at once: without flow control the daemon reads it all and hands 160 messages to the plugin.
  for (let i = 0; i < 160; i++) ws.send(chunk);
  await new Promise((r) => setTimeout(r, 1000));
  const mid = json(await raw(env.port, "GET", "/plugin/sink/api/stats"));
  const health = await raw(env.port, "GET", "/health");
  ws.terminate();
  console.log(`# ws flood: ${JSON.stringify(mid)}, client still buffering ${ws.bufferedAmount} bytes`);
  assert.equal(health.status, 200);
  // 1 MiB window / 256 KiB messages = 4 in flight (+ the one that crossed the line, + frames already parsed).
  assert.ok(mid.maxPending <= 8, `plugin had ${mid.maxPending} messages in progress at once`);
  assert.ok(mid.received > 10, `flow control stalled the connection: ${mid.received} received`);
  assert.ok(mid.received < 160, "everything was read at once: no backpressure");
});

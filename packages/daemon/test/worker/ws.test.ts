import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, test } from "node:test";
import { WebSocket } from "ws";
import { type Env, json, raw, setup, writePlugin } from "./helpers.js";

const PLUGIN = `
import { ws } from "@hecate/sdk";
export function manifest() { return { name: "live", version: "1.0.0" }; }
export function init() {}
export function routes() {
  return [
    ws.endpoint("/live/:room", {
      onOpen(c) { ws.subscribe(c, "news"); c.state.room = c.params.room; },
      async onMessage(c, d) { await c.send("echo:" + c.state.room + ":" + d); },
    }),
    ws.endpoint("/any-origin", { onOpen(c) { ws.subscribe(c, "news"); } }, { allowedOrigins: "*" }),
    ws.endpoint("/refuse", { onOpen: () => false }),
    { method: "POST", path: "/broadcast", handler: async (req) => ws.broadcast("news", await req.text()) },
    { method: "GET", path: "/subs", handler: () => ({ n: ws.subscribers("news"), conns: ws.connectionCount() }) },
  ];
}
`;

let env: Env;
before(async () => {
  env = await setup();
});
after(async () => {
  await env.close();
});

function connect(url: string, origin?: string): Promise<WebSocket> {
  const w = new WebSocket(url, origin ? { origin } : {});
  return new Promise((resolve, reject) => {
    w.once("open", () => resolve(w));
    w.once("unexpected-response", (_req, res) => {
      reject(new Error(`status ${res.statusCode}`));
      w.terminate();
    });
    w.once("error", reject);
  });
}

function nextMessage(w: WebSocket): Promise<string> {
  return once(w, "message").then(([d]) => String(d));
}

test("ws relay: connect, echo, broadcast, Origin policy, closed at unload", async () => {
  await env.workers.load(writePlugin(env.home, "live", "1.0.0", PLUGIN));
  const wsBase = `ws://127.0.0.1:${env.port}/plugin/live/api`;
  const own = `http://127.0.0.1:${env.port}`;

  const a = await connect(`${wsBase}/live/r1`, own);
  const b = await connect(`${wsBase}/live/r2`); // non-browser client: no Origin header
  a.send("hi");
  assert.equal(await nextMessage(a), "echo:r1:hi");

  const got = Promise.all([nextMessage(a), nextMessage(b)]);
  const r = await raw(env.port, "POST", "/plugin/live/api/broadcast", {
    body: "hello all",
    headers: { "content-type": "application/json" },
  });
  assert.deepEqual(json(r), { sent: 2, skipped: 0, failed: 0 });
  assert.deepEqual(await got, ["hello all", "hello all"]);

  await assert.rejects(connect(`${wsBase}/live/r1`, "http://evil.example"), /status 403/);
  await assert.rejects(connect(`${wsBase}/refuse`, own), /status 403/);
  await assert.rejects(connect(`${wsBase}/nope`, own), /status 404/);
  await assert.rejects(connect(`ws://127.0.0.1:${env.port}/plugin/other/api/x`), /status 404/);
  const foreignOk = await connect(`${wsBase}/any-origin`, "http://elsewhere.example");

  // A client leaving is seen by the plugin (unsubscribed).
  b.close();
  await once(b, "close");
  for (let i = 0; i < 50 && json(await raw(env.port, "GET", "/plugin/live/api/subs")).n !== 2; i++)
    await new Promise((res) => setTimeout(res, 20));
  assert.deepEqual(json(await raw(env.port, "GET", "/plugin/live/api/subs")), { n: 2, conns: 2 });

  const closedA = once(a, "close");
  const closedF = once(foreignOk, "close");
  await env.workers.unload("live");
  const [code] = await closedA;
  assert.equal(code, 1001);
  assert.equal((await closedF)[0], 1001);
  await assert.rejects(connect(`${wsBase}/live/r1`, own), /status 404/);
});

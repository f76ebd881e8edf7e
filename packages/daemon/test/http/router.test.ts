import assert from "node:assert/strict";
import { once } from "node:events";
import type { Server } from "node:http";
import { after, before, test } from "node:test";
import { WebSocket, WebSocketServer } from "ws";
import { type PluginMount, Router } from "../../src/http/router.js";
import { createHttpServer, listen } from "../../src/http/server.js";
import { raw } from "../worker/helpers.js";

// The generic mount API as ContainerPlugins uses it: a catch-all proxy route and a catch-all upgrade.
let server: Server;
let port: number;
const router = new Router();
const wss = new WebSocketServer({ noServer: true });

before(async () => {
  server = createHttpServer(router);
  port = await listen(server);
});
after(async () => {
  wss.close();
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

const proxyMount = (tag: string): PluginMount => ({
  routes: [
    {
      method: "*",
      path: "/*",
      handler: (req, res, params, ctx) => {
        res.setHeader("content-type", "application/json");
        res.end(
          JSON.stringify({
            tag,
            method: req.method,
            rest: params["*"],
            path: ctx.path,
            q: ctx.query,
            plugin: ctx.plugin,
          }),
        );
      },
    },
  ],
  upgrade: (req, socket, head, _params, ctx) => {
    wss.handleUpgrade(req, socket, head, (ws) => ws.send(`${tag}:${ctx.path}`));
  },
});

test("catch-all proxy routes and upgrades under /plugin/{name}/api", async () => {
  router.setPlugin("c", proxyMount("v1"));
  const r = await raw(port, "POST", "/plugin/c/api/x/y?z=1", {
    body: "{}",
    headers: { "content-type": "application/json" },
  });
  assert.deepEqual(JSON.parse(r.body.toString()), {
    tag: "v1",
    method: "POST",
    rest: "x/y",
    path: "/x/y",
    q: { z: "1" },
    plugin: "c",
  });
  const ws = new WebSocket(`ws://127.0.0.1:${port}/plugin/c/api/events`);
  const [msg] = await once(ws, "message");
  assert.equal(String(msg), "v1:/events");
  ws.close();
  const foreign = new WebSocket(`ws://127.0.0.1:${port}/plugin/c/api/events`, { origin: "http://evil.example" });
  const [, res] = await once(foreign, "unexpected-response");
  assert.equal(res.statusCode, 403);
  foreign.on("error", () => {});
  foreign.terminate();

  // Replacing the mount is one swap; removing it makes everything 404 at once.
  const v = router.tableVersion;
  router.setPlugin("c", proxyMount("v2"));
  assert.equal(router.tableVersion, v + 1);
  assert.equal(JSON.parse((await raw(port, "GET", "/plugin/c/api/a")).body.toString()).tag, "v2");
  assert.equal(router.removePlugin("c"), true);
  assert.equal((await raw(port, "GET", "/plugin/c/api/a")).status, 404);
  assert.equal(router.removePlugin("c"), false);
});

test("a mount that fails to build leaves the previous table in place", () => {
  router.setPlugin("d", proxyMount("ok"));
  const v = router.tableVersion;
  assert.throws(() =>
    router.setPlugin("d", {
      routes: [
        { method: "GET", path: "/same", handler: () => {} },
        { method: "GET", path: "/same", handler: () => {} },
      ],
    }),
  );
  assert.equal(router.tableVersion, v);
  assert.throws(() => router.setPlugin("Bad/Name", {}), /invalid plugin name/);
  router.removePlugin("d");
});

/**
 * The router's answers when no route takes a request (real HTTP server on 127.0.0.1): 405 + Allow when the path is
 * served with other methods (plugin API, static files, system routes), 404 otherwise, and 503 plugin_not_active with
 * the supervisor's message for a plugin that is installed but not loaded (HTTP and WebSocket upgrades alike).
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { WebSocket } from "ws";
import { Router } from "../../src/http/router.js";
import { createHttpServer, listen } from "../../src/http/server.js";
import { json, raw } from "../worker/helpers.js";

let server: Server;
let port: number;
const router = new Router();
const staticDir = mkdtempSync(join(tmpdir(), "hecate-router-errors-"));
const ok = (_req: unknown, res: import("node:http").ServerResponse) => res.end("ok");

before(async () => {
  writeFileSync(join(staticDir, "index.html"), "<p>hi</p>");
  server = createHttpServer(router);
  port = await listen(server);
  router.setPlugin("tasks", {
    routes: [
      { method: "POST", path: "/tasks", handler: ok },
      { method: ["GET", "DELETE"], path: "/tasks/:id", handler: ok },
    ],
    ws: [{ path: "/live", handler: (_req, socket) => socket.destroy() }],
    staticDir,
  });
  router.setPlugin("bare", { routes: [{ method: "GET", path: "/x", handler: ok }] });
  router.setSystemRoutes("admin", [{ method: "POST", path: "/admin/api/thing", handler: ok }]);
});
after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(staticDir, { recursive: true, force: true });
});

test("a wrong method answers 405 with Allow; an unknown path stays 404", async () => {
  const cases: [string, string, string][] = [
    ["GET", "/plugin/tasks/api/tasks", "POST"],
    ["PUT", "/plugin/tasks/api/tasks/7", "GET, HEAD, DELETE"],
    ["POST", "/plugin/tasks/index.html", "GET, HEAD"],
    ["DELETE", "/health", "GET, HEAD"],
    ["GET", "/admin/api/thing", "POST"],
  ];
  for (const [method, path, allow] of cases) {
    const r = await raw(port, method, path);
    assert.equal(r.status, 405, `${method} ${path}`);
    assert.equal(r.headers.allow, allow, `${method} ${path}`);
    assert.equal(json(r).error.code, "method_not_allowed");
    assert.match(json(r).error.message, new RegExp(`${method} is not allowed here; use ${allow}`));
  }
  // the right method still works, and HEAD comes with GET
  assert.equal((await raw(port, "POST", "/plugin/tasks/api/tasks")).status, 200);
  assert.equal((await raw(port, "HEAD", "/plugin/tasks/api/tasks/7")).status, 200);
  // nothing at all there: 404 (the static catch-all never counts under api/, nor for a plugin without static files)
  for (const [method, path] of [
    ["POST", "/plugin/tasks/api/nothing"],
    ["GET", "/plugin/tasks/api/nothing"],
    ["POST", "/plugin/bare/page.html"],
    ["GET", "/nowhere"],
  ]) {
    const r = await raw(port, method, path);
    assert.equal(r.status, 404, `${method} ${path}`);
    assert.equal(r.headers.allow, undefined);
  }
});

test("an installed plugin that is not loaded answers 503 plugin_not_active with the given message", async () => {
  const message = "plugin notes is not active (it is deactivated); activate it with: hecate plugin activate notes";
  assert.equal((await raw(port, "GET", "/plugin/notes/api/list")).status, 404); // not known yet: a plain 404
  router.setInactive({ notes: message });
  for (const path of ["/plugin/notes/api/list", "/plugin/notes/", "/plugin/notes"]) {
    const r = await raw(port, "GET", path);
    assert.equal(r.status, 503, path);
    assert.deepEqual(json(r).error, { code: "plugin_not_active", message });
  }
  // a WebSocket upgrade is refused the same way
  const ws = new WebSocket(`ws://127.0.0.1:${port}/plugin/notes/api/live`);
  ws.on("error", () => {});
  const [, res] = await once(ws, "unexpected-response");
  assert.equal(res.statusCode, 503);
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  assert.deepEqual(JSON.parse(Buffer.concat(chunks).toString()).error, { code: "plugin_not_active", message });

  // a loaded plugin is served even if the set still names it (the mount wins), and the set is replaced as a whole
  router.setInactive({ notes: message, tasks: "stale" });
  assert.equal((await raw(port, "POST", "/plugin/tasks/api/tasks")).status, 200);
  assert.equal((await raw(port, "GET", "/plugin/tasks/api/nothing")).status, 404);
  router.setInactive({});
  assert.equal((await raw(port, "GET", "/plugin/notes/api/list")).status, 404);
});

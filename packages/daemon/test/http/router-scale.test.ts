/**
 * The router with many plugins (real HTTP server on 127.0.0.1): a mount builds only that plugin's tables, so
 * mounting N plugins one after the other costs O(N) (the former whole-table rebuild per mount was O(N²): 400 mounts
 * took tens of seconds), every plugin keeps answering through the mounts and removals of the others, and only the
 * canonical spelling of a plugin's prefix reaches it.
 */
import assert from "node:assert/strict";
import type { Server, ServerResponse } from "node:http";
import { after, before, test } from "node:test";
import { type PluginMount, Router } from "../../src/http/router.js";
import { createHttpServer, listen } from "../../src/http/server.js";
import { raw } from "../worker/helpers.js";

let server: Server;
let port: number;
const router = new Router();

before(async () => {
  server = createHttpServer(router);
  port = await listen(server);
});
after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

const name = (i: number) => `p${String(i).padStart(3, "0")}`;

/** Eight routes like a real plugin's (static, params, wildcard), each answering `{plugin}:{route}`. */
function mount(plugin: string): PluginMount {
  const reply = (tag: string) => (_req: unknown, res: ServerResponse) => res.end(`${plugin}:${tag}`);
  return {
    routes: [
      { method: "GET", path: "/who", handler: reply("who") },
      { method: "GET", path: "/items", handler: reply("list") },
      { method: "POST", path: "/items", handler: reply("create") },
      { method: ["GET", "PUT", "DELETE"], path: "/items/:id", handler: reply("item") },
      { method: "GET", path: "/items/:id/notes/:note", handler: reply("note") },
      { method: "GET", path: "/search", handler: reply("search") },
      { method: "POST", path: "/upload", handler: reply("upload") },
      { method: "GET", path: "/files/*", handler: reply("files") },
    ],
    manifest: { name: plugin, version: "1.0.0" },
  };
}

const get = async (path: string, method = "GET") => {
  const r = await raw(port, method, path);
  return { status: r.status, body: r.body.toString() };
};

test("400 plugins mount in linear time and each answers its own routes", async () => {
  const N = 400;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) router.setPlugin(name(i), mount(name(i)));
  const ms = performance.now() - t0;
  // Linear: ~3200 routes, well under a second even on a busy 2-core machine; the quadratic rebuild needed 642k
  // route insertions for the same mounts.
  assert.ok(ms < 5000, `400 mounts took ${ms.toFixed(0)} ms`);
  assert.equal(router.mounted().size, N);
  for (const i of [0, 1, 199, 398, 399]) {
    const p = name(i);
    assert.deepEqual(await get(`/plugin/${p}/api/who`), { status: 200, body: `${p}:who` });
    assert.deepEqual(await get(`/plugin/${p}/api/items/7/notes/3`), { status: 200, body: `${p}:note` });
    assert.deepEqual(await get(`/plugin/${p}/api/items`, "POST"), { status: 200, body: `${p}:create` });
    assert.deepEqual(await get(`/plugin/${p}/api/files/a/b`), { status: 200, body: `${p}:files` });
    assert.equal((await get(`/plugin/${p}/api/manifest`)).status, 200);
    assert.equal((await get(`/plugin/${p}/api/who`, "HEAD")).status, 200);
  }
  // Another plugin's path, a non-canonical spelling of a prefix, an unknown plugin: never routed to a plugin.
  assert.equal((await get("/plugin/p%30%300/api/who")).status, 404);
  assert.equal((await get("/plugin/zzz/api/who")).status, 404);
  assert.equal((await get("/plugin//api/who")).status, 404);
  // 405 + Allow from the plugin's own table.
  const r = await raw(port, "PATCH", `/plugin/${name(5)}/api/items/1`);
  assert.equal(r.status, 405);
  assert.equal(r.headers.allow, "GET, HEAD, PUT, DELETE");
});

test("a mount or removal leaves every other plugin's routes in place, and a failed mount changes nothing", async () => {
  const v = router.tableVersion;
  assert.equal(router.removePlugin(name(10)), true);
  assert.equal((await get(`/plugin/${name(10)}/api/who`)).status, 404);
  assert.equal((await get(`/plugin/${name(11)}/api/who`)).body, `${name(11)}:who`);
  assert.throws(() =>
    router.setPlugin(name(11), {
      routes: [
        { method: "GET", path: "/dup", handler: () => {} },
        { method: "GET", path: "/dup", handler: () => {} },
      ],
    }),
  );
  assert.equal((await get(`/plugin/${name(11)}/api/who`)).body, `${name(11)}:who`);
  assert.equal(router.tableVersion, v + 1);
  router.setPlugin(name(10), mount(name(10)));
  assert.equal((await get(`/plugin/${name(10)}/api/items/9`, "DELETE")).body, `${name(10)}:item`);
});

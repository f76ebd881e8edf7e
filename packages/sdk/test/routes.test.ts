import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { resetConfig, setConfig, standaloneConfig } from "../src/config.js";
import type { HttpRouteDefinition, PluginModule } from "../src/contract.js";
import * as routes from "../src/routes.js";
import { createTestHarness } from "../src/runtime/harness.js";
import * as ws from "../src/ws.js";

test("group: sub-prefixes nest and keep methods, handlers and ws routes", () => {
  const list = () => "list";
  const defs = routes.group("/boards/:board", [
    routes.get("/", list),
    routes.post("/tasks", list),
    ...routes.group("/tasks/:id", [routes.del("/", list), routes.route(["PUT", "PATCH"], "/title", list)]),
    ws.endpoint("/live"),
  ]);
  assert.deepEqual(
    defs.map((d) => [d.kind, d.kind === "ws" ? "WS" : (d as HttpRouteDefinition).method, d.path]),
    [
      ["http", "GET", "/boards/:board"],
      ["http", "POST", "/boards/:board/tasks"],
      ["http", "DELETE", "/boards/:board/tasks/:id"],
      ["http", ["PUT", "PATCH"], "/boards/:board/tasks/:id/title"],
      ["ws", "WS", "/boards/:board/live"],
    ],
  );
  assert.equal((defs[0] as HttpRouteDefinition).handler, list);
  assert.equal(routes.join("/", "/"), "/");
  assert.equal(routes.join("/a/", "/b"), "/a/b");
});

test("routes escaping the prefix are refused with a typed error", () => {
  const h = () => null;
  for (const bad of ["../x", "/a/../b", "/./a", "http://evil.example/x", "//evil.example", "/a?x=1", "/a%2e%2e", "x"]) {
    assert.throws(() => routes.get(bad, h), { name: "RoutePathError", code: "invalid_route_path", field: "path" }, bad);
  }
  assert.throws(() => routes.group("..", []), { field: "prefix" });
  assert.throws(() => routes.group("/ok", [{ method: "GET", path: "/../admin", handler: h }]), {
    code: "invalid_route_path",
  });
});

test("url/staticUrl: the plugin's own prefix, encoded params and query, no way out", () => {
  resetConfig();
  const config = standaloneConfig("taskboard");
  setConfig(config);
  try {
    assert.equal(routes.url("/tasks"), "/plugin/taskboard/api/tasks");
    assert.equal(routes.url("/"), "/plugin/taskboard/api/");
    assert.equal(
      routes.url("/boards/:board/tasks/:id", { board: "team a/b", id: 42 }),
      "/plugin/taskboard/api/boards/team%20a%2Fb/tasks/42",
    );
    assert.equal(
      routes.url("/files/*", { "*": "dir one/ü?.txt" }),
      "/plugin/taskboard/api/files/dir%20one/%C3%BC%3F.txt",
    );
    assert.equal(
      routes.url("/tasks", undefined, { q: "a&b=c", tag: ["x", "y"], skip: undefined, done: false }),
      "/plugin/taskboard/api/tasks?q=a%26b%3Dc&tag=x&tag=y&done=false",
    );
    assert.equal(routes.staticUrl("/js/app.js", undefined, { v: 3 }), "/plugin/taskboard/js/app.js?v=3");
    assert.deepEqual(routes.prefixes(), { api: "/plugin/taskboard/api", static: "/plugin/taskboard" });

    assert.throws(() => routes.url("/tasks/:id"), { code: "invalid_route_path", field: "params.id" });
    assert.throws(() => routes.url("/tasks/:id", { id: "" }), { field: "params.id" });
    assert.throws(() => routes.url("/tasks/:id", { id: ".." }), { field: "params.id" });
    assert.throws(() => routes.url("/files/*", { "*": "a/../../admin" }), { field: "params.*" });
    assert.throws(() => routes.url("/tasks", { idd: 1 }), { field: "params.idd" });
    assert.throws(() => routes.url("https://evil.example/"), { code: "invalid_route_path" });
    assert.throws(() => routes.url("//evil.example/x"), { code: "invalid_route_path" });
    assert.throws(() => routes.staticUrl("/../../admin/"), { code: "invalid_route_path" });
  } finally {
    resetConfig();
    rmSync(join(config.paths.root, "..", ".."), { recursive: true, force: true });
  }
});

test("grouped routes are served by the host under the plugin's prefix and link to themselves", async () => {
  const mod: PluginModule = {
    manifest: () => ({ name: "linker", version: "1.0.0" }),
    init() {},
    routes: () =>
      routes.group("/v1", [
        routes.get("/items/:id", (req) => ({ id: req.params.id, self: routes.url("/v1/items/:id", req.params) })),
      ]),
  };
  const h = await createTestHarness(mod);
  try {
    const r = await h.request("GET", "/v1/items/a%20b");
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { id: "a b", self: "/plugin/linker/api/v1/items/a%20b" });
  } finally {
    await h.close();
    rmSync(join(h.config.paths.root, "..", ".."), { recursive: true, force: true });
  }
});

/**
 * Route request options (`cors`, `multipart`): checked when the plugin loads and announced to the host, which
 * enforces them (the daemon's router); the shorthand helpers of `routes` take them as a last argument.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { PluginModule, RouteDefinition } from "../../src/contract.js";
import { corsPolicyProblem, isJsonContentType, isMultipartContentType } from "../../src/request-policy.js";
import * as routes from "../../src/routes.js";
import { Dispatcher } from "../../src/runtime/dispatcher.js";

function plugin(list: RouteDefinition[]): PluginModule {
  return { manifest: () => ({ name: "opts", version: "1.0.0" }), init() {}, routes: () => list };
}

const load = (list: RouteDefinition[]) =>
  new Dispatcher({ post() {} }).load(plugin(list), {
    pluginName: "opts",
    pluginVersion: "1.0.0",
    storeId: null,
    dataDir: "/nonexistent",
    paths: {} as never,
    apiPrefix: "/plugin/opts/api",
    staticPrefix: "/plugin/opts",
    settings: {},
    standalone: true,
  });

test("cors and multipart travel in the route announcement; routes without them announce nothing extra", async () => {
  const cors = { origins: ["https://app.example"], credentials: true, methods: ["POST" as const] };
  const r = await load([
    routes.post("/upload", () => "ok", { multipart: true }),
    routes.post("/open", () => "ok", { cors }),
    routes.get("/plain", () => "ok"),
    { method: "PUT", path: "/raw", cors: { origins: "*" }, handler: () => "ok" },
  ]);
  assert.equal(r.t, "ready", JSON.stringify(r));
  if (r.t !== "ready") return;
  assert.deepEqual(
    r.routes.map(({ path, cors, multipart }) => ({ path, cors, multipart })),
    [
      { path: "/upload", cors: undefined, multipart: true },
      { path: "/open", cors, multipart: undefined },
      { path: "/plain", cors: undefined, multipart: undefined },
      { path: "/raw", cors: { origins: "*" }, multipart: undefined },
    ],
  );
  assert.ok(!("cors" in r.routes[2]) && !("multipart" in r.routes[2]));
});

test("invalid options fail the load at the routes stage, with the route named", async () => {
  const cases: [RouteDefinition, RegExp][] = [
    [routes.post("/a", () => "ok", { cors: { origins: "*", credentials: true } }), /\/a: cors.credentials needs/],
    [
      routes.post("/b", () => "ok", { cors: { origins: ["https://x.example/"] } }),
      /\/b: cors.origins: .* not an origin/,
    ],
    [routes.post("/c", () => "ok", { cors: { origins: ["*"] } }), /not an origin/],
    [routes.post("/d", () => "ok", { cors: { origins: "*", headers: ["bad header"] } }), /cors.headers/],
    [routes.post("/e", () => "ok", { multipart: "yes" as never }), /\/e: multipart must be a boolean/],
    [routes.post("/f", () => "ok", { cors: { origins: "*", allow: 1 } as never }), /cors.allow is unknown/],
  ];
  for (const [route, why] of cases) {
    const r = await load([route]);
    assert.equal(r.t, "load-failed", route.path);
    if (r.t === "load-failed") {
      assert.equal(r.stage, "routes");
      assert.match(r.message, why);
    }
  }
});

test("content type and policy checks", () => {
  for (const t of ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "application/ld+json"])
    assert.ok(isJsonContentType(t), t);
  for (const t of [undefined, "", "text/json", "application/jsonp", "text/plain", "application/json-seq"])
    assert.ok(!isJsonContentType(t), String(t));
  assert.ok(isMultipartContentType("multipart/form-data; boundary=x"));
  assert.ok(!isMultipartContentType("multipart/mixed; boundary=x"));
  assert.equal(corsPolicyProblem({ origins: ["http://127.0.0.1:8080", "https://a.example"] }), undefined);
  assert.match(String(corsPolicyProblem({ origins: ["ftp://a.example"] })), /not an origin/);
  assert.match(String(corsPolicyProblem(null)), /must be an object/);
});

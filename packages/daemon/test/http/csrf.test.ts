/**
 * CSRF rules of plugin API routes (point 5 of issue 10), enforced by the router before any plugin code runs:
 * in a real daemon with a real in-process plugin package, and on a container-style catch-all mount (the shape
 * ContainerPlugins mounts, with its manifest's `container.http` rules). Raw HTTP, so Origin and Sec-Fetch-Site are
 * sent exactly as a browser would.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import type { Server } from "node:http";
import { after, before, describe, test } from "node:test";
import { type PluginMount, RouteError, Router } from "../../src/http/router.js";
import { createHttpServer, listen } from "../../src/http/server.js";
import { buildPackage, startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";
import { json, type RawResponse, raw } from "../worker/helpers.js";

const APP = "http://app.example:8443";
const EVIL = "http://evil.example";
const JSON_TYPE = { "content-type": "application/json" };

const ROUTES = `
  { method: ["POST", "PUT", "PATCH", "DELETE"], path: "/items", handler: (req) => ({ got: req.method }) },
  { method: "GET", path: "/read", handler: () => ({ got: "GET" }) },
  { method: "POST", path: "/upload", multipart: true, handler: () => ({ got: "upload" }) },
  { method: "POST", path: "/open", cors: { origins: [${JSON.stringify(APP)}], credentials: true, headers: ["x-token"] },
    handler: () => ({ got: "open" }) },
  { method: ["GET", "POST"], path: "/anyone", cors: { origins: "*" }, handler: () => ({ got: "anyone" }) },
`;

describe("in-process plugin routes (real daemon)", () => {
  let d: TestDaemon;
  let port: number;
  let self: string;
  before(async () => {
    d = await startTestDaemon();
    port = Number(new URL(d.url).port);
    self = `http://127.0.0.1:${port}`;
    const r = await d.api("POST", "/admin/api/plugins", {
      body: readFileSync(await buildPackage(d.work, { name: "forms", version: "1.0.0", routes: ROUTES })),
      headers: { "content-type": "application/gzip" },
    });
    assert.equal(r.status, 201, await r.text());
  });
  after(() => d?.stop());

  // An explicit length: node's client frames a DELETE body with nothing otherwise (and chunked is tested on its own).
  const send = (method: string, path: string, headers: Record<string, string>, body?: string) =>
    raw(port, method, `/plugin/forms/api${path}`, {
      headers:
        body === undefined || headers["transfer-encoding"]
          ? headers
          : { "content-length": `${Buffer.byteLength(body)}`, ...headers },
      body,
    });
  const code = (r: RawResponse) => (r.status < 400 ? r.status : `${r.status} ${json(r).error.code}`);

  test("a state-changing request from a foreign origin is refused (403), same-origin and non-browser pass", async () => {
    const cases: [Record<string, string>, number | string][] = [
      [{}, 200],
      [{ origin: self }, 200],
      [{ origin: `https://127.0.0.1:${port}` }, 200], // the host is what counts (TLS may end in front of us)
      [{ "sec-fetch-site": "same-origin" }, 200],
      [{ "sec-fetch-site": "same-site" }, 200],
      [{ origin: EVIL }, "403 origin_forbidden"],
      [{ origin: "http://127.0.0.1:1" }, "403 origin_forbidden"], // another port: another origin
      [{ origin: "null" }, "403 origin_forbidden"], // sandboxed frame, opaque redirect
      [{ origin: "garbage" }, "403 origin_forbidden"],
      [{ "sec-fetch-site": "cross-site" }, "403 origin_forbidden"],
      [{ origin: EVIL, "sec-fetch-site": "same-origin" }, "403 origin_forbidden"],
    ];
    for (const method of ["POST", "PUT", "PATCH", "DELETE"])
      for (const [headers, want] of cases) {
        const r = await send(method, "/items", { ...JSON_TYPE, ...headers }, "{}");
        assert.equal(code(r), want, `${method} ${JSON.stringify(headers)}`);
        if (want === 200) assert.equal(json(r).got, method);
      }
    // Bodyless: same rule for the Origin, no content type needed.
    assert.equal(code(await send("POST", "/items", {})), 200);
    assert.equal(code(await send("POST", "/items", { origin: self })), 200);
    assert.equal(code(await send("DELETE", "/items", {})), 200);
    assert.equal(code(await send("POST", "/items", { origin: EVIL })), "403 origin_forbidden");
    // Reads are not state-changing: a foreign GET reaches the plugin (the browser keeps the reply from the page).
    const read = await send("GET", "/read", { origin: EVIL });
    assert.equal(read.status, 200);
    assert.equal(read.headers["access-control-allow-origin"], undefined);
  });

  test("a body must be JSON, or multipart where the route declares it (else 415)", async () => {
    const types: [string | undefined, number | string][] = [
      ["application/json", 200],
      ["application/json; charset=utf-8", 200],
      ["Application/JSON", 200],
      ["application/vnd.api+json", 200],
      ["application/merge-patch+json; charset=utf-8", 200],
      [undefined, "415 unsupported_media_type"], // a no-cors fetch of a Blob
      ["text/plain", "415 unsupported_media_type"],
      ["text/plain; charset=utf-8", "415 unsupported_media_type"],
      ["application/x-www-form-urlencoded", "415 unsupported_media_type"],
      ["multipart/form-data; boundary=x", "415 unsupported_media_type"],
      ["application/jsonp", "415 unsupported_media_type"],
      ["application/octet-stream", "415 unsupported_media_type"],
    ];
    for (const [type, want] of types) {
      const r = await send("POST", "/items", type ? { "content-type": type } : {}, '{"a":1}');
      assert.equal(code(r), want, String(type));
    }
    // A chunked body counts as a body.
    const chunked = await send("POST", "/items", { "transfer-encoding": "chunked" }, "x");
    assert.equal(code(chunked), "415 unsupported_media_type");
    // An empty body with any type is bodyless.
    assert.equal(code(await send("POST", "/items", { "content-type": "text/plain", "content-length": "0" })), 200);
    // The upload route declared multipart.
    const form = await send("POST", "/upload", { "content-type": "multipart/form-data; boundary=x" }, "--x--\r\n");
    assert.equal(code(form), 200);
    assert.equal(code(await send("POST", "/upload", JSON_TYPE, "{}")), 200);
    assert.equal(
      code(await send("POST", "/upload", { "content-type": "text/plain" }, "x")),
      "415 unsupported_media_type",
    );
    // ...but multipart does not open it to other origins.
    const foreignForm = await send(
      "POST",
      "/upload",
      { origin: EVIL, "content-type": "multipart/form-data; boundary=x" },
      "--x--\r\n",
    );
    assert.equal(code(foreignForm), "403 origin_forbidden");
  });

  test("a route's CORS policy opens it to the listed origins: preflight answered by the daemon, headers set", async () => {
    const pre = await send("OPTIONS", "/open", {
      origin: APP,
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type, x-token",
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers["access-control-allow-origin"], APP);
    assert.equal(pre.headers["access-control-allow-credentials"], "true");
    assert.equal(pre.headers["access-control-allow-methods"], "POST");
    assert.equal(pre.headers["access-control-allow-headers"], "content-type, x-token");
    assert.equal(pre.headers.vary, "Origin");
    const post = await send("POST", "/open", { origin: APP, ...JSON_TYPE }, "{}");
    assert.equal(post.status, 200);
    assert.equal(json(post).got, "open");
    assert.equal(post.headers["access-control-allow-origin"], APP);
    assert.equal(post.headers["access-control-allow-credentials"], "true");
    // Other origins: refused, preflight included; the content type rule still holds for the listed one.
    const otherPre = await send("OPTIONS", "/open", { origin: EVIL, "access-control-request-method": "POST" });
    assert.equal(code(otherPre), "403 cors_forbidden");
    assert.equal(otherPre.headers["access-control-allow-origin"], undefined);
    assert.equal(code(await send("POST", "/open", { origin: EVIL, ...JSON_TYPE }, "{}")), "403 origin_forbidden");
    assert.equal(
      code(await send("POST", "/open", { origin: APP, "content-type": "text/plain" }, "x")),
      "415 unsupported_media_type",
    );
    // A method the route does not have is not pre-approved.
    const put = await send("OPTIONS", "/open", { origin: APP, "access-control-request-method": "PUT" });
    assert.equal(put.headers["access-control-allow-origin"], undefined);
    assert.notEqual(put.status, 204);
    // A route without a policy: no preflight answer (the browser then refuses the request).
    const closed = await send("OPTIONS", "/items", { origin: APP, "access-control-request-method": "POST" });
    assert.equal(closed.headers["access-control-allow-origin"], undefined);
    assert.notEqual(closed.status, 204);
    // origins "*": any origin, no credentials, GET answers carry the header too.
    const any = await send("POST", "/anyone", { origin: EVIL, ...JSON_TYPE }, "{}");
    assert.equal(any.status, 200);
    assert.equal(any.headers["access-control-allow-origin"], "*");
    assert.equal(any.headers["access-control-allow-credentials"], undefined);
    const anyRead = await send("GET", "/anyone", { origin: EVIL });
    assert.equal(anyRead.headers["access-control-allow-origin"], "*");
    const anyPre = await send("OPTIONS", "/anyone", { origin: EVIL, "access-control-request-method": "POST" });
    assert.equal(anyPre.status, 204);
    assert.equal(anyPre.headers["access-control-allow-methods"], "GET, POST");
  });

  test("a plugin announcing an invalid CORS policy does not load", async () => {
    for (const [cors, why] of [
      [`{ origins: "*", credentials: true }`, /credentials needs an explicit origins list/],
      [`{ origins: ["http://a.example/path"] }`, /is not an origin/],
      [`{ origins: [] }`, /non-empty array/],
      [`{ origins: "*", methods: ["BREW"] }`, /cors.methods/],
    ] as const) {
      const archive = await buildPackage(d.work, {
        name: "badcors",
        version: "1.0.0",
        routes: `{ method: "POST", path: "/x", cors: ${cors}, handler: () => 1 },`,
      });
      const r = await d.api("POST", "/admin/api/plugins", {
        body: readFileSync(archive),
        headers: { "content-type": "application/gzip" },
      });
      const text = await r.text();
      assert.notEqual(r.status, 201, text);
      assert.match(text, why);
      await d.api("DELETE", "/admin/api/plugins/badcors");
    }
  });
});

describe("a container-style catch-all mount (rules from the manifest's container.http)", () => {
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

  const mount = (http: { cors?: unknown; multipart_paths?: unknown }): PluginMount =>
    ({
      routes: [
        {
          method: "*",
          path: "/*",
          handler: (req, res) => {
            res.setHeader("content-type", "application/json");
            res.end(JSON.stringify({ got: req.method }));
          },
          cors: http.cors,
          multipart: http.multipart_paths,
        },
      ],
    }) as PluginMount;

  test("defaults without container.http: same-origin JSON only", async () => {
    router.setPlugin("c", mount({}));
    const post = (path: string, headers: Record<string, string>, body?: string) =>
      raw(port, "POST", `/plugin/c/api${path}`, { headers, body });
    assert.equal((await post("/x", JSON_TYPE, "{}")).status, 200);
    assert.equal((await post("/x", { ...JSON_TYPE, origin: EVIL }, "{}")).status, 403);
    assert.equal((await post("/x", { "content-type": "text/plain" }, "x")).status, 415);
    assert.equal((await post("/x", { "content-type": "multipart/form-data; boundary=b" }, "--b--")).status, 415);
  });

  test("multipart_paths and cors from the manifest", async () => {
    router.setPlugin("c", mount({ cors: { origins: [APP] }, multipart_paths: ["/files/:id", "/bulk/*"] }));
    const post = (path: string, headers: Record<string, string>, body?: string) =>
      raw(port, "POST", `/plugin/c/api${path}`, { headers, body });
    const form = { "content-type": "multipart/form-data; boundary=b" };
    assert.equal((await post("/files/1", form, "--b--")).status, 200);
    assert.equal((await post("/bulk/a/b", form, "--b--")).status, 200);
    assert.equal((await post("/files/1/x", form, "--b--")).status, 415);
    assert.equal((await post("/other", form, "--b--")).status, 415);
    const cross = await post("/x", { ...JSON_TYPE, origin: APP }, "{}");
    assert.equal(cross.status, 200);
    assert.equal(cross.headers["access-control-allow-origin"], APP);
    const pre = await raw(port, "OPTIONS", "/plugin/c/api/anything", {
      headers: { origin: APP, "access-control-request-method": "DELETE" },
    });
    assert.equal(pre.status, 204);
    assert.match(String(pre.headers["access-control-allow-methods"]), /DELETE/);
    assert.equal((await post("/x", { ...JSON_TYPE, origin: EVIL }, "{}")).status, 403);
  });

  test("invalid rules are a RouteError and keep the old table", async () => {
    const v = router.tableVersion;
    assert.throws(() => router.setPlugin("c", mount({ multipart_paths: ["/../x"] })), RouteError);
    assert.throws(() => router.setPlugin("c", mount({ cors: { origins: "*", credentials: true } })), RouteError);
    assert.throws(() => router.setPlugin("c", mount({ cors: { origins: ["evil.example"] } })), /not an origin/);
    assert.equal(router.tableVersion, v);
  });
});

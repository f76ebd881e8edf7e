import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { test } from "node:test";
import { getConfig } from "../../src/config.js";
import { HttpError, type PluginModule } from "../../src/contract.js";
import { normalizeReply, validateRoutePath } from "../../src/runtime/dispatcher.js";
import { createTestHarness, HarnessLoadError, matchPath } from "../../src/runtime/harness.js";

const plugin: PluginModule = {
  manifest: () => ({ name: "demo", version: "1.2.3" }),
  init() {},
  routes: () => [
    {
      method: "GET",
      path: "/hello/:who",
      handler: (req) => ({ hi: req.params.who, q: req.query, s: getConfig().settings }),
    },
    { method: "POST", path: "/echo", handler: async (req) => ({ got: await req.json() }) },
    {
      method: "GET",
      path: "/boom",
      handler: () => {
        throw new Error("x");
      },
    },
    {
      method: "GET",
      path: "/http",
      handler: () => {
        throw new HttpError(409, "conflict", "taken");
      },
    },
    { method: "GET", path: "/stream", handler: () => ({ stream: Readable.from(["a", "b", "c"]) }) },
    {
      method: "GET",
      path: "/file",
      handler: () => {
        const p = join(getConfig().dataDir, "..", "f.txt");
        writeFileSync(p, "file!");
        return { file: { path: p, contentType: "text/plain" } };
      },
    },
    { method: "GET", path: "/files/*", handler: (req) => req.params["*"] },
  ],
};

test("harness runs a plugin in-process with standaloneConfig and settings", async () => {
  const h = await createTestHarness(plugin, { settings: { color: "red" } });
  assert.equal(h.config.standalone, true);
  assert.equal(h.config.pluginName, "demo");
  const r = await h.request("GET", "/hello/bob?x=1");
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { hi: "bob", q: { x: "1" }, s: { color: "red" } });
  assert.deepEqual((await h.request("POST", "/echo", { body: { a: 1 } })).body, { got: { a: 1 } });
  const bad = await h.request("POST", "/echo", { body: "{" });
  assert.equal(bad.status, 400);
  assert.equal((await h.request("GET", "/boom")).status, 500);
  const c = await h.request("GET", "/http");
  assert.equal(c.status, 409);
  assert.equal((c.body as { error: { code: string } }).error.code, "conflict");
  assert.equal((await h.request("GET", "/stream")).raw.toString(), "abc");
  assert.equal((await h.request("GET", "/file")).body, "file!");
  assert.equal((await h.request("GET", "/files/a/b.txt")).body, "a/b.txt");
  assert.equal((await h.request("GET", "/nope")).status, 404);
  assert.equal((await h.request("HEAD", "/hello/x")).raw.length, 0);
  await h.close();
});

test("harness reports load failures by stage", async () => {
  await assert.rejects(
    createTestHarness({ ...plugin, init: () => Promise.reject(new Error("db down")) }),
    (e: unknown) => e instanceof HarnessLoadError && e.stage === "init",
  );
  await assert.rejects(
    createTestHarness({ ...plugin, routes: () => [{ method: "GET", path: "/../x", handler: () => 1 }] }),
    (e: unknown) => e instanceof HarnessLoadError && e.stage === "routes",
  );
});

test("reply normalisation and route path rules", () => {
  assert.deepEqual(normalizeReply({ status: "done" }), { body: { status: "done" } });
  assert.deepEqual(normalizeReply({ status: 201, body: 1 }), { status: 201, body: 1 });
  assert.deepEqual(normalizeReply({ body: "x", extra: 1 }), { body: { body: "x", extra: 1 } });
  assert.deepEqual(normalizeReply([1]), { body: [1] });
  assert.deepEqual(normalizeReply(null), {});
  assert.equal(validateRoutePath("/a/:id"), null);
  for (const bad of ["a", "/a/../b", "//a", "/a%2f", "/a?x", "/a\\b", "/./a"])
    assert.notEqual(validateRoutePath(bad), null, bad);
  assert.deepEqual(matchPath("/a/:id", "/a/1"), { id: "1" });
  assert.equal(matchPath("/a/:id", "/a/1/2"), null);
  assert.equal(matchPath("/a/:id", "/a/"), null);
});

test("harness ws: connect, echo, broadcast, refusal, closed at close()", async () => {
  const { ws } = await import("../../src/index.js");
  const h = await createTestHarness({
    manifest: () => ({ name: "wsdemo", version: "1.0.0" }),
    init() {},
    routes: () => [
      ws.endpoint("/chat/:room", {
        onOpen: (c) => ws.subscribe(c, `room:${c.params.room}`),
        onMessage: (c, d) => {
          void ws.broadcast(`room:${c.params.room}`, `${c.params.room}> ${String(d)}`);
        },
      }),
      ws.endpoint("/private", { onOpen: () => false }),
    ],
  });
  const a = await h.connect("/chat/1");
  const b = await h.connect("/chat/1");
  const c = await h.connect("/chat/2");
  const nextB = b.next();
  a.send("hello");
  assert.equal(await nextB, "1> hello");
  assert.deepEqual(a.messages, ["1> hello"]);
  assert.deepEqual(c.messages, []);
  await assert.rejects(h.connect("/private"), /status 403/);
  await assert.rejects(h.connect("/nope"), /status 404/);
  // the same routes over a real socket (listen()), through the daemon's host side of the ws protocol
  const { url } = await h.listen();
  const { default: WebSocket } = await import("ws");
  const real = new WebSocket(`${url.replace("http:", "ws:")}/chat/1`);
  await new Promise((resolve, reject) => real.once("open", resolve).once("error", reject));
  const heard = new Promise<string>((resolve) => real.once("message", (d) => resolve(String(d))));
  a.send("over memory");
  assert.equal(await heard, "1> over memory", "a socket client and in-memory clients share the room");
  const refused = new WebSocket(`${url.replace("http:", "ws:")}/private`);
  const status = await new Promise<number>((resolve) =>
    refused.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0)),
  );
  assert.equal(status, 403);
  const realClosed = new Promise<number>((resolve) => real.once("close", (code) => resolve(code)));
  b.close();
  assert.equal(ws.subscribers("room:1"), 2, "a and the socket client");
  await h.close();
  assert.deepEqual(await a.closed, { code: 1001, reason: "plugin unloading" });
  assert.equal(await realClosed, 1001);
  assert.equal(ws.connectionCount(), 0);
});

test("harness requests go through the daemon's host side: deadlines, the reply cap, cookie rules", async () => {
  const sleepy: PluginModule = {
    manifest: () => ({ name: "sleepy", version: "1.0.0" }),
    init() {},
    routes: () => [
      {
        method: "GET",
        path: "/nap",
        handler: async (req) => {
          await new Promise((r) => setTimeout(r, 2000));
          return { aborted: req.signal.aborted };
        },
      },
      { method: "GET", path: "/quick", timeoutMs: 0, handler: () => "x".repeat(2000) },
      {
        method: "GET",
        path: "/cookie",
        handler: () => ({ status: 200, headers: { "set-cookie": ["hecate_admin=x", "a=b"] }, body: "ok" }),
      },
    ],
  };
  const h = await createTestHarness(sleepy, { deadlines: { handlerTimeoutMs: 200 }, maxReplyBytes: 1000 });
  try {
    const t = performance.now();
    const late = await h.request("GET", "/nap");
    assert.equal(late.status, 504);
    assert.equal((late.body as { error: { code: string } }).error.code, "handler_timeout");
    assert.ok(performance.now() - t < 1500, "answered at the 200 ms deadline, not after the 2 s nap");
    const big = await h.request("GET", "/quick");
    assert.equal(big.status, 502);
    assert.equal((big.body as { error: { code: string } }).error.code, "reply_too_large");
    const cookie = await h.request("GET", "/cookie");
    assert.deepEqual(cookie.headers["set-cookie"], ["a=b"], "the daemon's cookies are dropped, as in the daemon");
    assert.deepEqual(h.logs, [
      { level: "warn", msg: "reply to GET /nap: no reply within 200 ms: 504" },
      {
        level: "error",
        msg: "reply to GET /quick refused (502): its body (at least 2000 bytes) is above the 1000-byte cap of a non-streamed reply; stream it instead",
      },
      { level: "warn", msg: "reply to GET /cookie: dropped a daemon cookie" },
    ]);
  } finally {
    await h.close();
  }
});

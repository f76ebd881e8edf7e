import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Agent, request } from "undici";
import WebSocket from "ws";
import { standaloneConfig } from "../../src/config.js";
import { ContainerLoadError, type ContainerPluginServer, serveContainerPlugin } from "../../src/container.js";
import { DEFAULT_WS_MAX_PAYLOAD, HttpError, type PluginModule } from "../../src/contract.js";
import { pluginPaths } from "../../src/paths.js";
import * as ws from "../../src/ws.js";

// serveContainerPlugin outside a container: same socket protocol the daemon's proxy speaks.
const plugin: PluginModule = {
  manifest: () => ({ name: "sv", version: "1.0.0" }),
  init() {},
  routes: () => [
    { method: "GET", path: "/items/:id", handler: (req) => ({ id: req.params.id, q: req.query }) },
    {
      method: "POST",
      path: "/echo",
      handler: (req) => ({ status: 201, headers: { "x-a": "b" }, stream: req.stream() }),
    },
    {
      method: "GET",
      path: "/fail",
      handler: () => {
        throw new HttpError(409, "conflict", "nope");
      },
    },
    { kind: "ws", path: "/ws", handlers: { onMessage: (c, d) => c.send(`got:${String(d)}`) } },
  ],
};

describe("@hecate/sdk/container serveContainerPlugin", () => {
  let dir: string;
  let socketPath: string;
  let srv: ContainerPluginServer;
  let agent: Agent;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "hecate-sv-"));
    socketPath = join(dir, "plugin.sock");
    srv = await serveContainerPlugin(plugin, {
      socketPath,
      handleSignals: false,
      config: standaloneConfig("sv", { paths: pluginPaths(dir, "sv") }),
    });
    agent = new Agent({ connect: { socketPath } });
  });
  after(async () => {
    await agent?.close();
    await srv?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("answers GET /__health, routes with params/query, streams, HttpError and 404", async () => {
    const h = await request("http://p/__health", { dispatcher: agent });
    assert.equal(h.statusCode, 200);
    assert.equal(((await h.body.json()) as { status: string }).status, "ok");

    const r = await request("http://p/items/42?x=1", { dispatcher: agent });
    assert.deepEqual(await r.body.json(), { id: "42", q: { x: "1" } });

    const e = await request("http://p/echo", { dispatcher: agent, method: "POST", body: "x".repeat(300_000) });
    assert.equal(e.statusCode, 201);
    assert.equal(e.headers["x-a"], "b");
    assert.equal((await e.body.text()).length, 300_000);

    const f = await request("http://p/fail", { dispatcher: agent });
    assert.equal(f.statusCode, 409);
    assert.equal(((await f.body.json()) as { error: { code: string } }).error.code, "conflict");

    const n = await request("http://p/nope", { dispatcher: agent });
    assert.equal(n.statusCode, 404);
    await n.body.dump();
  });

  it("serves WebSocket routes on the socket", async () => {
    const ws = new WebSocket("ws+unix://" + socketPath + ":/ws");
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    const msg = new Promise<string>((resolve) => ws.once("message", (d) => resolve(String(d))));
    ws.send("hi");
    assert.equal(await msg, "got:hi");
    ws.close();
  });

  it("a plugin that fails to load throws a typed error", async () => {
    const bad = { manifest: () => ({ name: "bad", version: "1" }), init: () => Promise.reject(new Error("no db")) };
    await assert.rejects(
      serveContainerPlugin(bad, {
        socketPath: join(dir, "bad.sock"),
        handleSignals: false,
        config: standaloneConfig("bad", { paths: pluginPaths(dir, "bad") }),
      }),
      (err: Error) => err instanceof ContainerLoadError && /init: no db/.test(err.message),
    );
  });
});

describe("@hecate/sdk/container behind the daemon's proxy", () => {
  let dir: string;
  let socketPath: string;
  let srv: ContainerPluginServer;
  let agent: Agent;
  const seen: (string | undefined)[] = [];
  const limits: PluginModule = {
    manifest: () => ({ name: "lim", version: "1.0.0" }),
    init() {},
    routes: () => [
      { method: "GET", path: "/who", handler: (req) => ({ remoteAddress: req.remoteAddress ?? null }) },
      {
        kind: "ws",
        path: "/default",
        handlers: {
          onOpen: (_c, req) => {
            seen.push(req.remoteAddress);
          },
          onMessage: (c, d) => c.send(`len:${d.length}`),
        },
      },
      ws.endpoint("/small", { onMessage: (c, d) => c.send(`len:${d.length}`) }, { maxPayload: 1000 }),
      {
        kind: "ws",
        path: "/large",
        maxPayload: 4 * 1024 * 1024,
        handlers: { onMessage: (c, d) => c.send(`len:${d.length}`) },
      },
    ],
  };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "hecate-lim-"));
    socketPath = join(dir, "plugin.sock");
    srv = await serveContainerPlugin(limits, {
      socketPath,
      handleSignals: false,
      config: standaloneConfig("lim", { paths: pluginPaths(dir, "lim") }),
    });
    agent = new Agent({ connect: { socketPath } });
  });
  after(async () => {
    await agent.close();
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("remoteAddress is the rightmost hop (the daemon's), not the client's forged leftmost one", async () => {
    const r = await request("http://plugin/who", {
      dispatcher: agent,
      headers: { "x-forwarded-for": "6.6.6.6, 127.0.0.1", forwarded: 'for=6.6.6.6, for="[::1]";proto=http' },
    });
    assert.deepEqual(await r.body.json(), { remoteAddress: "::1" });
    const x = await request("http://plugin/who", {
      dispatcher: agent,
      headers: { "x-forwarded-for": "6.6.6.6, 10.0.0.7" },
    });
    assert.deepEqual(await x.body.json(), { remoteAddress: "10.0.0.7" });
    const w = new WebSocket(`ws+unix://${socketPath}:/default`, {
      headers: { "x-forwarded-for": "6.6.6.6, 10.0.0.8" },
    });
    await new Promise((resolve, reject) => {
      w.once("open", resolve);
      w.once("error", reject);
    });
    w.close();
    assert.deepEqual(seen, ["10.0.0.8"]);
  });

  /** Sends `size` bytes on a ws route: the echoed length, or the close code when the SDK refused the message. */
  async function sendSized(path: string, size: number): Promise<string | number> {
    const w = new WebSocket(`ws+unix://${socketPath}:${path}`);
    await new Promise((resolve, reject) => {
      w.once("open", resolve);
      w.once("error", reject);
    });
    const out = new Promise<string | number>((resolve) => {
      w.once("message", (d) => resolve(String(d)));
      w.once("close", (code) => resolve(code));
    });
    w.send(Buffer.alloc(size));
    const got = await out;
    w.terminate();
    return got;
  }

  it("ws maxPayload: 1 MiB by default, settable per route (ws.endpoint option or the route definition)", async () => {
    assert.equal(DEFAULT_WS_MAX_PAYLOAD, 1024 * 1024);
    assert.equal(await sendSized("/default", 1024 * 1024), `len:${1024 * 1024}`);
    assert.equal(await sendSized("/default", 1024 * 1024 + 1), 1009);
    assert.equal(await sendSized("/small", 1000), "len:1000");
    assert.equal(await sendSized("/small", 1001), 1009);
    assert.equal(await sendSized("/large", 3 * 1024 * 1024), `len:${3 * 1024 * 1024}`);
    assert.equal(await sendSized("/large", 4 * 1024 * 1024 + 1), 1009);
  });

  it("a route with an invalid maxPayload fails the load", async () => {
    const bad: PluginModule = {
      manifest: () => ({ name: "bad", version: "1.0.0" }),
      init() {},
      routes: () => [{ kind: "ws", path: "/x", maxPayload: -1, handlers: {} }],
    };
    await assert.rejects(
      serveContainerPlugin(bad, {
        socketPath: join(dir, "bad.sock"),
        handleSignals: false,
        config: standaloneConfig("bad", { paths: pluginPaths(dir, "bad") }),
      }),
      /maxPayload must be a positive integer/,
    );
  });
});

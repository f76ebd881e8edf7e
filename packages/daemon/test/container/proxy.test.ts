import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createServer, request as httpRequest } from "node:http";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import WebSocket from "ws";
import { ContainerProxy } from "../../src/container/proxy.js";
import { listen } from "../../src/http/server.js";
import { type Env, installPlugin, setup, skipReason } from "./helpers.js";

const skip = skipReason();
const MB = 1024 * 1024;

describe("container proxy (real podman)", { skip }, () => {
  let env: Env;
  let api: string;
  before(async () => {
    env = await setup();
    await env.containers.load(installPlugin(env.home, "px"));
    api = `${env.base}/plugin/px/api`;
  });
  after(async () => {
    await env?.close();
  });

  it("forwards every method, path, query and end-to-end headers; strips hop-by-hop ones", async () => {
    for (const method of ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const) {
      const r = await request(`${api}/echo`, {
        method,
        headers: { "content-type": "application/json" }, // the daemon takes JSON bodies only (CSRF rule)
        body: method === "GET" || method === "OPTIONS" ? undefined : `body-${method}`,
      });
      assert.equal(r.statusCode, 200, method);
      assert.equal(r.headers["x-echo-method"], method);
      const text = await r.body.text();
      assert.equal(text, method === "GET" || method === "OPTIONS" ? "" : `body-${method}`);
    }
    const head = await request(`${api}/echo`, { method: "HEAD" });
    assert.equal(head.statusCode, 200);
    await head.body.dump();

    // node:http client: undici refuses to send hop-by-hop headers at all.
    const raw = await new Promise<string>((resolve, reject) => {
      const rq = httpRequest(`${api}/inspect?a=1&a=2&b=x%20y`, {
        headers: {
          "x-custom": "v1",
          "keep-alive": "timeout=5",
          connection: "keep-alive, x-secret",
          "x-secret": "s",
          // A client's own forwarding claims: for is appended to, the others are the proxy's to set.
          "x-forwarded-for": "10.0.0.1",
          "X-Forwarded-Proto": "https",
          "x-forwarded-prefix": "/evil",
        },
      });
      rq.on("response", (res) => {
        let b = "";
        res.on("data", (c) => {
          b += c;
        });
        res.on("end", () => resolve(b));
      });
      rq.on("error", reject);
      rq.end();
    });
    const seen = JSON.parse(raw) as { path: string; query: Record<string, unknown>; headers: Record<string, string> };
    assert.equal(seen.path, "/inspect");
    assert.deepEqual(seen.query, { a: ["1", "2"], b: "x y" });
    assert.equal(seen.headers["x-custom"], "v1");
    assert.equal(seen.headers["keep-alive"], undefined, "hop-by-hop removed");
    assert.equal(seen.headers["x-secret"], undefined, "headers named by Connection removed");
    assert.equal(seen.headers["x-forwarded-prefix"], "/plugin/px/api");
    assert.equal(seen.headers["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert.equal(seen.headers["x-forwarded-proto"], "http");
    assert.equal(seen.headers["x-forwarded-host"], new URL(api).host);
  });

  it("preserves status codes and multi-value response headers", async () => {
    for (const code of [201, 204, 302, 404, 500, 503]) {
      const r = await request(`${api}/status/${code}`);
      assert.equal(r.statusCode, code);
      assert.equal(r.headers["x-custom"], "yes");
      assert.deepEqual(r.headers["set-cookie"], ["a=1; Path=/", "b=2; Path=/"]);
      await r.body.dump();
    }
    const tea = await request(`${api}/teapot`);
    assert.equal(tea.statusCode, 418);
    assert.equal(((await tea.body.json()) as { error: { code: string } }).error.code, "teapot");
    const nf = await request(`${api}/nope`);
    assert.equal(nf.statusCode, 404);
    await nf.body.dump();
  });

  it("streams 20 MB bodies both ways without buffering them whole", async () => {
    // Upload: a generated stream of unknown length (chunked), hashed on both sides.
    const size = 20 * MB;
    const h = createHash("sha256");
    async function* gen() {
      for (let i = 0; i < size / (64 * 1024); i++) {
        const c = Buffer.alloc(64 * 1024, i & 0xff);
        h.update(c);
        yield c;
      }
    }
    const up = await request(`${api}/upload`, {
      method: "POST",
      body: Readable.from(gen()),
      headers: { "content-type": "application/json" },
    });
    assert.equal(up.statusCode, 200);
    const got = (await up.body.json()) as { bytes: number; sha256: string };
    assert.equal(got.bytes, size);
    assert.equal(got.sha256, h.digest("hex"));

    // Download: 20 MB streamed from the plugin, content-length preserved.
    const rss0 = process.memoryUsage().rss;
    const down = await request(`${api}/download?mb=20`);
    assert.equal(down.statusCode, 200);
    assert.equal(down.headers["content-length"], String(20 * MB));
    let n = 0;
    for await (const c of down.body) n += (c as Buffer).length;
    assert.equal(n, 20 * MB);
    assert.ok(process.memoryUsage().rss - rss0 < 60 * MB, "proxy did not hold the body in memory");

    // Echo round trip of 20 MB with a content-length.
    const big = Buffer.alloc(20 * MB, 7);
    const echo = await request(`${api}/echo`, {
      method: "PUT",
      body: big,
      headers: { "content-type": "application/x-big+json" },
    });
    assert.equal(echo.headers["content-type"], "application/x-big+json");
    const back = Buffer.from(await echo.body.arrayBuffer());
    assert.equal(back.length, big.length);
    assert.ok(back.equals(big));
  });

  it("tunnels WebSocket upgrades (echo, text and binary)", async () => {
    const ws = new WebSocket(`${api.replace("http", "ws")}/ws`);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    const next = () => new Promise<WebSocket.RawData>((resolve) => ws.once("message", (d) => resolve(d)));
    let m = next();
    ws.send("hi");
    assert.equal(String(await m), "echo:hi");
    m = next();
    ws.send(Buffer.from([1, 2, 3]));
    assert.deepEqual([...((await m) as Buffer)], [1, 2, 3]);
    ws.close();
    await new Promise((r) => ws.once("close", r));

    // An upgrade to a path with no ws route is refused by the plugin, and the refusal reaches the client.
    const bad = new WebSocket(`${api.replace("http", "ws")}/nows`);
    const status = await new Promise<number>((resolve) => {
      bad.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      bad.once("error", () => resolve(-1));
    });
    assert.equal(status, 404);
  });

  it("a client that goes away mid-body releases the plugin connection (nothing left in flight)", async () => {
    // A proxy of our own on the same container socket, so its in-flight count can be read.
    const loaded = env.containers.get("px");
    assert.ok(loaded);
    const proxy = new ContainerProxy({ plugin: "px", socketPath: loaded.socketPath });
    const server = createServer((req, res) =>
      proxy.handle(req, res, {}, { pathname: "", path: (req.url ?? "/").split("?")[0], query: {} }),
    );
    const port = await listen(server, 0);
    try {
      const res = await request(`http://127.0.0.1:${port}/download?mb=200`);
      assert.equal(res.statusCode, 200, res.statusCode === 200 ? "" : await res.body.text());
      for await (const _ of res.body) break; // one chunk, then hang up
      assert.equal(await proxy.drain(5000), 0, "the aborted exchange ended, it did not wait on backpressure");
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it("a plugin that is gone answers 502 plugin_unavailable", async () => {
    const proxy = new ContainerProxy({ plugin: "ghost", socketPath: `${env.home}/run/no-such.sock` });
    const server = createServer((req, res) =>
      proxy.handle(req, res, {}, { pathname: "", path: (req.url ?? "/").split("?")[0], query: {} }),
    );
    const port = await listen(server, 0);
    try {
      const r = await request(`http://127.0.0.1:${port}/hello`, { method: "POST", body: "x" });
      assert.equal(r.statusCode, 502);
      assert.equal(((await r.body.json()) as { error: { code: string } }).error.code, "plugin_unavailable");
      assert.equal(await proxy.drain(1000), 0);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it("unload drains an in-flight streamed request before the container goes", async () => {
    const spec = installPlugin(env.home, "drain");
    const loaded = await env.containers.load(spec);
    const res = await request(`${env.base}/plugin/drain/api/download?mb=8`);
    const unloading = env.containers.unload("drain");
    let n = 0;
    for await (const c of res.body) n += (c as Buffer).length;
    assert.equal(n, 8 * MB, "in-flight response completed");
    await unloading;
    assert.equal(await env.podman.inspectContainer(loaded.containerId), null);
    const gone = await request(`${env.base}/plugin/drain/api/hello`);
    assert.equal(gone.statusCode, 404);
    await gone.body.dump();
  });
});

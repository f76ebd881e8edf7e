import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, readlinkSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { sdkPackageDir } from "@hecate/sdk/paths";
import { RouteError } from "../../src/http/router.js";
import { ensureSdkLink } from "../../src/worker/sdk-link.js";
import { PluginLoadError } from "../../src/worker/worker-plugins.js";
import { type Env, json, raw, setup, whoPlugin, writePlugin } from "./helpers.js";

const API = `
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { getConfig, HttpError } from "@hecate/sdk";
import * as sdkConfig from "@hecate/sdk/config";
let initConfig;
export function manifest() { return { name: "p1", version: "1.0.0" }; }
export function storeConfig() { return { storeId: "p1-store" }; }
export function init(config) { initConfig = config; }
export function routes() {
  return [
    { method: "GET", path: "/items/:id", handler: (req) => ({ params: req.params, query: req.query, path: req.path,
        sameSdk: getConfig() === sdkConfig.getConfig(), configName: getConfig().pluginName,
        initSaw: initConfig.apiPrefix, dataDir: getConfig().dataDir }) },
    { method: "POST", path: "/echo", handler: async (req) => ({ got: await req.json() }) },
    { method: "POST", path: "/digest", handler: async (req) => {
        const h = createHash("sha256"); let n = 0;
        for await (const c of req.stream()) { h.update(c); n += c.length; }
        return { bytes: n, sha256: h.digest("hex") };
      } },
    { method: "POST", path: "/small-limit", handler: async (req) => ({ n: (await req.bytes(10)).length }) },
    { method: "GET", path: "/stream", handler: () => ({ status: 201, headers: { "x-kind": "stream" },
        stream: Readable.from((function* () { for (let i = 0; i < 200; i++) yield "line " + i + "\\n"; })()) }) },
    { method: "GET", path: "/file", handler: () => ({ file: { path: getConfig().paths.root + "/data/blob.bin" } }) },
    { method: "GET", path: "/download", handler: () => ({ file: { path: getConfig().paths.root + "/data/blob.bin", downloadName: "b b.bin" } }) },
    { method: "GET", path: "/escape", handler: () => ({ file: { path: "/etc/passwd" } }) },
    { method: "GET", path: "/throw", handler: () => { throw new Error("secret detail"); } },
    { method: "GET", path: "/teapot", handler: () => { throw new HttpError(418, "teapot", "short and stout"); } },
    { method: "GET", path: "/text", handler: () => "hello" },
    { method: "DELETE", path: "/items/:id", handler: () => null },
    { method: ["PUT", "PATCH"], path: "/reply", handler: () => ({ status: 202, headers: { "x-a": "1" }, body: { ok: true } }) },
  ];
}
`;

let env: Env;
const blob = randomBytes(100_000);

before(async () => {
  env = await setup();
});
after(async () => {
  await env.close();
});

test("load -> API answers -> static served -> unload -> 404", async () => {
  const spec = writePlugin(env.home, "p1", "1.0.0", API, {
    "data/blob.bin": blob,
    "package/priv/static/index.html": "<h1>p1</h1>",
    "package/priv/static/app.js": "console.log(1)",
  });
  const loaded = await env.workers.load(spec);
  assert.equal(loaded.status, "running");
  assert.deepEqual(loaded.storeConfig, { storeId: "p1-store" });
  assert.ok(loaded.routes.some((r) => r.path === "/items/:id"));
  assert.equal(env.workers.list().length, 1);

  const r1 = await raw(env.port, "GET", "/plugin/p1/api/items/42?x=1&x=2&y=z");
  assert.equal(r1.status, 200);
  const b1 = json(r1);
  assert.deepEqual(b1.params, { id: "42" });
  assert.deepEqual(b1.query, { x: ["1", "2"], y: "z" });
  assert.equal(b1.path, "/items/42");
  assert.equal(b1.sameSdk, true, "plugin and host share one sdk instance");
  assert.equal(b1.configName, "p1", "getConfig() works in the plugin");
  assert.equal(b1.initSaw, "/plugin/p1/api");
  assert.equal(b1.dataDir, spec.config.dataDir);

  const r2 = await raw(env.port, "POST", "/plugin/p1/api/echo", {
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ a: [1, 2] }),
  });
  assert.deepEqual(json(r2), { got: { a: [1, 2] } });
  const bad = await raw(env.port, "POST", "/plugin/p1/api/echo", {
    headers: { "content-type": "application/json" },
    body: "{nope",
  });
  assert.equal(bad.status, 400);
  assert.equal(json(bad).error.code, "invalid_json");

  // Large body: streamed as transferred chunks, digested in the worker.
  const big = randomBytes(5 * 1024 * 1024 + 17);
  // (A state-changing request's body must be JSON-typed for the daemon, which checks the header, not the bytes.)
  const asJson = { "content-type": "application/json" };
  const r3 = await raw(env.port, "POST", "/plugin/p1/api/digest", { body: big, headers: asJson });
  assert.deepEqual(json(r3), { bytes: big.length, sha256: createHash("sha256").update(big).digest("hex") });
  const r3b = await raw(env.port, "POST", "/plugin/p1/api/small-limit", { body: "01234567890123", headers: asJson });
  assert.equal(r3b.status, 413);

  const r4 = await raw(env.port, "GET", "/plugin/p1/api/stream");
  assert.equal(r4.status, 201);
  assert.equal(r4.headers["x-kind"], "stream");
  const lines = r4.body.toString().trim().split("\n");
  assert.equal(lines.length, 200);
  assert.equal(lines[199], "line 199");

  const f = await raw(env.port, "GET", "/plugin/p1/api/file");
  assert.equal(f.status, 200);
  assert.ok(f.body.equals(blob));
  const etag = f.headers.etag as string;
  assert.ok(etag);
  assert.equal((await raw(env.port, "GET", "/plugin/p1/api/file", { headers: { "if-none-match": etag } })).status, 304);
  const part = await raw(env.port, "GET", "/plugin/p1/api/file", { headers: { range: "bytes=10-19" } });
  assert.equal(part.status, 206);
  assert.equal(part.headers["content-range"], `bytes 10-19/${blob.length}`);
  assert.ok(part.body.equals(blob.subarray(10, 20)));
  const dl = await raw(env.port, "GET", "/plugin/p1/api/download");
  assert.match(String(dl.headers["content-disposition"]), /attachment; filename\*=UTF-8''b%20b\.bin/);
  const esc = await raw(env.port, "GET", "/plugin/p1/api/escape");
  assert.equal(esc.status, 403);
  assert.ok(!esc.body.toString().includes("root:"));

  const t = await raw(env.port, "GET", "/plugin/p1/api/throw");
  assert.equal(t.status, 500);
  assert.equal(json(t).error.code, "internal_error");
  assert.ok(!t.body.toString().includes("secret detail"), "internal errors are not leaked");
  const tp = await raw(env.port, "GET", "/plugin/p1/api/teapot");
  assert.equal(tp.status, 418);
  assert.deepEqual(json(tp).error, { code: "teapot", message: "short and stout" });
  const tx = await raw(env.port, "GET", "/plugin/p1/api/text");
  assert.equal(tx.body.toString(), "hello");
  assert.match(String(tx.headers["content-type"]), /^text\/plain/);
  assert.equal((await raw(env.port, "DELETE", "/plugin/p1/api/items/1")).status, 204);
  const rp = await raw(env.port, "PATCH", "/plugin/p1/api/reply");
  assert.equal(rp.status, 202);
  assert.equal(rp.headers["x-a"], "1");
  assert.deepEqual(json(rp), { ok: true });
  const head = await raw(env.port, "HEAD", "/plugin/p1/api/text");
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  const wrongMethod = await raw(env.port, "POST", "/plugin/p1/api/text");
  assert.equal(wrongMethod.status, 405); // a GET route: 405 with Allow (test/http/router-errors.test.ts)
  assert.equal(wrongMethod.headers.allow, "GET, HEAD");
  assert.equal((await raw(env.port, "GET", "/plugin/p1/api/nothing")).status, 404);

  // Static
  const redirect = await raw(env.port, "GET", "/plugin/p1?a=1");
  assert.equal(redirect.status, 301);
  assert.equal(redirect.headers.location, "/plugin/p1/?a=1");
  const idx = await raw(env.port, "GET", "/plugin/p1/");
  assert.equal(idx.status, 200);
  assert.equal(idx.body.toString(), "<h1>p1</h1>");
  assert.match(String(idx.headers["content-type"]), /^text\/html/);
  const js = await raw(env.port, "GET", "/plugin/p1/app.js");
  assert.match(String(js.headers["content-type"]), /javascript/);
  const js304 = await raw(env.port, "GET", "/plugin/p1/app.js", {
    headers: { "if-none-match": String(js.headers.etag) },
  });
  assert.equal(js304.status, 304);

  assert.equal(await env.workers.unload("p1"), true);
  assert.equal((await raw(env.port, "GET", "/plugin/p1/api/items/1")).status, 404);
  assert.equal((await raw(env.port, "GET", "/plugin/p1/")).status, 404);
  assert.equal(env.workers.get("p1"), undefined);
  assert.equal(await env.workers.unload("p1"), false);
});

test("load failures are typed and leave nothing mounted", async () => {
  const initFails = writePlugin(
    env.home,
    "bad-init",
    "1.0.0",
    whoPlugin("bad-init", "1.0.0", "export function _x() {}").replace(
      "export function init() {}",
      "export function init() { throw new Error('no db'); }",
    ),
  );
  await assert.rejects(env.workers.load(initFails), (e: unknown) => {
    assert.ok(e instanceof PluginLoadError);
    assert.equal(e.stage, "init");
    assert.match(e.message, /no db/);
    return true;
  });
  assert.equal(env.router.hasPlugin("bad-init"), false);

  const syntax = writePlugin(env.home, "bad-import", "1.0.0", "export function manifest( {");
  await assert.rejects(env.workers.load(syntax), (e: unknown) => e instanceof PluginLoadError && e.stage === "import");

  const noManifest = writePlugin(env.home, "bad-manifest", "1.0.0", "export function init() {}");
  await assert.rejects(
    env.workers.load(noManifest),
    (e: unknown) => e instanceof PluginLoadError && e.stage === "manifest",
  );

  const hang = writePlugin(
    env.home,
    "hang",
    "1.0.0",
    whoPlugin("hang", "1.0.0").replace("export function init() {}", "export function init() { for (;;) {} }"),
  );
  await assert.rejects(
    env.workers.load({ ...hang, loadTimeoutMs: 500 }),
    (e: unknown) => e instanceof PluginLoadError && e.stage === "timeout",
  );

  const exits = writePlugin(
    env.home,
    "exits",
    "1.0.0",
    whoPlugin("exits", "1.0.0").replace("export function init() {}", "export function init() { process.exit(3); }"),
  );
  await assert.rejects(env.workers.load(exits), (e: unknown) => e instanceof PluginLoadError && e.stage === "crash");
  assert.deepEqual(env.workers.list(), []);
});

test("routes outside the plugin prefix are refused", async () => {
  for (const path of ["/../../health", "/a/../../x", "//health", "/a%2f..", "health", "/a?b"]) {
    const code = whoPlugin(
      "outside",
      "1.0.0",
      `function extraRoutes() { return [{ method: "GET", path: ${JSON.stringify(path)}, handler: () => "x" }]; }`,
    );
    const spec = writePlugin(env.home, "outside", "1.0.0", code);
    await assert.rejects(
      env.workers.load(spec),
      (e: unknown) => e instanceof PluginLoadError && e.stage === "routes",
      path,
    );
  }
  assert.throws(
    () => env.router.setPlugin("x", { routes: [{ method: "GET", path: "/../y", handler: () => {} }] }),
    RouteError,
  );
  assert.throws(
    () => env.router.setSystemRoutes("evil", [{ method: "GET", path: "/plugin/x/api/y", handler: () => {} }]),
    RouteError,
  );
  assert.equal(env.router.hasPlugin("x"), false);
  assert.equal((await raw(env.port, "GET", "/health")).status, 200);
});

test("/plugin/a never matches /plugin/ab", async () => {
  await env.workers.load(
    writePlugin(env.home, "a", "1.0.0", whoPlugin("a", "1.0.0"), { "package/priv/static/index.html": "A" }),
  );
  await env.workers.load(
    writePlugin(env.home, "ab", "1.0.0", whoPlugin("ab", "1.0.0"), { "package/priv/static/index.html": "AB" }),
  );
  assert.equal(json(await raw(env.port, "GET", "/plugin/a/api/who")).name, "a");
  assert.equal(json(await raw(env.port, "GET", "/plugin/ab/api/who")).name, "ab");
  assert.equal((await raw(env.port, "GET", "/plugin/a/")).body.toString(), "A");
  assert.equal((await raw(env.port, "GET", "/plugin/ab/")).body.toString(), "AB");
  await env.workers.unload("a");
  assert.equal((await raw(env.port, "GET", "/plugin/a/api/who")).status, 404);
  assert.equal((await raw(env.port, "GET", "/plugin/abc/api/who")).status, 404);
  assert.equal(json(await raw(env.port, "GET", "/plugin/ab/api/who")).name, "ab");
  await env.workers.unload("ab");
});

test("client disconnect aborts the handler; unload drains in-flight requests first", async () => {
  const code = whoPlugin(
    "slow",
    "1.0.0",
    `let aborted = 0;
    function extraRoutes() {
      return [
        { method: "GET", path: "/hang", handler: (req) => new Promise((resolve) => {
            req.signal.addEventListener("abort", () => { aborted++; resolve("late"); });
          }) },
        { method: "GET", path: "/aborted", handler: () => ({ aborted }) },
        { method: "GET", path: "/slow", handler: () => new Promise((r) => setTimeout(() => r({ done: true }), 300)) },
      ];
    }`,
  );
  await env.workers.load(writePlugin(env.home, "slow", "1.0.0", code));
  const ac = new AbortController();
  const hang = fetch(`${env.base}/plugin/slow/api/hang`, { signal: ac.signal }).catch((e) => e);
  await new Promise((r) => setTimeout(r, 100));
  ac.abort();
  await hang;
  let n = 0;
  for (let i = 0; i < 50 && n === 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
    n = json(await raw(env.port, "GET", "/plugin/slow/api/aborted")).aborted;
  }
  assert.equal(n, 1, "the plugin saw the abort");
  assert.equal(env.workers.get("slow")?.inFlight, 0);

  const slow = raw(env.port, "GET", "/plugin/slow/api/slow");
  await new Promise((r) => setTimeout(r, 50));
  const t0 = Date.now();
  const unloaded = env.workers.unload("slow", { deadlineMs: 3000 });
  await new Promise((r) => setTimeout(r, 10));
  assert.equal((await raw(env.port, "GET", "/plugin/slow/api/who")).status, 404, "routes removed first");
  const r = await slow;
  assert.equal(r.status, 200, "in-flight request finished during the drain");
  assert.deepEqual(json(r), { done: true });
  await unloaded;
  assert.ok(Date.now() - t0 < 2500);
});

test("a drain past the deadline ends the request with 502, and the SDK link is repaired", async () => {
  const code = whoPlugin(
    "stuck",
    "1.0.0",
    `function extraRoutes() { return [{ method: "GET", path: "/never", handler: () => new Promise(() => {}) }]; }`,
  );
  await env.workers.load(writePlugin(env.home, "stuck", "1.0.0", code));
  const pending = raw(env.port, "GET", "/plugin/stuck/api/never");
  await new Promise((r) => setTimeout(r, 50));
  const t0 = Date.now();
  await env.workers.unload("stuck", { deadlineMs: 300 });
  assert.ok(Date.now() - t0 < 2000, "unload honours its deadline");
  assert.equal((await pending).status, 502);

  const link = join(env.home, "node_modules", "@hecate", "sdk");
  rmSync(link);
  symlinkSync(tmpdir(), link);
  assert.equal(ensureSdkLink(env.home), link);
  assert.equal(readlinkSync(link), sdkPackageDir());
});

test("a slow plugin slows a large upload instead of buffering it (body flow control)", async () => {
  const code = whoPlugin(
    "upload",
    "1.0.0",
    `import { createHash } from "node:crypto";
    function extraRoutes() {
      return [{ method: "PUT", path: "/blob", handler: async (req) => {
        const s = req.stream();
        await new Promise((r) => setTimeout(r, 400)); // not reading yet
        let maxBuffered = s.readableLength, total = 0;
        const h = createHash("sha256");
        for await (const c of s) {
          maxBuffered = Math.max(maxBuffered, s.readableLength + c.length);
          total += c.length;
          h.update(c);
        }
        return { maxBuffered, total, sha256: h.digest("hex") };
      } }];
    }`,
  );
  await env.workers.load(writePlugin(env.home, "upload", "1.0.0", code));
  const big = randomBytes(8 * 1024 * 1024);
  const r = json(
    await raw(env.port, "PUT", "/plugin/upload/api/blob", {
      body: big,
      headers: { "content-type": "application/json" },
    }),
  );
  assert.equal(r.total, big.length);
  assert.equal(r.sha256, createHash("sha256").update(big).digest("hex"));
  assert.ok(r.maxBuffered < 2.5 * 1024 * 1024, `worker buffered ${r.maxBuffered} bytes of an 8 MiB upload`);
  await env.workers.unload("upload");
});

test("a slow client slows a streamed response (res-ack backpressure)", async () => {
  const code = whoPlugin(
    "fire",
    "1.0.0",
    `let produced = 0;
    function extraRoutes() {
      return [
        { method: "GET", path: "/firehose", handler: () => ({ stream: (async function* () {
            for (let i = 0; i < 512; i++) { produced += 65536; yield new Uint8Array(65536).fill(i & 255); }
          })() }) },
        { method: "GET", path: "/produced", handler: () => ({ produced }) },
      ];
    }`,
  );
  await env.workers.load(writePlugin(env.home, "fire", "1.0.0", code));
  const { request } = await import("node:http");
  const total = await new Promise<number>((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: env.port, path: "/plugin/fire/api/firehose" }, (res) => {
      res.pause();
      setTimeout(async () => {
        try {
          const { produced } = json(await raw(env.port, "GET", "/plugin/fire/api/produced"));
          assert.ok(produced < 16 * 2 ** 20, `plugin produced ${produced} bytes for a client that read nothing`);
        } catch (err) {
          reject(err);
        }
        let n = 0;
        res.on("data", (c: Buffer) => {
          n += c.length;
        });
        res.on("end", () => resolve(n));
        res.resume();
      }, 500);
    });
    req.on("error", reject);
    req.end();
  });
  assert.equal(total, 512 * 65536);
  await env.workers.unload("fire");
});

test("unload runs the plugin's terminate() within its deadline", async () => {
  const mk = (name: string, body: string) =>
    writePlugin(
      env.home,
      name,
      "1.0.0",
      `import { writeFileSync } from "node:fs";
      import { join } from "node:path";
      import { getConfig } from "@hecate/sdk";
      export function manifest() { return { name: ${JSON.stringify(name)}, version: "1.0.0" }; }
      export function init() {}
      export async function terminate() { ${body} }`,
    );
  const polite = mk(
    "polite",
    `await new Promise((r) => setTimeout(r, 50)); writeFileSync(join(getConfig().dataDir, "bye"), "done");`,
  );
  await env.workers.load(polite);
  await env.workers.unload("polite", { deadlineMs: 2000 });
  assert.equal(readFileSync(join(polite.config.dataDir, "bye"), "utf8"), "done");

  const rude = mk("rude", "for (;;) {}");
  await env.workers.load(rude);
  const t0 = Date.now();
  await env.workers.unload("rude", { deadlineMs: 300 });
  assert.ok(Date.now() - t0 < 2000, `unload took ${Date.now() - t0} ms`);
  assert.equal(env.workers.get("rude"), undefined);
});

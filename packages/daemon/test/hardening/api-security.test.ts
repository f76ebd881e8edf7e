/**
 * API security at the router / static / reply level, against real workers and a real HTTP server:
 * route confinement under `/plugin/{name}/api/`, prefix isolation between `a` and `ab`, a static traversal suite
 * (every attempt 4xx and never a byte of a file outside), `file` replies confined to the plugin's own root, and
 * what a plugin may and may not put in response headers.
 */
import assert from "node:assert/strict";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { pluginPaths } from "@hecate/sdk";
import { PluginLoadError } from "../../src/worker/worker-plugins.js";
import { type Env, json, raw, setup, whoPlugin, writePlugin } from "../worker/helpers.js";

let env: Env;
const SECRET = "TOPSECRET-b9f1c2";

before(async () => {
  env = await setup();
  // Secrets around the static dir: beside the plugin, in the home, in a sibling plugin's data.
  writeFileSync(join(env.home, "secret.txt"), SECRET);
  mkdirSync(join(env.home, "plugins"), { recursive: true });
  writeFileSync(join(env.home, "plugins", "secret.txt"), SECRET);
});
after(() => env.close());

function plugin(name: string, routes: string, files: Record<string, string> = {}) {
  return writePlugin(
    env.home,
    name,
    "1.0.0",
    whoPlugin(name, "1.0.0", `function extraRoutes() { return ${routes}; }`),
    files,
  );
}

test("a plugin cannot register routes outside /plugin/{name}/api/", async () => {
  const hostile: unknown[] = [
    "/..",
    "/../admin/api/plugins",
    "/./x",
    "/a/..",
    "/a/./b",
    "/%2e%2e/x",
    "/..%2fhealth",
    "/\\..\\health",
    "/a\u0000b",
    "/a b",
    "/a\tb",
    "/a\nb",
    "",
    "*",
    "health",
    "//admin",
    "/x#frag",
    "/x?y=1",
    42,
    null,
  ];
  for (const path of hostile) {
    const spec = plugin("escaper", `[{ method: "GET", path: ${JSON.stringify(path)}, handler: () => "pwned" }]`);
    await assert.rejects(
      env.workers.load(spec),
      (e: unknown) => e instanceof PluginLoadError && e.stage === "routes",
      `route path ${JSON.stringify(path)} was accepted`,
    );
    const ws = plugin("escaper", `[{ kind: "ws", path: ${JSON.stringify(path)}, handlers: {} }]`);
    await assert.rejects(env.workers.load(ws), PluginLoadError, `ws path ${JSON.stringify(path)} was accepted`);
  }
  for (const method of ["CONNECT", "TRACE", "get", "PROPFIND"]) {
    const spec = plugin("escaper", `[{ method: ${JSON.stringify(method)}, path: "/m", handler: () => "x" }]`);
    await assert.rejects(env.workers.load(spec), PluginLoadError, `method ${method}`);
  }
  assert.equal(env.workers.get("escaper"), undefined);
  assert.equal(env.router.hasPlugin("escaper"), false);
  // Catch-all routes stay inside the plugin's prefix.
  await env.workers.load(
    plugin(
      "greedy",
      `[{ method: ["GET", "POST", "PUT", "DELETE"], path: "/*", handler: () => "greedy" }, { method: "GET", path: "/re/:x(^.*$)", handler: () => "re" }]`,
    ),
  );
  assert.equal((await raw(env.port, "GET", "/plugin/greedy/api/anything/at/all")).body.toString(), "greedy");
  for (const path of ["/health", "/ready", "/admin/api/plugins", "/plugin/other/api/x", "/plugin/greedy", "/"]) {
    const r = await raw(env.port, "GET", path);
    assert.notEqual(r.body.toString(), "greedy", path);
    assert.notEqual(r.body.toString(), "re", path);
  }
  assert.equal(json(await raw(env.port, "GET", "/health")).status, "ok");
  await env.workers.unload("greedy");
});

test("/plugin/a never matches /plugin/ab (both loaded, both with catch-alls and static files)", async () => {
  const catchAll = (n: string) =>
    `[{ method: ["GET", "POST", "PUT", "DELETE"], path: "/*", handler: () => ({ plugin: ${JSON.stringify(n)} }) }]`;
  await env.workers.load(plugin("a", catchAll("a"), { "package/priv/static/index.html": "static-a" }));
  await env.workers.load(plugin("ab", catchAll("ab"), { "package/priv/static/index.html": "static-ab" }));
  const expect: [string, string | number][] = [
    ["/plugin/a/api/who", "a"],
    ["/plugin/ab/api/who", "ab"],
    ["/plugin/a/api/x/y", "a"],
    ["/plugin/ab/api/x/y", "ab"],
    ["/plugin/a/", "static-a"],
    ["/plugin/ab/", "static-ab"],
    ["/plugin/A/api/who", 404],
    ["/plugin/abc/api/who", 404],
    ["/plugin/a-/api/who", 404],
    ["/plugin//a/api/who", 404],
    ["/plugin/a%62/api/who", 404],
    ["/plugin/%61b/api/who", 404],
    ["/plugin/ab/%61pi/who", 404],
    ["/plugin/%61/", 404],
  ];
  for (const [path, want] of expect) {
    const r = await raw(env.port, "GET", path);
    if (typeof want === "number") assert.equal(r.status, want, path);
    else {
      assert.equal(r.status, 200, path);
      const body = r.body.toString();
      assert.equal(body.startsWith("{") ? (JSON.parse(body).plugin ?? JSON.parse(body).name) : body, want, path);
    }
  }
  // Redirects keep to the exact name.
  assert.equal((await raw(env.port, "GET", "/plugin/a")).headers.location, "/plugin/a/");
  assert.equal((await raw(env.port, "GET", "/plugin/ab")).headers.location, "/plugin/ab/");
  // Dot segments are not resolved by the router: they never reach the sibling.
  for (const path of ["/plugin/a/../ab/api/who", "/plugin/a/api/../../ab/api/who", "/plugin/ab/../a/"]) {
    const r = await raw(env.port, "GET", path);
    const body = r.body.toString();
    assert.ok(!body.includes('"ab"') && !body.includes("static-ab") && !body.includes("static-a"), `${path}: ${body}`);
  }
  await env.workers.unload("a");
  assert.equal((await raw(env.port, "GET", "/plugin/a/api/who")).status, 404);
  assert.equal(json(await raw(env.port, "GET", "/plugin/ab/api/x")).plugin, "ab");
  await env.workers.unload("ab");
});

test("static traversal suite: 4xx and never a byte from outside the static dir", async () => {
  const spec = plugin("s", "[]", {
    "package/priv/static/index.html": "<p>ok</p>",
    "package/priv/static/sub/page.html": "<p>sub</p>",
    "data/private.txt": SECRET,
  });
  const staticDir = spec.staticDir!;
  symlinkSync(join(env.home, "secret.txt"), join(staticDir, "link-out.txt"));
  symlinkSync("/etc/passwd", join(staticDir, "passwd"));
  symlinkSync(env.home, join(staticDir, "home-link"));
  symlinkSync("link-out.txt", join(staticDir, "chain.txt")); // a relative link to a link that points out
  symlinkSync(join(staticDir, "loop-b"), join(staticDir, "loop-a"));
  symlinkSync(join(staticDir, "loop-a"), join(staticDir, "loop-b"));
  symlinkSync(join(spec.root, "data"), join(staticDir, "data")); // the plugin's own data dir is not static either
  mkdirSync(join(staticDir, "deep", "er"), { recursive: true });
  await env.workers.load(spec);

  const attempts = [
    "../secret.txt",
    "../../../secret.txt",
    "..%2f..%2f..%2fsecret.txt",
    "%2e%2e/%2e%2e/%2e%2e/secret.txt",
    "%2E%2E%2F%2E%2E%2F%2E%2E%2Fsecret.txt",
    ".%2e/.%2e/.%2e/secret.txt",
    "%2e./%2e./%2e./secret.txt",
    "%252e%252e/%252e%252e/%252e%252e/secret.txt",
    "%252e%252e%252f%252e%252e%252fsecret.txt",
    "..%5c..%5c..%5csecret.txt",
    "..\\..\\..\\secret.txt",
    "%5c%5c..%5csecret.txt",
    "deep/er/../../../../../secret.txt",
    "deep/er/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt",
    "%c0%ae%c0%ae/%c0%ae%c0%ae/secret.txt",
    "%c0%af..%c0%afsecret.txt",
    "%ef%bc%8e%ef%bc%8e/%ef%bc%8e%ef%bc%8e/secret.txt",
    "..;/..;/..;/secret.txt",
    "index.html%00../../../secret.txt",
    "%00",
    "..%00/secret.txt",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "/%2fetc/passwd",
    "C:%5cwindows%5cwin.ini",
    "link-out.txt",
    "chain.txt",
    "passwd",
    "home-link/secret.txt",
    "data/private.txt",
    "loop-a",
    `${"a/".repeat(2000)}x`,
    "%",
    "%zz",
    "%e0%a4%a",
  ];
  const seen = new Map<string, number>();
  for (const rel of attempts) {
    for (const method of ["GET", "HEAD"]) {
      const r = await raw(env.port, method, `/plugin/s/${rel}`, { headers: { range: "bytes=0-" } });
      seen.set(`${method} ${rel}`, r.status);
      assert.ok(r.status >= 400 && r.status < 500, `${method} ${rel} -> ${r.status}`);
      const body = r.body.toString("latin1");
      assert.ok(!body.includes(SECRET) && !body.includes("root:"), `${method} ${rel} leaked`);
      assert.match(String(r.headers["content-type"] ?? "application/json"), /json/, `${method} ${rel}`);
    }
  }
  // The legitimate files still work (the suite refuses attacks, not the static dir).
  assert.equal((await raw(env.port, "GET", "/plugin/s/")).body.toString(), "<p>ok</p>");
  assert.equal((await raw(env.port, "GET", "/plugin/s/sub/page.html")).body.toString(), "<p>sub</p>");
  // Writes are not a thing on static files.
  for (const method of ["PUT", "POST", "DELETE"]) {
    const r = await raw(env.port, method, "/plugin/s/index.html", { body: "x" });
    assert.ok(r.status === 404 || r.status === 405, `${method} -> ${r.status}`);
  }
  assert.equal((await raw(env.port, "GET", "/plugin/s/index.html")).body.toString(), "<p>ok</p>");
  console.log(`# static traversal: ${seen.size} attempts, statuses ${JSON.stringify([...new Set(seen.values())])}`);
  await env.workers.unload("s");
});

test("file replies are confined to the plugin's own root (no other plugin's data, no /etc)", async () => {
  const victim = pluginPaths(env.home, "victim");
  mkdirSync(victim.data, { recursive: true });
  writeFileSync(join(victim.data, "db.txt"), SECRET);
  const spec = plugin(
    "thief",
    `[
      { method: "GET", path: "/etc", handler: () => ({ file: { path: "/etc/passwd" } }) },
      { method: "GET", path: "/sibling", handler: () => ({ file: { path: ${JSON.stringify(join(victim.data, "db.txt"))} } }) },
      { method: "GET", path: "/dotdot", handler: (req) => ({ file: { path: ${JSON.stringify(pluginPaths(env.home, "thief").data)} + "/../../victim/data/db.txt" } }) },
      { method: "GET", path: "/link", handler: () => ({ file: { path: ${JSON.stringify(join(pluginPaths(env.home, "thief").data, "steal"))} } }) },
      { method: "GET", path: "/own", handler: () => ({ file: { path: ${JSON.stringify(join(pluginPaths(env.home, "thief").data, "mine.txt"))} } }) },
    ]`,
    { "data/mine.txt": "mine" },
  );
  symlinkSync(join(victim.data, "db.txt"), join(pluginPaths(env.home, "thief").data, "steal"));
  await env.workers.load(spec);
  for (const path of ["/etc", "/sibling", "/dotdot", "/link"]) {
    const r = await raw(env.port, "GET", `/plugin/thief/api${path}`);
    assert.ok(r.status >= 400 && r.status < 500, `${path} -> ${r.status}`);
    assert.ok(!r.body.toString().includes(SECRET) && !r.body.toString().includes("root:"), path);
  }
  assert.equal((await raw(env.port, "GET", "/plugin/thief/api/own")).body.toString(), "mine");
  await env.workers.unload("thief");
});

test("reply headers: no CRLF injection, hop-by-hop stripped, lengths and status checked", async () => {
  const spec = plugin(
    "hdr",
    `[
      { method: "GET", path: "/crlf", handler: () => ({ status: 200, headers: { "x-a": "1\\r\\nSet-Cookie: evil=1" }, body: "x" }) },
      { method: "GET", path: "/lf", handler: () => ({ status: 200, headers: { "x-a": "1\\nx-b: 2" }, body: "x" }) },
      { method: "GET", path: "/badname", handler: () => ({ status: 200, headers: { "x a\\r\\nx-b": "1" }, body: "x" }) },
      { method: "GET", path: "/hop", handler: () => ({ status: 200, headers: { connection: "close, x-keep", "transfer-encoding": "chunked", "keep-alive": "timeout=1", upgrade: "h2c", "x-ok": "1" }, body: "hello" }) },
      { method: "GET", path: "/lie", handler: () => ({ status: 200, headers: { "content-length": "999999" }, body: "short" }) },
      { method: "GET", path: "/status-low", handler: () => ({ status: 42, body: "x" }) },
      { method: "GET", path: "/status-high", handler: () => ({ status: 1000, body: "x" }) },
      { method: "GET", path: "/status-nan", handler: () => ({ status: Number.NaN, body: "x" }) },
    ]`,
  );
  await env.workers.load(spec);
  for (const path of ["/crlf", "/lf", "/badname", "/status-low", "/status-high", "/status-nan"]) {
    const r = await raw(env.port, "GET", `/plugin/hdr/api${path}`);
    assert.equal(r.status, 502, `${path} -> ${r.status}`); // bad_reply: the plugin's reply is refused
    assert.equal(r.headers["set-cookie"], undefined, path);
    assert.equal(r.headers["x-b"], undefined, path);
  }
  const hop = await raw(env.port, "GET", "/plugin/hdr/api/hop");
  assert.equal(hop.status, 200);
  assert.equal(hop.body.toString(), "hello");
  assert.equal(hop.headers["x-ok"], "1");
  assert.equal(hop.headers.upgrade, undefined);
  assert.equal(hop.headers["transfer-encoding"], undefined);
  assert.notEqual(hop.headers.connection, "close, x-keep");
  const lie = await raw(env.port, "GET", "/plugin/hdr/api/lie");
  assert.equal(lie.headers["content-length"], "5");
  assert.equal(lie.body.toString(), "short");
  // The connection survived all of it: the next request on a fresh socket works, /health too.
  assert.equal(json(await raw(env.port, "GET", "/plugin/hdr/api/who")).name, "hdr");
  await env.workers.unload("hdr");
});

/** Sends raw bytes on one socket and returns everything the server wrote before closing (or 1 s of silence). */
function rawBytes(request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(env.port, "127.0.0.1");
    let out = "";
    const done = () => {
      socket.destroy();
      resolve(out);
    };
    socket.setTimeout(1000, done);
    socket.on("data", (c) => {
      out += c.toString("latin1");
    });
    socket.on("end", done);
    socket.on("error", reject);
    socket.write(request);
  });
}

test("request smuggling and malformed requests are refused before any plugin sees them", async () => {
  // Echoes what it was asked: a smuggled request that reached it would show up as "GET /smuggled" in the output.
  await env.workers.load(
    plugin(
      "smuggle",
      `[{ method: ["GET", "POST", "PUT", "DELETE"], path: "/*", handler: (req) => req.method + " " + req.path }]`,
    ),
  );
  const cases = [
    // CL + TE together (classic CL.TE desync)
    "POST /plugin/smuggle/api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /plugin/smuggle/api/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
    // two different Content-Length headers
    "POST /plugin/smuggle/api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\nGET /plugin/smuggle/api/smuggled HTTP/1.1\r\n\r\n",
    // obfuscated Transfer-Encoding
    "POST /plugin/smuggle/api/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    // bare LF line endings / space before colon
    "GET /plugin/smuggle/api/x HTTP/1.1\r\nHost : localhost\r\n\r\n",
    // NUL in the request target
    "GET /plugin/smuggle/api/x\0y HTTP/1.1\r\nHost: localhost\r\n\r\n",
    // header section bigger than the parser's limit
    `GET /plugin/smuggle/api/x HTTP/1.1\r\nHost: localhost\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
  ];
  for (const c of cases) {
    const out = await rawBytes(c);
    assert.match(out, /^HTTP\/1\.1 4\d\d /, `${JSON.stringify(c.slice(0, 80))} -> ${JSON.stringify(out.slice(0, 80))}`);
    assert.ok(!out.includes("smuggled"), "a smuggled request reached the plugin");
  }
  assert.equal((await raw(env.port, "GET", "/health")).status, 200);
  await env.workers.unload("smuggle");
});

test("error responses are JSON, carry nosniff on files, and leak no internals", async () => {
  const spec = plugin(
    "errs",
    `[{ method: "GET", path: "/boom", handler: () => { throw new Error("db password is hunter2 at /srv/x.js:1"); } }]`,
    {
      "package/priv/static/page.html": "<p>x</p>",
    },
  );
  await env.workers.load(spec);
  const boom = await raw(env.port, "GET", "/plugin/errs/api/boom");
  assert.equal(boom.status, 500);
  assert.match(String(boom.headers["content-type"]), /^application\/json/);
  assert.deepEqual(json(boom), { error: { code: "internal_error", message: "internal error" } });
  const missing = await raw(env.port, "GET", "/plugin/errs/api/missing");
  assert.equal(missing.status, 404);
  assert.equal(json(missing).error.code, "not_found");
  const page = await raw(env.port, "GET", "/plugin/errs/page.html");
  assert.equal(page.headers["x-content-type-options"], "nosniff");
  assert.equal(page.headers["x-powered-by"], undefined);
  await env.workers.unload("errs");
});

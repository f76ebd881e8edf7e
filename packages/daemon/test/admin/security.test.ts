/**
 * Admin API access: token over TCP (header or session cookie from /admin/login), none over the 0600 Unix socket for
 * another process of the daemon's uid; DNS-rebinding
 * guard (Host / Origin); typed JSON 4xx for bad request bodies; /health and /ready.
 */
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { startDaemon } from "../../src/daemon.js";
import { buildPackage, startTestDaemon, type TestDaemon, unixRequest } from "../lifecycle/helpers.js";
import { childSocketRequest } from "./socket-client.js";

let d: TestDaemon;

before(async () => {
  d = await startTestDaemon({ maxUploadBytes: 64 * 1024 });
});
after(async () => {
  await d.stop();
});

/** The admin API's own listener (the plugin port answers 404 to /admin/). */
const adminPort = () => Number(new URL(d.adminUrl).port);

/** Raw request over TCP to the admin listener (fetch forbids setting Host). */
function raw(
  path: string,
  headers: Record<string, string>,
  method = "GET",
  body?: string | Buffer,
): Promise<{ status: number; headers: Record<string, unknown>; json: () => { error: { code: string } } }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: adminPort(), path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          json: () => JSON.parse(Buffer.concat(chunks).toString("utf8")),
        }),
      );
    });
    req.on("error", reject);
    req.end(body);
  });
}

test("token file is 0600 and the socket 0600; no/wrong token -> 401 JSON", async () => {
  const tokenFile = join(d.home, "run", "admin.token");
  assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
  assert.equal(readFileSync(tokenFile, "utf8").trim(), d.token);
  assert.equal(statSync(d.socketPath).mode & 0o777, 0o600);
  const none = await raw("/admin/api/plugins", {});
  assert.equal(none.status, 401);
  assert.equal(none.json().error.code, "unauthorized");
  const wrong = await raw("/admin/api/plugins", { authorization: `Bearer ${"0".repeat(64)}` });
  assert.equal(wrong.status, 401);
  const short = await raw("/admin/api/plugins", { authorization: "Bearer x" });
  assert.equal(short.status, 401);
  const page = await raw("/admin/", {});
  assert.equal(page.status, 401);
  const ok = await raw("/admin/api/plugins", { authorization: `Bearer ${d.token}` });
  assert.equal(ok.status, 200);
});

test("Unix socket needs no token for another process of the daemon's uid (the CLI); the daemon's own process needs it", async () => {
  const r = await childSocketRequest(d.socketPath, "/admin/api/plugins");
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { plugins: [], pluginPort: d.port });
  // this test process IS the daemon: what a redirected daemon connection looks like (admin/peer.test.ts)
  assert.equal((await unixRequest(d.socketPath, "GET", "/admin/api/plugins")).status, 401);
});

test("foreign Host -> 403 forbidden_host; foreign Origin -> 403 forbidden_origin (even with the token)", async () => {
  const auth = { authorization: `Bearer ${d.token}` };
  const evil = await raw("/admin/api/plugins", { ...auth, host: "evil.example:7770" });
  assert.equal(evil.status, 403);
  assert.equal(evil.json().error.code, "forbidden_host");
  const rebind = await raw("/admin/login?token=" + d.token, { host: "attacker.test" });
  assert.equal(rebind.status, 403);
  for (const host of ["localhost:7770", "127.0.0.1", "[::1]:1234"]) {
    assert.equal((await raw("/admin/api/plugins", { ...auth, host })).status, 200, host);
  }
  const origin = await raw("/admin/api/plugins", { ...auth, host: "localhost:7770", origin: "http://evil.example" });
  assert.equal(origin.status, 403);
  assert.equal(origin.json().error.code, "forbidden_origin");
  const same = await raw("/admin/api/plugins", { ...auth, host: "localhost:7770", origin: "http://localhost:7770" });
  assert.equal(same.status, 200);
  // Plugin routes and /health are not behind the admin guard.
  assert.equal((await raw("/health", { host: "evil.example" })).status, 200);
});

test("/admin/login sets an HttpOnly SameSite=Strict cookie that authorizes the page and the API", async () => {
  const bad = await raw("/admin/login?token=nope", {});
  assert.equal(bad.status, 401);
  const r = await raw(`/admin/login?token=${d.token}`, {});
  assert.equal(r.status, 303);
  assert.equal(r.headers.location, "/admin/");
  const cookie = String(r.headers["set-cookie"]);
  assert.match(cookie, /hecate_admin=/);
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /SameSite=Strict/);
  const pair = cookie.split(";")[0];
  assert.equal((await raw("/admin/api/plugins", { cookie: pair })).status, 200);
  const page = await raw("/admin/", { cookie: pair });
  assert.equal(page.status, 200);
  assert.match(String(page.headers["content-type"]), /text\/html/);
});

test("request-body errors are clear 4xx JSON and leave nothing behind", async () => {
  const auth = { authorization: `Bearer ${d.token}` };
  const cases: [Record<string, string>, string | Buffer, number, string][] = [
    [{ "content-type": "text/plain" }, "x", 415, "unsupported_media_type"],
    [{ "content-type": "application/json" }, "{not json", 400, "invalid_json"],
    [{ "content-type": "application/json" }, JSON.stringify({ path: "relative/x.tar.gz" }), 400, "invalid_body"],
    [{ "content-type": "application/json" }, JSON.stringify({ path: "/nonexistent/x.tar.gz" }), 400, "invalid_path"],
    [{ "content-type": "application/json" }, JSON.stringify([1]), 400, "invalid_body"],
    [{ "content-type": "application/gzip" }, "", 400, "empty_body"],
    [{ "content-type": "application/gzip" }, Buffer.alloc(65 * 1024), 413, "body_too_large"],
  ];
  for (const [headers, body, status, code] of cases) {
    const r = await raw("/admin/api/plugins", { ...auth, ...headers }, "POST", body);
    assert.equal(r.status, status, `${JSON.stringify(headers)} ${String(body).slice(0, 20)}`);
    assert.equal(r.json().error.code, code);
  }
  // Streamed (chunked) upload past the cap.
  const chunked = await new Promise<number>((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: adminPort(),
        path: "/admin/api/plugins",
        method: "POST",
        headers: { ...auth, "content-type": "application/gzip" },
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("error", reject);
    for (let i = 0; i < 80; i++) req.write(Buffer.alloc(1024));
    req.end();
  });
  assert.equal(chunked, 413);
  assert.equal(
    (await raw("/admin/api/plugins?wait=maybe", { ...auth, "content-type": "application/gzip" }, "POST", "x")).status,
    400,
  );
  assert.deepEqual(
    readdirSync(join(d.home, "run")).filter((f) => f.startsWith("incoming-")),
    [],
  );
  const missing = await raw("/admin/api/plugins/nope", auth);
  assert.equal(missing.status, 404);
  assert.equal(missing.json().error.code, "plugin_not_found");
  assert.equal((await raw("/admin/api/plugins/nope/activate", auth, "POST")).status, 404);
  assert.equal((await raw("/admin/api/plugins/Bad%20Name", auth)).status, 404);
});

test("/health answers fast during an install; /ready is 200 after boot", async () => {
  const archive = readFileSync(await buildPackage(d.work, { name: "small", version: "1.0.0" }));
  assert.ok(archive.length < 64 * 1024);
  const installing = d.api("POST", "/admin/api/plugins", {
    body: archive,
    headers: { "content-type": "application/gzip" },
  });
  const times: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    const r = await fetch(`${d.url}/health`);
    const body = (await r.json()) as { status: string; uptimeMs: number };
    times.push(performance.now() - t);
    assert.equal(body.status, "ok");
    assert.ok(typeof body.uptimeMs === "number");
  }
  assert.equal((await installing).status, 201);
  times.sort((a, b) => a - b);
  // Typical probes stay fast; one slow probe on a loaded 2-core machine (the suite runs two files at once) is a
  // scheduling hiccup, not an install blocking the loop, which would show in the median.
  assert.ok(times[times.length >> 1]! < 50, `median /health ${times[times.length >> 1]} ms`);
  assert.ok(times.at(-1)! < 1000, `max /health ${times.at(-1)} ms`);
  assert.equal((await fetch(`${d.url}/ready`)).status, 200);
});

test("a second daemon on the same home is refused; leftover uploads of a crashed run are removed at start", async () => {
  await assert.rejects(
    startDaemon({ home: d.home, port: 0, logLevel: "silent", containers: false }),
    /another hecate daemon is running/,
  );
  assert.equal((await fetch(`${d.url}/health`)).status, 200, "the first one is untouched");
  const home = join(d.work, "other-home");
  mkdirSync(join(home, "run"), { recursive: true });
  writeFileSync(join(home, "run", "incoming-dead.tar.gz"), "partial upload");
  const other = await startDaemon({ home, port: 0, logLevel: "silent", containers: false });
  try {
    assert.deepEqual(
      readdirSync(join(home, "run")).filter((f) => f.startsWith("incoming-")),
      [],
    );
  } finally {
    await other.close();
  }
});

test("close() ends open event streams and keep-alive connections instead of waiting for them", async () => {
  const other = await startTestDaemon();
  const res = await other.api("GET", "/admin/api/events");
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  await reader.read(); // ": connected"
  const t = performance.now();
  await other.stop();
  const closeMs = performance.now() - t;
  for (;;) if ((await reader.read()).done) break; // the stream ends
  assert.ok(closeMs < 3000, `close took ${closeMs} ms`);
});

test("a taken port fails the start with EADDRINUSE and releases the home for the next try", async () => {
  const home = join(d.work, "busy-home");
  await assert.rejects(
    startDaemon({ home, port: d.port, logLevel: "silent", containers: false }),
    (err: NodeJS.ErrnoException) => err.code === "EADDRINUSE",
  );
  const ok = await startDaemon({ home, port: 0, logLevel: "silent", containers: false });
  await ok.close();
});

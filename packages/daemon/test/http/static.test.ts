import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Router } from "../../src/http/router.js";
import { createHttpServer, listen } from "../../src/http/server.js";
import { parseRange, safeSegments } from "../../src/http/static.js";
import { raw } from "../worker/helpers.js";

let dir: string;
let server: Server;
let port: number;
const router = new Router();

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "hecate-static-"));
  const root = join(dir, "static");
  mkdirSync(join(root, "sub"), { recursive: true });
  mkdirSync(join(root, "empty-dir"), { recursive: true });
  writeFileSync(join(dir, "secret.txt"), "TOPSECRET");
  writeFileSync(join(root, "index.html"), "<p>home</p>");
  writeFileSync(join(root, "sub", "index.html"), "<p>sub</p>");
  writeFileSync(join(root, "data.json"), JSON.stringify({ a: 1 }));
  writeFileSync(join(root, "style.css"), "body{}");
  writeFileSync(join(root, "file with space.txt"), "spaced");
  writeFileSync(join(root, "digits.txt"), "0123456789");
  writeFileSync(join(root, "empty.txt"), "");
  symlinkSync(join(dir, "secret.txt"), join(root, "link-out.txt"));
  symlinkSync(dir, join(root, "dir-out"));
  symlinkSync(join(root, "digits.txt"), join(root, "link-in.txt"));
  router.setPlugin("s", { staticDir: root });
  server = createHttpServer(router);
  port = await listen(server);
});
after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

test("traversal attempts are refused with 4xx and never leak the file", async () => {
  const attempts = [
    "/plugin/s/../secret.txt",
    "/plugin/s/../../secret.txt",
    "/plugin/s/%2e%2e/secret.txt",
    "/plugin/s/%2E%2E/secret.txt",
    "/plugin/s/..%2fsecret.txt",
    "/plugin/s/%2e%2e%2fsecret.txt",
    "/plugin/s/sub/..%2f..%2fsecret.txt",
    "/plugin/s/..%5csecret.txt",
    "/plugin/s/..\\secret.txt",
    "/plugin/s/%5c..%5csecret.txt",
    "/plugin/s/index.html%00.txt",
    "/plugin/s/%00",
    "/plugin/s/%zz",
    "/plugin/s/./index.html",
    "/plugin/s/link-out.txt",
    "/plugin/s/dir-out/secret.txt",
    "/plugin/s//../secret.txt",
    "/plugin/s/sub/../../secret.txt",
  ];
  for (const path of attempts) {
    const r = await raw(port, "GET", path);
    assert.ok(r.status >= 400 && r.status < 500, `${path} -> ${r.status}`);
    assert.ok(!r.body.toString().includes("TOPSECRET"), path);
  }
});

test("serves files with content type, index.html, ETag/304, Range/206/416, HEAD", async () => {
  const idx = await raw(port, "GET", "/plugin/s/");
  assert.equal(idx.status, 200);
  assert.equal(idx.body.toString(), "<p>home</p>");
  assert.match(String(idx.headers["content-type"]), /^text\/html/);
  assert.equal((await raw(port, "GET", "/plugin/s/sub/")).body.toString(), "<p>sub</p>");
  assert.equal((await raw(port, "GET", "/plugin/s/sub")).body.toString(), "<p>sub</p>");
  assert.equal((await raw(port, "GET", "/plugin/s/empty-dir/")).status, 404);
  assert.equal((await raw(port, "GET", "/plugin/s/missing.txt")).status, 404);
  assert.match(String((await raw(port, "GET", "/plugin/s/data.json")).headers["content-type"]), /application\/json/);
  assert.match(String((await raw(port, "GET", "/plugin/s/style.css")).headers["content-type"]), /text\/css/);
  assert.equal((await raw(port, "GET", "/plugin/s/file%20with%20space.txt")).body.toString(), "spaced");
  assert.equal((await raw(port, "GET", "/plugin/s/link-in.txt")).body.toString(), "0123456789");
  const empty = await raw(port, "GET", "/plugin/s/empty.txt");
  assert.equal(empty.status, 200);
  assert.equal(empty.body.length, 0);

  const full = await raw(port, "GET", "/plugin/s/digits.txt");
  const etag = String(full.headers.etag);
  assert.equal(full.headers["accept-ranges"], "bytes");
  assert.equal((await raw(port, "GET", "/plugin/s/digits.txt", { headers: { "if-none-match": etag } })).status, 304);
  assert.equal(
    (await raw(port, "GET", "/plugin/s/digits.txt", { headers: { "if-none-match": `"x", W/${etag}` } })).status,
    304,
  );
  assert.equal(
    (await raw(port, "GET", "/plugin/s/digits.txt", { headers: { "if-none-match": '"other"' } })).status,
    200,
  );

  const r1 = await raw(port, "GET", "/plugin/s/digits.txt", { headers: { range: "bytes=2-4" } });
  assert.equal(r1.status, 206);
  assert.equal(r1.body.toString(), "234");
  assert.equal(r1.headers["content-range"], "bytes 2-4/10");
  assert.equal(
    (await raw(port, "GET", "/plugin/s/digits.txt", { headers: { range: "bytes=-3" } })).body.toString(),
    "789",
  );
  assert.equal(
    (await raw(port, "GET", "/plugin/s/digits.txt", { headers: { range: "bytes=7-" } })).body.toString(),
    "789",
  );
  assert.equal(
    (await raw(port, "GET", "/plugin/s/digits.txt", { headers: { range: "bytes=5-100" } })).body.toString(),
    "56789",
  );
  const r416 = await raw(port, "GET", "/plugin/s/digits.txt", { headers: { range: "bytes=10-12" } });
  assert.equal(r416.status, 416);
  assert.equal(r416.headers["content-range"], "bytes */10");
  // Multi-range and foreign units: ignored, whole file.
  assert.equal((await raw(port, "GET", "/plugin/s/digits.txt", { headers: { range: "bytes=0-1,3-4" } })).status, 200);
  // If-Range with a stale validator: whole file.
  const ifr = await raw(port, "GET", "/plugin/s/digits.txt", { headers: { range: "bytes=0-1", "if-range": '"old"' } });
  assert.equal(ifr.status, 200);

  const head = await raw(port, "HEAD", "/plugin/s/digits.txt");
  assert.equal(head.status, 200);
  assert.equal(head.headers["content-length"], "10");
  assert.equal(head.body.length, 0);
  const post = await raw(port, "POST", "/plugin/s/digits.txt");
  assert.equal(post.status, 405, "static files answer GET and HEAD only");
  assert.match(String(post.headers.allow), /GET/);
  const red = await raw(port, "GET", "/plugin/s");
  assert.equal(red.status, 301);
  assert.equal(red.headers.location, "/plugin/s/");
});

test("system routes: /health answers, unknown paths 404 JSON", async () => {
  const h = await raw(port, "GET", "/health");
  assert.equal(h.status, 200);
  assert.equal(JSON.parse(h.body.toString()).status, "ok");
  assert.equal((await raw(port, "GET", "/ready")).status, 503);
  router.setReady(true);
  assert.equal((await raw(port, "GET", "/ready")).status, 200);
  const nf = await raw(port, "GET", "/nope");
  assert.equal(nf.status, 404);
  assert.equal(JSON.parse(nf.body.toString()).error.code, "not_found");
  router.setSystemRoutes("admin", [{ method: "GET", path: "/admin/x/:id", handler: (_q, res, p) => res.end(p.id) }]);
  assert.equal((await raw(port, "GET", "/admin/x/7")).body.toString(), "7");
  router.setSystemRoutes("admin", []);
  assert.equal((await raw(port, "GET", "/admin/x/7")).status, 404);
});

test("safeSegments and parseRange", () => {
  assert.deepEqual(safeSegments("a/b%20c/"), ["a", "b c"]);
  assert.equal(safeSegments("a/%2e%2e"), null);
  assert.equal(safeSegments("a%2fb"), null);
  assert.equal(safeSegments("a%5cb"), null);
  assert.equal(safeSegments("a\\b"), null);
  assert.equal(safeSegments("a%00"), null);
  assert.deepEqual(parseRange("bytes=0-0", 5), [0, 0]);
  assert.deepEqual(parseRange("bytes=-10", 5), [0, 4]);
  assert.equal(parseRange("bytes=5-", 5), "unsatisfiable");
  assert.equal(parseRange("bytes=-0", 5), "unsatisfiable");
  assert.equal(parseRange("items=0-1", 5), null);
  assert.equal(parseRange("bytes=3-1", 5), null);
});

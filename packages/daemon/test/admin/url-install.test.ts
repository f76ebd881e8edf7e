/**
 * Installing a package from a URL (`{"url", "sha256"}` on the install / upgrade routes): a real HTTPS server with a
 * throwaway CA (openssl), the daemon's real admin API. The download is bounded (size, deadline, redirects), the pin
 * is checked before the archive is read, and every refusal is recorded exactly like an upload's.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { buildPackage, startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";
import { makeTestCa, serve, type TestCa, type TestServer } from "./https-server.js";

const json = { "content-type": "application/json" };
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

let d: TestDaemon;
let ca: TestCa;
let https: TestServer;
let http: TestServer;
const packages = new Map<string, Buffer>();
let loopHits = 0;

function handler(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? "/", "https://x");
  const [, kind, a, b] = url.pathname.split("/");
  if (kind === "pkg" && packages.has(a)) {
    const body = packages.get(a)!;
    res.writeHead(200, { "content-type": "application/gzip", "content-length": body.length });
    res.end(body);
  } else if (kind === "chunked" && packages.has(a)) {
    res.writeHead(200, { "content-type": "application/gzip" }); // no length: the cap must count what it reads
    res.end(packages.get(a));
  } else if (kind === "redirect") {
    const left = Number(a);
    res.writeHead(302, { location: left > 0 ? `/redirect/${left - 1}/${b}` : `/pkg/${b}` });
    res.end();
  } else if (kind === "loop") {
    loopHits++;
    res.writeHead(301, { location: "/loop" });
    res.end();
  } else if (kind === "stall") {
    res.writeHead(200, { "content-type": "application/gzip", "content-length": 1_000_000 });
    res.write(Buffer.alloc(10)); // then nothing, ever
  } else if (kind === "silent") {
    // reads the request, never answers
  } else if (kind === "to-http") {
    res.writeHead(302, { location: "http://10.255.255.1/x.tar.gz" });
    res.end();
  } else {
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not here");
  }
}

before(async () => {
  d = await startTestDaemon();
  ca = makeTestCa(mkdtempSync(join(d.work, "ca-")));
  https = await serve(handler, ca);
  http = await serve(handler);
  process.env.HECATE_DOWNLOAD_CA_FILE = ca.caFile;
});
after(async () => {
  await https?.close();
  await http?.close();
  await d?.stop();
});

async function pkg(name: string, version = "1.0.0"): Promise<Buffer> {
  const body = readFileSync(await buildPackage(d.work, { name, version }));
  packages.set(name, body);
  return body;
}

async function install(body: Record<string, unknown>, path = "/admin/api/plugins") {
  const r = await d.api("POST", path, { body: JSON.stringify(body), headers: json });
  return { status: r.status, body: await r.json() };
}

async function lastRejection() {
  const r = await d.api("GET", "/admin/api/rejections?limit=1");
  return (await r.json()).rejections[0];
}

/** No plugin recorded under `name`, no files of it, no download left in the incoming dir. */
async function nothingLeft(name: string): Promise<void> {
  assert.equal((await d.api("GET", `/admin/api/plugins/${name}`)).status, 404, `${name} is not installed`);
  assert.equal(existsSync(join(d.home, "plugins", name)), false, "no plugin dir");
  assert.deepEqual(
    readdirSync(join(d.home, "run")).filter((f) => f.startsWith("incoming-")),
    [],
    "no download left behind",
  );
}

describe("install from a URL (real HTTPS, throwaway CA)", () => {
  it("a matching pin installs and loads; the URL is the install event's source (package_url)", async () => {
    const body = await pkg("fromurl");
    const url = `${https.url}/pkg/fromurl`;
    const t0 = Date.now();
    const r = await install({ url, sha256: sha(body).toUpperCase() });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.status, "loaded");
    console.log(`# URL install -> loaded: ${Date.now() - t0} ms`);
    assert.deepEqual(await (await fetch(`${d.url}/plugin/fromurl/api/who`)).json(), {
      name: "fromurl",
      version: "1.0.0",
    });
    const events = (await (await d.api("GET", "/admin/api/plugins/fromurl/events")).json()).events;
    const installed = events.find((e: { type: string }) => e.type === "plugin_installed_v1");
    assert.equal(installed.data.source, url);
    assert.equal(d.lifecycle.state("fromurl")?.package_url, url);
  });

  it("upgrade from a URL behind redirects (within the limit), no pin", async () => {
    await pkg("fromurl", "1.1.0");
    const url = `${https.url}/redirect/3/fromurl`;
    const r = await install({ url }, "/admin/api/plugins/fromurl/upgrade");
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.version, "1.1.0");
    assert.equal(d.lifecycle.state("fromurl")?.package_url, url);
    assert.equal((await d.api("DELETE", "/admin/api/plugins/fromurl?purge=1")).status, 200);
  });

  it("a mismatching pin is refused before extraction: package_rejected_v1 with the file's digest, nothing left", async () => {
    const body = await pkg("pinned");
    const wrong = "0".repeat(64);
    const before = await d.lifecycle.store.headPosition();
    const r = await install({ url: `${https.url}/pkg/pinned`, sha256: wrong });
    assert.equal(r.status, 422, JSON.stringify(r.body));
    assert.equal(r.body.error.code, "sha256_mismatch");
    assert.deepEqual(r.body.error.details, { expected: wrong, actual: sha(body) });
    // Exactly the one event an upload refused before its manifest was read gets: no plugin stream touched.
    const appended = await d.lifecycle.store.readAll({ afterPosition: before });
    assert.deepEqual(
      appended.map((e) => [e.stream, e.type]),
      [["package-rejections", "package_rejected_v1"]],
    );
    const rej = await lastRejection();
    assert.equal(rej.code, "sha256_mismatch");
    assert.equal(rej.source, "url");
    assert.equal(rej.url, `${https.url}/pkg/pinned`);
    assert.equal(rej.sha256, sha(body));
    assert.equal(rej.bytes, body.length);
    await nothingLeft("pinned");
  });

  it("a bad package from a URL is refused exactly like the same bytes uploaded (same code, same event)", async () => {
    packages.set("junk", Buffer.from("hello, not a tarball"));
    const r = await install({ url: `${https.url}/pkg/junk` });
    assert.equal(r.status, 422);
    assert.equal(r.body.error.code, "not_gzip");
    const fromUrl = await lastRejection();
    const up = await d.api("POST", "/admin/api/plugins", {
      body: packages.get("junk"),
      headers: { "content-type": "application/gzip" },
    });
    assert.equal(up.status, 422);
    assert.equal((await up.json()).error.code, "not_gzip");
    const fromUpload = await lastRejection();
    for (const k of ["op", "code", "message", "bytes", "sha256", "plugin"])
      assert.deepEqual(fromUrl[k], fromUpload[k], k);
    assert.deepEqual([fromUrl.source, fromUpload.source], ["url", "upload"]);
    await nothingLeft("junk");
  });

  it("TLS is verified: without the CA setting the same server is refused", async () => {
    await pkg("tls");
    delete process.env.HECATE_DOWNLOAD_CA_FILE;
    try {
      const r = await install({ url: `${https.url}/pkg/tls` });
      assert.equal(r.status, 502, JSON.stringify(r.body));
      assert.equal(r.body.error.code, "download_failed");
      assert.match(r.body.error.details.reason, /CERT|SIGNATURE|ISSUER/);
    } finally {
      process.env.HECATE_DOWNLOAD_CA_FILE = ca.caFile;
    }
    assert.equal((await lastRejection()).code, "download_failed");
    await nothingLeft("tls");
  });

  it("plain http:// is refused for a non-loopback host (also as a redirect target), accepted on loopback", async () => {
    const r = await install({ url: "http://10.255.255.1/x.tar.gz" });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error.code, "insecure_url");
    const rej = await lastRejection();
    assert.deepEqual([rej.code, rej.source, rej.url], ["insecure_url", "url", "http://10.255.255.1/x.tar.gz"]);
    const redirected = await install({ url: `${https.url}/to-http` });
    assert.equal(redirected.status, 400, JSON.stringify(redirected.body));
    assert.equal(redirected.body.error.code, "insecure_url");
    await nothingLeft("x");
    await pkg("plainlocal");
    const local = await install({ url: `${http.url}/pkg/plainlocal` });
    assert.equal(local.status, 201, JSON.stringify(local.body));
    assert.equal((await d.api("DELETE", "/admin/api/plugins/plainlocal?purge=1")).status, 200);
  });

  it("a 404 is a clear error and leaves nothing", async () => {
    const r = await install({ url: `${https.url}/nothing-here.tar.gz` });
    assert.equal(r.status, 502, JSON.stringify(r.body));
    assert.equal(r.body.error.code, "download_failed");
    assert.equal(r.body.error.details.status, 404);
    assert.match(r.body.error.message, /answered 404/);
    await nothingLeft("nothing-here");
  });

  it("too many redirects: refused after the limit", async () => {
    loopHits = 0;
    process.env.HECATE_DOWNLOAD_MAX_REDIRECTS = "3";
    try {
      const r = await install({ url: `${https.url}/loop` });
      assert.equal(r.status, 502, JSON.stringify(r.body));
      assert.equal(r.body.error.code, "too_many_redirects");
      assert.equal(loopHits, 4, "the first request and 3 redirects");
    } finally {
      delete process.env.HECATE_DOWNLOAD_MAX_REDIRECTS;
    }
    await nothingLeft("loop");
  });

  it("oversize: refused by Content-Length, and by the bytes read when no length is sent", async () => {
    const body = await pkg("big");
    process.env.HECATE_DOWNLOAD_MAX_BYTES = String(body.length - 1);
    try {
      for (const kind of ["pkg", "chunked"]) {
        const r = await install({ url: `${https.url}/${kind}/big` });
        assert.equal(r.status, 413, JSON.stringify(r.body));
        assert.equal(r.body.error.code, "download_too_large");
        assert.equal(r.body.error.details.limit, body.length - 1);
        const rej = await lastRejection();
        assert.deepEqual([rej.code, rej.bytes, rej.sha256], ["download_too_large", null, null]);
        await nothingLeft("big");
      }
      // the same package within the cap installs
      process.env.HECATE_DOWNLOAD_MAX_BYTES = String(body.length);
      assert.equal((await install({ url: `${https.url}/chunked/big` })).status, 201);
      assert.equal((await d.api("DELETE", "/admin/api/plugins/big?purge=1")).status, 200);
    } finally {
      delete process.env.HECATE_DOWNLOAD_MAX_BYTES;
    }
  });

  it("a server that stalls (mid-body, or before any answer): refused at the deadline, partial file removed", async () => {
    process.env.HECATE_DOWNLOAD_TIMEOUT_MS = "800";
    try {
      for (const kind of ["stall", "silent"]) {
        const t0 = Date.now();
        const r = await install({ url: `${https.url}/${kind}` });
        const ms = Date.now() - t0;
        assert.equal(r.status, 504, JSON.stringify(r.body));
        assert.equal(r.body.error.code, "download_timeout");
        assert.ok(ms >= 800 && ms < 10_000, `${kind}: answered after ${ms} ms`);
        assert.equal((await lastRejection()).code, "download_timeout");
      }
    } finally {
      delete process.env.HECATE_DOWNLOAD_TIMEOUT_MS;
    }
    await nothingLeft("stall");
  });

  it("bad requests: a non-http(s) URL, credentials in the URL, a malformed pin, unknown fields", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ url: "file:///etc/passwd" }, "invalid_url"],
      [{ url: "ftp://127.0.0.1/x.tar.gz" }, "invalid_url"],
      [{ url: `https://user:secret@127.0.0.1:1/x.tar.gz` }, "invalid_url"],
      [{ url: `${https.url}/pkg/x`, sha256: "abc" }, "invalid_sha256"],
      [{ url: `${https.url}/pkg/x`, sha: "0".repeat(64) }, "invalid_body"],
      [{ url: 42 }, "invalid_body"],
    ];
    for (const [body, code] of cases) {
      const r = await install(body);
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.error.code, code, JSON.stringify(body));
    }
    const rej = await lastRejection();
    assert.equal(rej.source, "url");
    assert.ok(!JSON.stringify(await d.api("GET", "/admin/api/rejections").then((r) => r.json())).includes("secret"));
    await nothingLeft("x");
  });
});

/**
 * Refused packages are events (real daemon, real store, real HTTP, SSE read off the wire):
 *  - a package refused before its name is known (upload or {path}) -> package_rejected_v1 in the daemon's
 *    `package-rejections` stream with the code, size and sha256 of the refused file; listed newest first by
 *    GET /admin/api/rejections; pushed as `event: rejection` on /admin/api/events; nothing left in run/ or plugins/;
 *  - a refused upgrade / re-install of an installed plugin -> plugin_package_rejected_v1 on the plugin's own stream
 *    (lastError shows it, the running version keeps serving) and a rejection record naming the plugin;
 *  - a refused body (too large) is recorded too; the records survive a restart.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { gz, manifestJson, sha256, snapshot, tarOf, validEntries } from "@hecate/package/testing";
import { REJECTIONS_STREAM } from "../../src/lifecycle/service.js";
import { type ApiResponse, buildPackage, startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";

const MAX_UPLOAD = 2 * 1024 * 1024;
let d: TestDaemon;
let firstWork: string | undefined;

before(async () => {
  d = await startTestDaemon({ maxUploadBytes: MAX_UPLOAD });
});
after(async () => {
  await d?.stop();
  if (firstWork) rmSync(firstWork, { recursive: true, force: true });
});

interface Rejection {
  position: number;
  op: string;
  code: string;
  message: string;
  source: string;
  path?: string;
  plugin: string | null;
  bytes: number | null;
  sha256: string | null;
  at: string;
}

async function rejections(limit?: number): Promise<Rejection[]> {
  const r = await d.api("GET", `/admin/api/rejections${limit ? `?limit=${limit}` : ""}`);
  assert.equal(r.status, 200);
  return (await r.json()).rejections;
}

/** Collects `event: rejection` frames of /admin/api/events until `count` arrived. */
function sseRejections(count: number): Promise<{ got: Promise<Rejection[]>; close(): void }> {
  const u = new URL("/admin/api/events", d.adminUrl);
  return new Promise((resolve, reject) => {
    const got: Rejection[] = [];
    let buffer = "";
    let done: (v: Rejection[]) => void;
    const all = new Promise<Rejection[]>((r) => {
      done = r;
    });
    const req = request(
      { host: u.hostname, port: u.port, path: u.pathname, headers: { authorization: `Bearer ${d.token}` } },
      (res) => {
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          buffer += chunk;
          for (let i = buffer.indexOf("\n\n"); i >= 0; i = buffer.indexOf("\n\n")) {
            const frame = buffer.slice(0, i);
            buffer = buffer.slice(i + 2);
            const m = /^event: rejection\ndata: (.*)$/m.exec(frame);
            if (m) got.push(JSON.parse(m[1]!));
            if (got.length === count) done(got);
          }
        });
        resolve({ got: all, close: () => req.destroy() });
      },
    );
    req.on("error", reject);
    req.end();
  });
}

const leftovers = () =>
  Object.keys(snapshot(d.home)).filter((k) => /(^|\/)\.staging-|(^|\/)\.old-|(^|\/)incoming-/.test(k));

test("packages refused before their name is known: one package_rejected_v1 each, listed, streamed, no leftovers", async () => {
  const cases: { label: string; code: string; bytes: Buffer; via: "upload" | "path" }[] = [
    { label: "not gzip", code: "not_gzip", bytes: Buffer.from("definitely not a tarball\n"), via: "upload" },
    {
      label: "truncated",
      code: "truncated",
      bytes: gz(tarOf(validEntries("cut"))).subarray(0, 200),
      via: "upload",
    },
    {
      label: "traversal",
      code: "path_traversal",
      bytes: gz(tarOf([...validEntries("trav"), { name: "../escaped.txt", data: "x" }])),
      via: "path",
    },
    {
      label: "invalid manifest",
      code: "invalid_manifest",
      bytes: gz(tarOf(validEntries("x", {}, { manifest: manifestJson("../../etc") }))),
      via: "path",
    },
    {
      label: "no manifest",
      code: "missing_manifest",
      bytes: gz(tarOf([{ name: "dist/index.js", data: "export {}" }])),
      via: "upload",
    },
  ];
  const before = snapshot(d.home);
  const stream = await sseRejections(cases.length);
  // The SSE response head is written before any refusal, so none can be missed.
  for (const c of cases) {
    let r: ApiResponse;
    if (c.via === "upload") {
      r = await d.api("POST", "/admin/api/plugins", { body: c.bytes, headers: { "content-type": "application/gzip" } });
    } else {
      const file = join(d.work, `${c.label.replace(/ /g, "-")}.tar.gz`);
      writeFileSync(file, c.bytes);
      r = await d.api("POST", "/admin/api/plugins", {
        body: JSON.stringify({ path: file }),
        headers: { "content-type": "application/json" },
      });
      assert.deepEqual(readFileSync(file), c.bytes, `${c.label}: the operator's file was touched`);
    }
    const body = await r.json();
    assert.equal(r.status, 422, `${c.label}: ${JSON.stringify(body)}`);
    assert.equal(body.error.code, c.code, c.label);
    // Recorded before the answer: the newest record is this one.
    const [last] = await rejections(1);
    assert.equal(last?.code, c.code, c.label);
    assert.equal(last.message, body.error.message, c.label);
    assert.equal(last.sha256, sha256(c.bytes), c.label);
    assert.equal(last.bytes, c.bytes.length, c.label);
    assert.equal(last.source, c.via, c.label);
    if (c.via === "path") assert.match(last.path ?? "", /\.tar\.gz$/, c.label);
    assert.equal(last.plugin, null, c.label);
    assert.equal(last.op, "install", c.label);
    assert.equal((await d.api("GET", "/health")).status, 200, `${c.label}: daemon down`);
  }
  const streamed = await stream.got;
  stream.close();
  assert.deepEqual(
    streamed.map((e) => [e.code, e.sha256]),
    cases.map((c) => [c.code, sha256(c.bytes)]),
  );

  // The store holds them in order; the API lists them newest first, bounded.
  const stored = await d.lifecycle.store.readStream(REJECTIONS_STREAM);
  assert.deepEqual(
    stored.map((e) => [e.type, (e.data as Rejection).code]),
    cases.map((c) => ["package_rejected_v1", c.code]),
  );
  const listed = await rejections();
  assert.deepEqual(
    listed.map((e) => e.code),
    cases.map((c) => c.code).reverse(),
  );
  assert.deepEqual(
    listed.map((e) => e.position),
    stored.map((e) => e.position).reverse(),
  );
  assert.equal((await rejections(2)).length, 2);
  for (const q of ["0", "501", "x", "1.5"]) {
    const r = await d.api("GET", `/admin/api/rejections?limit=${q}`);
    assert.equal(r.status, 400, `limit=${q}`);
    assert.equal((await r.json()).error.code, "invalid_query");
  }

  // No plugin was recorded, nothing changed outside the lifecycle store, no upload or staging left.
  assert.deepEqual((await (await d.api("GET", "/admin/api/plugins")).json()).plugins, []);
  const after = snapshot(d.home);
  const changed = Object.keys({ ...before, ...after }).filter(
    (k) => before[k] !== after[k] && !k.startsWith("lifecycle/"),
  );
  assert.deepEqual(changed, []);
  assert.deepEqual(leftovers(), []);
  assert.ok(!Object.keys(after).some((k) => k.endsWith("escaped.txt")), "an entry escaped");
});

test("a refused upgrade or re-install lands on the plugin's own stream; the running version keeps serving", async () => {
  const v1 = await buildPackage(d.work, { name: "keeper", version: "1.0.0" });
  const other = await buildPackage(d.work, { name: "someone-else", version: "1.0.0" });
  const gzh = { "content-type": "application/gzip" };
  assert.equal((await d.api("POST", "/admin/api/plugins", { body: readFileSync(v1), headers: gzh })).status, 201);

  const refusals: { label: string; path: string; bytes: Buffer; status: number; code: string; op: string }[] = [
    {
      label: "unreadable upgrade",
      path: "/admin/api/plugins/keeper/upgrade",
      bytes: Buffer.from("garbage"),
      status: 422,
      code: "not_gzip",
      op: "upgrade",
    },
    {
      label: "upgrade with another plugin's package",
      path: "/admin/api/plugins/keeper/upgrade",
      bytes: readFileSync(other),
      status: 422,
      code: "name_mismatch",
      op: "upgrade",
    },
    {
      label: "install over the installed plugin",
      path: "/admin/api/plugins",
      bytes: readFileSync(v1),
      status: 409,
      code: "plugin_already_installed",
      op: "install",
    },
  ];
  for (const c of refusals) {
    const r = await d.api("POST", c.path, { body: c.bytes, headers: gzh });
    const body = await r.json();
    assert.equal(r.status, c.status, `${c.label}: ${JSON.stringify(body)}`);
    assert.equal(body.error.code, c.code, c.label);

    const events = (await (await d.api("GET", "/admin/api/plugins/keeper/events")).json()).events as {
      type: string;
      data: Rejection;
    }[];
    const ev = events.at(-1)!;
    assert.equal(ev.type, "plugin_package_rejected_v1", c.label);
    assert.deepEqual(
      [ev.data.code, ev.data.op, ev.data.sha256, ev.data.bytes, ev.data.source],
      [c.code, c.op, sha256(c.bytes), c.bytes.length, "upload"],
      c.label,
    );
    const [last] = await rejections(1);
    assert.deepEqual([last?.code, last?.plugin, last?.sha256], [c.code, "keeper", sha256(c.bytes)], c.label);

    const view = await (await d.api("GET", "/admin/api/plugins/keeper")).json();
    assert.equal(view.status, "loaded", c.label);
    assert.equal(view.version, "1.0.0", c.label);
    assert.deepEqual([view.lastError?.stage, view.lastError?.code], ["package", c.code], c.label);
    const who = await fetch(`${d.url}/plugin/keeper/api/who`);
    assert.equal(
      ((await who.json()) as { version: string }).version,
      "1.0.0",
      `${c.label}: the running version stopped serving`,
    );
  }
  assert.equal((await d.api("GET", "/admin/api/plugins/someone-else")).status, 404);
  assert.deepEqual(leftovers(), []);
  assert.deepEqual(readdirSync(join(d.home, "plugins")).sort(), ["keeper"], "a refused package created a plugin dir");
});

test("a body refused for its size is recorded; the records survive a restart", async () => {
  const big = Buffer.alloc(MAX_UPLOAD + 1, 1);
  const r = await d.api("POST", "/admin/api/plugins", { body: big, headers: { "content-type": "application/gzip" } });
  assert.equal(r.status, 413);
  assert.equal((await r.json()).error.code, "body_too_large");
  const [last] = await rejections(1);
  assert.deepEqual([last?.code, last?.source, last?.bytes, last?.sha256], ["body_too_large", "upload", null, null]);
  assert.deepEqual(leftovers(), []);

  const before = await rejections(500);
  // Restart on the same home (the first daemon's work dir holds it: removed in after()).
  await d.close();
  firstWork = d.work;
  d = await startTestDaemon({ home: d.home, maxUploadBytes: MAX_UPLOAD });
  assert.deepEqual(await rejections(500), before);
  assert.equal((await d.api("GET", "/health")).status, 200);
});

/**
 * Security of the running daemon (real startDaemon, real HTTP, real packages):
 *  - every admin route refuses every wrong credential with 401 JSON, and a refused write changes nothing;
 *  - DNS rebinding: foreign / look-alike Host names and foreign Origins are refused with 403 even with the token;
 *  - hostile archives through the admin API: the specific PackageError code, nothing written outside the plugin
 *    dir, no staging or upload leftovers, a failure event (the plugin's plugin_extract_failed_v1 when it was recorded,
 *    else package_rejected_v1 with the upload's size and sha256 in /admin/api/rejections), the daemon serving;
 *  - concurrent installs of one name: exactly one wins, the rest get 409, one plugin_installed_v1;
 *  - files tampered after install: the next activate refuses to load them.
 */
import assert from "node:assert/strict";
import { appendFileSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { gz, manifestJson, type RawEntry, sha256, snapshot, tarOf, validEntries } from "@hecate/package/testing";
import { checkHistory } from "../../bench/crash-loop.js";
import { buildPackage, startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";
import { json, raw } from "../worker/helpers.js";

let d: TestDaemon;
/** The admin listener (its own port by default); plugins are served on `pluginPort`. */
let port: number;
let pluginPort: number;
let goodArchive: string;

before(async () => {
  d = await startTestDaemon();
  port = Number(new URL(d.adminUrl).port);
  pluginPort = Number(new URL(d.url).port);
  goodArchive = await buildPackage(d.work, { name: "legit", version: "1.0.0" });
});
after(() => d.stop());

const host = () => `127.0.0.1:${port}`;

function admin(method: string, path: string, headers: Record<string, string> = {}, body?: Buffer | string) {
  return raw(port, method, path, { headers: { host: host(), ...headers }, body });
}

async function pluginNames(): Promise<string[]> {
  const r = await admin("GET", "/admin/api/plugins", { authorization: `Bearer ${d.token}` });
  return (json(r).plugins as { name: string }[]).map((p) => p.name);
}

const ROUTES: [string, string][] = [
  ["GET", "/admin/api/plugins"],
  ["POST", "/admin/api/plugins"],
  ["GET", "/admin/api/plugins/legit"],
  ["DELETE", "/admin/api/plugins/legit?purge=1"],
  ["GET", "/admin/api/plugins/legit/events"],
  ["GET", "/admin/api/plugins/legit/logs"],
  ["POST", "/admin/api/plugins/legit/activate"],
  ["POST", "/admin/api/plugins/legit/deactivate"],
  ["POST", "/admin/api/plugins/legit/upgrade"],
  ["GET", "/admin/api/events"],
  ["GET", "/admin/api/openapi.json"],
  ["GET", "/admin/"],
];

test("every admin route answers 401 JSON to every wrong credential; refused writes change nothing", async () => {
  const t = d.token;
  const wrong: Record<string, string>[] = [
    {},
    { authorization: "Bearer " },
    { authorization: "Bearer wrong" },
    { authorization: `Bearer ${t.slice(0, -1)}` },
    { authorization: `Bearer ${t}x` },
    { authorization: `Bearer ${t.toUpperCase() === t ? t.toLowerCase() : t.toUpperCase()}` },
    { authorization: `Basic ${Buffer.from(`admin:${t}`).toString("base64")}` },
    { authorization: `Token ${t}` },
    { authorization: t },
    { cookie: "hecate_admin=wrong" },
    { cookie: `hecate_admin_x=${t}` },
    { cookie: `xhecate_admin=${t}` },
    { "x-admin-token": t },
  ];
  for (const [method, path] of ROUTES) {
    for (const headers of wrong) {
      const body = method === "POST" ? readFileSync(goodArchive) : undefined;
      const h = body ? { ...headers, "content-type": "application/gzip" } : headers;
      const r = await admin(method, path, h, body);
      assert.equal(r.status, 401, `${method} ${path} ${JSON.stringify(headers)} -> ${r.status} ${r.body}`);
      assert.equal(json(r).error.code, "unauthorized");
    }
    // The token in the query string is not a credential for the API (it would end up in logs and history).
    const q = path.includes("?") ? `${path}&token=${t}` : `${path}?token=${t}`;
    assert.equal((await admin(method, q)).status, 401, `${method} ${q}`);
  }
  assert.equal((await admin("GET", `/admin/login?token=${t}x`)).status, 401);
  assert.deepEqual(await pluginNames(), [], "a refused install left a plugin behind");
  assert.deepEqual(
    readdirSync(join(d.home, "run")).filter((f) => f.startsWith("incoming-")),
    [],
    "refused uploads left files",
  );
  // The right token works, and plugin routes and /health never need one.
  assert.equal((await admin("GET", "/admin/api/plugins", { authorization: `Bearer ${t}` })).status, 200);
  assert.equal((await admin("GET", "/health")).status, 200);
});

test("DNS rebinding: foreign or look-alike Host and foreign Origin -> 403, even with the token", async () => {
  const auth = { authorization: `Bearer ${d.token}` };
  const badHosts = [
    "evil.com",
    `evil.com:${port}`,
    "localhost.evil.com",
    `localhost.evil.com:${port}`,
    "127.0.0.1.nip.io",
    `127.0.0.1.nip.io:${port}`,
    `localhost@evil.com:${port}`,
    "127.0.0.2",
    "0.0.0.0",
    "[::1].evil.com",
    "localhost:80:80",
  ];
  for (const h of badHosts) {
    for (const [method, path] of [
      ["GET", "/admin/api/plugins"],
      ["GET", "/admin/"],
      ["GET", "/admin/api/events"],
    ]) {
      const r = await raw(port, method, path, { headers: { ...auth, host: h } });
      assert.ok(r.status === 403 || r.status === 400, `Host ${JSON.stringify(h)} ${path} -> ${r.status}`);
      if (r.status === 403) assert.equal(json(r).error.code, "forbidden_host");
    }
  }
  // Empty and missing Host need a raw socket (node:http fills in a default Host).
  for (const hostLine of ["Host: \r\n", ""]) {
    const out = await rawSocket(
      `GET /admin/api/plugins HTTP/1.1\r\n${hostLine}Authorization: Bearer ${d.token}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(out, /^HTTP\/1\.1 (400|403) /, `${JSON.stringify(hostLine)} -> ${out.slice(0, 40)}`);
  }
  for (const h of [`localhost:${port}`, `LOCALHOST:${port}`, host(), `[::1]:${port}`, "localhost"]) {
    const r = await raw(port, "GET", "/admin/api/plugins", { headers: { ...auth, host: h } });
    assert.equal(r.status, 200, `Host ${h} -> ${r.status}`);
  }
  const badOrigins = [
    "http://evil.com",
    "null",
    "http://127.0.0.1:1",
    `http://127.0.0.1:${port}.evil.com`,
    `http://evil.com#127.0.0.1:${port}`,
    `file://127.0.0.1:${port}`,
    `http://localhost:${port}`, // same machine, but another origin than the Host the request was sent to
    "",
  ];
  for (const origin of badOrigins) {
    const r = await admin("GET", "/admin/api/plugins", { ...auth, origin });
    assert.equal(r.status, 403, `Origin ${JSON.stringify(origin)} -> ${r.status}`);
    assert.equal(json(r).error.code, "forbidden_origin");
  }
  // CSRF: a cross-origin install with a valid cookie is refused and installs nothing.
  const csrf = await admin(
    "POST",
    "/admin/api/plugins",
    { cookie: `hecate_admin=${d.token}`, origin: "http://evil.com", "content-type": "application/gzip" },
    readFileSync(goodArchive),
  );
  assert.equal(csrf.status, 403);
  assert.deepEqual(await pluginNames(), []);
  for (const origin of [`http://${host()}`, `https://${host()}`]) {
    assert.equal((await admin("GET", "/admin/api/plugins", { ...auth, origin })).status, 200, origin);
  }
});

function rawSocket(request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let out = "";
    socket.on("data", (c) => {
      out += c.toString("latin1");
    });
    socket.on("end", () => resolve(out));
    socket.on("error", reject);
    socket.end(request);
  });
}

test("a malformed admin cookie is a 401, not a 500", async () => {
  const r = await admin("GET", "/admin/api/plugins", { cookie: "hecate_admin=%E0%A4%A" });
  assert.equal(r.status, 401, `${r.status} ${r.body}`);
});

interface Hostile {
  label: string;
  code: string;
  entries: RawEntry[];
  /** Raw archive bytes instead of tarOf(entries). */
  bytes?: Buffer;
}

test("hostile archives through the admin API: specific code, nothing outside, no leftovers, daemon up", async () => {
  const n = (label: string) => `hostile-${label}`;
  const bomb = Buffer.alloc(32 * 1024 * 1024); // 32 MiB of zeros: gzip ratio ~1000 > the 200 cap
  const cases: Hostile[] = [
    {
      label: "dotdot",
      code: "path_traversal",
      entries: [...validEntries(n("dotdot")), { name: "../escaped.txt", data: "x" }],
    },
    {
      label: "deep-dotdot",
      code: "path_traversal",
      entries: [...validEntries(n("deep-dotdot")), { name: "priv/../../../../escaped.txt", data: "x" }],
    },
    {
      label: "absolute",
      code: "absolute_path",
      entries: [...validEntries(n("absolute")), { name: "/tmp/escaped.txt", data: "x" }],
    },
    {
      label: "symlink",
      code: "link_entry",
      entries: [...validEntries(n("symlink")), { name: "priv/static/pw", type: "2", linkname: "/etc/passwd" }],
    },
    {
      label: "hardlink",
      code: "link_entry",
      entries: [...validEntries(n("hardlink")), { name: "priv/x", type: "1", linkname: "../../run/admin.token" }],
    },
    { label: "fifo", code: "special_file", entries: [...validEntries(n("fifo")), { name: "priv/fifo", type: "6" }] },
    {
      label: "setuid",
      code: "bad_mode",
      entries: [...validEntries(n("setuid")), { name: "priv/suid", data: "x", mode: 0o4755 }],
    },
    {
      label: "bomb",
      code: "compression_ratio",
      entries: [...validEntries(n("bomb")), { name: "priv/zeros.bin", data: bomb }],
    },
    {
      label: "dup",
      code: "duplicate_entry",
      entries: [...validEntries(n("dup")), { name: "dist/index.js", data: "export const evil = 1;" }],
    },
    {
      label: "digest",
      code: "digest_mismatch",
      entries: validEntries(n("digest")).map((e) =>
        e.name === "dist/index.js" ? { ...e, data: "export const backdoor = 1;\n" } : e,
      ),
    },
    { label: "no-manifest", code: "missing_manifest", entries: [{ name: "dist/index.js", data: "export {}" }] },
    {
      label: "bad-name",
      code: "invalid_manifest",
      entries: validEntries("x", {}, { manifest: manifestJson("../../etc") }),
    },
    {
      label: "truncated",
      code: "truncated",
      entries: [],
      bytes: gz(tarOf(validEntries(n("truncated")))).subarray(0, 200),
    },
  ];
  const canaryBefore = snapshot(d.home);
  const outcomes: Record<string, string> = {};
  for (const c of cases) {
    const bytes = c.bytes ?? gz(tarOf(c.entries));
    const t0 = performance.now();
    const r = await admin(
      "POST",
      "/admin/api/plugins",
      { authorization: `Bearer ${d.token}`, "content-type": "application/gzip" },
      bytes,
    );
    const ms = performance.now() - t0;
    assert.equal(r.status, 422, `${c.label}: ${r.status} ${r.body}`);
    assert.equal(json(r).error.code, c.code, `${c.label}: ${r.body}`);
    assert.ok(ms < 10_000, `${c.label} took ${ms} ms`);
    // Recorded (then failed with the code and an event) or refused before anything was recorded: never half.
    const name = n(c.label);
    const view = await admin("GET", `/admin/api/plugins/${name}`, { authorization: `Bearer ${d.token}` });
    if (view.status === 200) {
      assert.equal(json(view).status, "failed", c.label);
      assert.equal(json(view).lastError.code, c.code, c.label);
      const events = json(
        await admin("GET", `/admin/api/plugins/${name}/events`, { authorization: `Bearer ${d.token}` }),
      ).events as { type: string; data: { code?: string } }[];
      assert.ok(
        events.some((e) => e.type === "plugin_extract_failed_v1" && e.data.code === c.code),
        `${c.label}: no failure event`,
      );
      outcomes[c.label] = "recorded+failed";
    } else {
      assert.equal(view.status, 404, c.label);
      // Refused before its name was known: still an event, in the daemon's refusal stream.
      const [last] = json(
        await admin("GET", "/admin/api/rejections?limit=1", { authorization: `Bearer ${d.token}` }),
      ).rejections;
      assert.equal(last?.code, c.code, `${c.label}: no rejection event`);
      assert.equal(last.sha256, sha256(bytes), c.label);
      assert.equal(last.bytes, bytes.length, c.label);
      assert.deepEqual([last.source, last.op, last.plugin], ["upload", "install", null], c.label);
      outcomes[c.label] = "refused+rejection-event";
    }
    assert.equal((await admin("GET", "/health")).status, 200, `${c.label}: daemon down`);
  }
  // Nothing outside the plugins' own dirs changed; no staging dir, no upload left anywhere.
  const canaryAfter = snapshot(d.home);
  const outside = Object.keys({ ...canaryBefore, ...canaryAfter }).filter(
    (k) => canaryBefore[k] !== canaryAfter[k] && !k.startsWith("plugins/hostile-") && !k.startsWith("lifecycle/"),
  );
  assert.deepEqual(outside, [], `changed outside the hostile plugins' dirs: ${outside.join(", ")}`);
  assert.ok(!Object.keys(canaryAfter).some((k) => /(^|\/)\.staging-|(^|\/)\.old-|incoming-/.test(k)), "leftovers");
  assert.ok(!Object.keys(canaryAfter).some((k) => k.endsWith("escaped.txt")), "an entry escaped");
  console.log(`# hostile archives via the daemon: ${JSON.stringify(outcomes)}`);
});

test("concurrent installs of one name: exactly one wins, the others get 409, one installed event", async () => {
  const bytes = readFileSync(goodArchive);
  const results = await Promise.all(
    Array.from({ length: 6 }, () =>
      admin(
        "POST",
        "/admin/api/plugins",
        { authorization: `Bearer ${d.token}`, "content-type": "application/gzip" },
        bytes,
      ),
    ),
  );
  const statuses = results.map((r) => r.status).sort();
  assert.deepEqual(statuses, [201, 409, 409, 409, 409, 409], results.map((r) => r.body.toString()).join("\n"));
  for (const r of results.filter((x) => x.status === 409)) assert.equal(json(r).error.code, "plugin_already_installed");
  const events = json(await admin("GET", "/admin/api/plugins/legit/events", { authorization: `Bearer ${d.token}` }))
    .events as { type: string }[];
  assert.equal(events.filter((e) => e.type === "plugin_installed_v1").length, 1);
  assert.equal(events.filter((e) => e.type === "plugin_load_confirmed_v1").length, 1);
  assert.equal(json(await raw(pluginPort, "GET", "/plugin/legit/api/who")).version, "1.0.0");
  assert.deepEqual(
    readdirSync(join(d.home, "run")).filter((f) => f.startsWith("incoming-")),
    [],
    "the losers' uploads were not cleaned up",
  );
});

test("racing upgrades, deactivate and remove of one plugin end in one consistent state", async () => {
  const auth = { authorization: `Bearer ${d.token}` };
  const gzh = { ...auth, "content-type": "application/gzip" };
  const versions = ["2.0.0", "3.0.0", "4.0.0"];
  const archives = await Promise.all(versions.map((version) => buildPackage(d.work, { name: "racer", version })));
  const first = await buildPackage(d.work, { name: "racer", version: "1.0.0" });
  for (let round = 0; round < 3; round++) {
    assert.equal((await admin("POST", "/admin/api/plugins", gzh, readFileSync(first))).status, 201);
    const ops = [
      ...archives.map((a) => admin("POST", "/admin/api/plugins/racer/upgrade", gzh, readFileSync(a))),
      admin("POST", "/admin/api/plugins/racer/deactivate", auth),
      ...(round === 2 ? [admin("DELETE", "/admin/api/plugins/racer?purge=1", auth)] : []),
    ];
    const results = await Promise.all(ops);
    for (const r of results) assert.ok(r.status < 500, `a racing operation failed with ${r.status} ${r.body}`);
    const view = json(await admin("GET", "/admin/api/plugins/racer", auth));
    const who = await raw(port, "GET", "/plugin/racer/api/who");
    if (view.status === "loaded") assert.equal(json(who).version, view.version, "API and view disagree");
    else assert.ok([404, 503].includes(who.status), `${view.status} but its API answers ${who.status}`); // 503: installed, not loaded
    const events = json(await admin("GET", "/admin/api/plugins/racer/events", auth)).events as {
      type: string;
      revision: number;
      data: unknown;
    }[];
    const history = checkHistory(
      events.map((e) => ({ stream: "plugin-racer", revision: e.revision, type: e.type, data: JSON.stringify(e.data) })),
    );
    assert.deepEqual(history, [], `round ${round}`);
    await admin("DELETE", "/admin/api/plugins/racer?purge=1", auth);
  }
  assert.equal((await admin("GET", "/health")).status, 200);
});

test("files tampered after install: the next activate refuses to load them", async () => {
  const auth = { authorization: `Bearer ${d.token}` };
  const pkg = join(d.home, "plugins", "legit", "package");
  const tamperings: [string, () => void][] = [
    ["modified code", () => appendFileSync(join(pkg, "dist", "index.js"), "\nexport const backdoor = 1;\n")],
    ["unlisted file", () => writeFileSync(join(pkg, "dist", "extra.js"), "export const x = 1;\n")],
    ["modified static", () => appendFileSync(join(pkg, "priv", "static", "index.html"), "<script>evil()</script>")],
    ["modified manifest", () => writeFileSync(join(pkg, "manifest.json"), manifestJson("legit", { version: "9.9.9" }))],
  ];
  for (const [label, tamper] of tamperings) {
    // Fresh copy of the legit package for each case.
    await admin("DELETE", "/admin/api/plugins/legit?purge=1", auth);
    const inst = await admin(
      "POST",
      "/admin/api/plugins",
      { ...auth, "content-type": "application/gzip" },
      readFileSync(goodArchive),
    );
    assert.equal(inst.status, 201, `${label}: ${inst.body}`);
    assert.equal((await admin("POST", "/admin/api/plugins/legit/deactivate", auth)).status, 200);
    tamper();
    const act = await admin("POST", "/admin/api/plugins/legit/activate", auth);
    assert.ok(act.status >= 400, `${label}: activate -> ${act.status} ${act.body}`);
    const view = json(await admin("GET", "/admin/api/plugins/legit", auth));
    assert.notEqual(view.status, "loaded", label);
    const why = `${view.lastError?.code} ${view.lastError?.message}`;
    assert.match(why, /digest|unlisted/i, `${label}: ${why}`);
    assert.equal((await raw(pluginPort, "GET", "/plugin/legit/api/who")).status, 503, `${label}: tampered code serves`);
  }
  assert.equal((await admin("GET", "/health")).status, 200);
});

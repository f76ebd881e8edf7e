/**
 * The daemon as a child process (main.js): kill -9 at each step boundary of an install (test hook
 * HECATE_TEST_CRASH_AFTER=<event type> makes it SIGKILL itself right after appending that event) and in the middle
 * of an extraction, restart, and check: the plugin ends LOADED, no event twice, no staging dirs, the store passes
 * PRAGMA integrity_check. Also: a plugin failing at boot is marked failed while the daemon serves the others, and
 * SIGTERM drains in-flight requests, runs the plugin's terminate() and exits 0.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { pluginPaths } from "@hecate/sdk";
import Database from "better-sqlite3";
import { buildPackage, type ChildDaemon, spawnDaemon, unixRequest, until } from "./helpers.js";

let work: string;
let pkgV1: string;
const children: ChildDaemon[] = [];

before(async () => {
  work = mkdtempSync(join(tmpdir(), "hecate-rec-"));
  pkgV1 = await buildPackage(work, { name: "sturdy", version: "1.0.0" });
});
after(() => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});

function start(home: string, env: Record<string, string> = {}): ChildDaemon {
  const c = spawnDaemon(home, env);
  children.push(c);
  return c;
}

async function view(c: ChildDaemon, name: string) {
  const r = await unixRequest(c.socketPath, "GET", `/admin/api/plugins/${name}`);
  return r.status === 200 ? r.json() : null;
}

async function stopGracefully(c: ChildDaemon): Promise<void> {
  c.child.kill("SIGTERM");
  const { code } = await c.exited;
  assert.equal(code, 0, c.output());
}

function checkStore(home: string): void {
  const db = new Database(join(home, "lifecycle", "plugins.sqlite"), { readonly: true });
  try {
    assert.equal(db.pragma("integrity_check", { simple: true }), "ok");
  } finally {
    db.close();
  }
}

function typesOf(events: { type: string }[]): Record<string, number> {
  const n: Record<string, number> = {};
  for (const e of events) n[e.type] = (n[e.type] ?? 0) + 1;
  return n;
}

/** After recovery: LOADED, answering, each step exactly once, no staging leftovers, store intact. */
async function assertRecovered(home: string, name: string): Promise<void> {
  const c = start(home);
  const url = await c.url;
  const v = await until(
    async () => {
      const x = await view(c, name);
      return x && (x.status === "loaded" || x.status === "failed") ? x : null;
    },
    30_000,
    `${name} loaded`,
  );
  assert.equal(v.status, "loaded", JSON.stringify(v));
  assert.equal((await unixRequest(c.socketPath, "GET", "/ready")).status, 200);
  const who = await fetch(`${url}/plugin/${name}/api/who`);
  assert.equal(who.status, 200);
  const events = (await unixRequest(c.socketPath, "GET", `/admin/api/plugins/${name}/events`)).json().events;
  assert.deepEqual(typesOf(events), {
    plugin_installed_v1: 1,
    plugin_package_extracted_v1: 1,
    plugin_activated_v1: 1,
    plugin_load_confirmed_v1: 1,
  });
  const root = pluginPaths(home, name).root;
  assert.deepEqual(
    readdirSync(root).filter((f) => f.startsWith(".staging-") || f.startsWith(".old-")),
    [],
  );
  assert.deepEqual(
    readdirSync(join(home, "run")).filter((f) => f.startsWith("incoming-")),
    [],
  );
  await stopGracefully(c);
  checkStore(home);
}

for (const crashAfter of [
  "plugin_installed_v1",
  "plugin_package_extracted_v1",
  "plugin_activated_v1",
  "plugin_load_confirmed_v1",
]) {
  test(`kill -9 right after ${crashAfter}: restart finishes the install exactly once`, async () => {
    const home = mkdtempSync(join(work, "home-"));
    const t0 = performance.now();
    const c = start(home, { HECATE_TEST_CRASH_AFTER: crashAfter });
    await c.url;
    // The request dies with the daemon when the crash point is inside it.
    await unixRequest(c.socketPath, "POST", "/admin/api/plugins?wait=none", readFileSync(pkgV1), {
      "content-type": "application/gzip",
    }).catch(() => null);
    const { signal } = await c.exited;
    assert.equal(signal, "SIGKILL", c.output());
    await assertRecovered(home, "sturdy");
    console.log(`crash after ${crashAfter}: recovered in ${(performance.now() - t0).toFixed(0)} ms total`);
  });
}

test("kill -9 in the middle of an extraction: restart cleans the staging dir and finishes", async () => {
  const files: Record<string, string> = {};
  for (let i = 0; i < 3000; i++) files[`priv/static/f/${i}.txt`] = `file ${i} `.repeat(50);
  const big = await buildPackage(work, { name: "bulky", version: "1.0.0", files });
  const home = mkdtempSync(join(work, "home-"));
  const c = start(home);
  await c.url;
  const root = pluginPaths(home, "bulky").root;
  const posted = unixRequest(c.socketPath, "POST", "/admin/api/plugins?wait=none", readFileSync(big), {
    "content-type": "application/gzip",
  }).catch(() => null);
  // Watch from outside the process: kill it the moment a staging dir exists.
  await until(
    () => existsSync(root) && readdirSync(root).some((f) => f.startsWith(".staging-")),
    30_000,
    "staging dir",
  );
  c.child.kill("SIGKILL");
  await c.exited;
  await posted;
  assert.ok(
    readdirSync(root).some((f) => f.startsWith(".staging-")),
    "killed mid-extraction (staging dir left behind)",
  );
  assert.equal(existsSync(pluginPaths(home, "bulky").package), false);
  await assertRecovered(home, "bulky");
});

test("a plugin failing at boot is marked failed; the daemon and the other plugins stay up", async () => {
  const home = mkdtempSync(join(work, "home-"));
  const fragile = await buildPackage(work, { name: "fragile", version: "1.0.0" });
  let c = start(home);
  await c.url;
  for (const p of [pkgV1, fragile]) {
    const r = await unixRequest(c.socketPath, "POST", "/admin/api/plugins", readFileSync(p), {
      "content-type": "application/gzip",
    });
    assert.equal(r.status, 201, r.body);
  }
  await stopGracefully(c);
  // Tampered on disk while the daemon was down: the load-time digest check refuses it.
  writeFileSync(join(pluginPaths(home, "fragile").code, "index.js"), "export function manifest() {}\n");
  c = start(home);
  const url = await c.url;
  assert.equal((await unixRequest(c.socketPath, "GET", "/ready")).status, 200);
  const v = await view(c, "fragile");
  assert.equal(v.status, "failed");
  assert.equal(v.lastError.stage, "verify");
  assert.match(v.lastError.message, /digest|mismatch|index\.js/i);
  assert.equal((await fetch(`${url}/plugin/sturdy/api/who`)).status, 200);
  assert.equal((await fetch(`${url}/plugin/fragile/api/who`)).status, 503); // failed: plugin_not_active
  assert.equal((await fetch(`${url}/health`)).status, 200);
  await stopGracefully(c);
  checkStore(home);
});

test("SIGTERM: in-flight request completes, terminate() runs, socket and pid file removed, exit 0", async () => {
  const home = mkdtempSync(join(work, "home-"));
  const slow = await buildPackage(work, {
    name: "slowpoke",
    version: "1.0.0",
    extra: `import { getConfig } from "@hecate/sdk";
export function terminate() { writeFileSync(join(getConfig().dataDir, "terminated.txt"), "bye"); }`,
    routes: `{ method: "GET", path: "/slow", handler: async () => {
      writeFileSync(join(getConfig().dataDir, "slow-started.txt"), "1");
      await new Promise((r) => setTimeout(r, 400));
      return { done: true };
    } },`,
  });
  const c = start(home);
  const url = await c.url;
  const r = await unixRequest(c.socketPath, "POST", "/admin/api/plugins", readFileSync(slow), {
    "content-type": "application/gzip",
  });
  assert.equal(r.status, 201, r.body);
  const data = pluginPaths(home, "slowpoke").data;
  const inflight = fetch(`${url}/plugin/slowpoke/api/slow`);
  await until(() => existsSync(join(data, "slow-started.txt")), 10_000, "request in the plugin");
  c.child.kill("SIGTERM");
  const res = await inflight;
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { done: true });
  const { code } = await c.exited;
  assert.equal(code, 0, c.output());
  assert.ok(existsSync(join(data, "terminated.txt")), "terminate() ran");
  assert.equal(existsSync(join(home, "run", "hecate.sock")), false);
  assert.equal(existsSync(join(home, "run", "hecate.pid")), false);
  checkStore(home);
  // Next start: still ACTIVATED, loaded again without a new lifecycle event.
  const again = start(home);
  await again.url;
  const v = await until(async () => (await view(again, "slowpoke"))?.status === "loaded", 20_000, "reload");
  assert.ok(v);
  const events = (await unixRequest(again.socketPath, "GET", "/admin/api/plugins/slowpoke/events")).json().events;
  assert.equal(events.length, 4);
  await stopGracefully(again);
});

test("kill -9 right after plugin_upgraded_v1: restart extracts and loads the new version once", async () => {
  const home = mkdtempSync(join(work, "home-"));
  const v2 = await buildPackage(work, { name: "sturdy", version: "2.0.0" });
  let c = start(home);
  await c.url;
  const r = await unixRequest(c.socketPath, "POST", "/admin/api/plugins", readFileSync(pkgV1), {
    "content-type": "application/gzip",
  });
  assert.equal(r.status, 201, r.body);
  await stopGracefully(c);
  c = start(home, { HECATE_TEST_CRASH_AFTER: "plugin_upgraded_v1" });
  await c.url;
  await unixRequest(c.socketPath, "POST", "/admin/api/plugins/sturdy/upgrade", readFileSync(v2), {
    "content-type": "application/gzip",
  }).catch(() => null);
  assert.equal((await c.exited).signal, "SIGKILL", c.output());
  c = start(home);
  const url = await c.url;
  const v = await view(c, "sturdy");
  assert.equal(v.status, "loaded", JSON.stringify(v));
  assert.equal(v.version, "2.0.0");
  assert.deepEqual(await (await fetch(`${url}/plugin/sturdy/api/who`)).json(), { name: "sturdy", version: "2.0.0" });
  const events = (await unixRequest(c.socketPath, "GET", "/admin/api/plugins/sturdy/events")).json().events;
  assert.deepEqual(typesOf(events), {
    plugin_installed_v1: 1,
    plugin_package_extracted_v1: 2,
    plugin_activated_v1: 1,
    plugin_load_confirmed_v1: 2,
    plugin_upgraded_v1: 1,
  });
  await stopGracefully(c);
  checkStore(home);
});

test("kill -9 right after plugin_deactivated_v1 / plugin_removed_v1: restart finishes unload / file removal", async () => {
  const home = mkdtempSync(join(work, "home-"));
  let c = start(home);
  await c.url;
  const r = await unixRequest(c.socketPath, "POST", "/admin/api/plugins", readFileSync(pkgV1), {
    "content-type": "application/gzip",
  });
  assert.equal(r.status, 201, r.body);
  await stopGracefully(c);

  c = start(home, { HECATE_TEST_CRASH_AFTER: "plugin_deactivated_v1" });
  await c.url;
  await unixRequest(c.socketPath, "POST", "/admin/api/plugins/sturdy/deactivate").catch(() => null);
  assert.equal((await c.exited).signal, "SIGKILL", c.output());
  c = start(home);
  let url = await c.url;
  assert.equal((await view(c, "sturdy")).status, "deactivated");
  assert.equal((await fetch(`${url}/plugin/sturdy/api/who`)).status, 503, "not loaded again at boot");
  let events = (await unixRequest(c.socketPath, "GET", "/admin/api/plugins/sturdy/events")).json().events;
  assert.equal(typesOf(events).plugin_unload_confirmed_v1, 1, "the interrupted step finished");
  await stopGracefully(c);

  c = start(home, { HECATE_TEST_CRASH_AFTER: "plugin_removed_v1" });
  await c.url;
  await unixRequest(c.socketPath, "DELETE", "/admin/api/plugins/sturdy?purge=1").catch(() => null);
  assert.equal((await c.exited).signal, "SIGKILL", c.output());
  c = start(home);
  url = await c.url;
  assert.equal((await view(c, "sturdy")).status, "removed");
  assert.equal(existsSync(pluginPaths(home, "sturdy").root), false, "purged after the restart");
  events = (await unixRequest(c.socketPath, "GET", "/admin/api/plugins/sturdy/events")).json().events;
  assert.equal(typesOf(events).plugin_removed_v1, 1);
  await stopGracefully(c);
  checkStore(home);
});

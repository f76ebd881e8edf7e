/**
 * Plugin settings through the admin API of a real daemon (child process, Unix socket): schema validation (400 with
 * field errors, nothing stored), plugin_settings_changed_v1, secrets (never in an API answer, an SSE event, a log
 * line or in clear in any file under $HECATE_HOME), live apply through onSettingsChanged, swap without it (no failed
 * request meanwhile), kill -9 and upgrades (kept; refused when they no longer fit; --reset-settings).
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { buildPackage, type ChildDaemon, spawnDaemon, type UnixResponse, unixRequest } from "../lifecycle/helpers.js";
import { filesHolding, settingsPlugin as plugin } from "./settings-plugin.js";

const work = mkdtempSync(join(tmpdir(), "hecate-settings-"));
const home = join(work, "home");
const children: ChildDaemon[] = [];
const SECRET = `sk-${randomBytes(12).toString("hex")}`;
const sha = (s: string) => createHash("sha256").update(s).digest("hex");
/** Every admin API answer and SSE stream the test saw: the secret must be in none. */
const seen: string[] = [];
const streams: { text: string }[] = [];

after(() => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});

async function start(): Promise<{ c: ChildDaemon; url: string; sse: { text: string; close(): void } }> {
  const c = spawnDaemon(home, { HECATE_LOG_LEVEL: "trace" });
  children.push(c);
  const url = await c.url;
  return { c, url, sse: openSse(c.socketPath) };
}

/** Follows /admin/api/events over the socket, keeping every byte. */
function openSse(socketPath: string): { text: string; close(): void } {
  const s = { text: "", close: () => {} };
  const req = request({ socketPath, path: "/admin/api/events", headers: { host: "localhost" } }, (res) => {
    res.on("data", (b: Buffer) => {
      s.text += b.toString("utf8");
    });
    res.on("error", () => {});
  });
  req.on("error", () => {});
  req.end();
  s.close = () => req.destroy();
  streams.push(s);
  return s;
}

async function api(c: ChildDaemon, method: string, path: string, body?: unknown, query = ""): Promise<UnixResponse> {
  const isPkg = Buffer.isBuffer(body);
  const r = await unixRequest(
    c.socketPath,
    method,
    path + query,
    body === undefined ? undefined : isPkg ? body : JSON.stringify(body),
    body === undefined ? {} : { "content-type": isPkg ? "application/gzip" : "application/json" },
  );
  seen.push(r.body);
  return r;
}

// biome-ignore lint/suspicious/noExplicitAny: the test plugin's JSON, asserted field by field
async function pluginView(url: string): Promise<any> {
  const r = await fetch(`${url}/plugin/cfg/api/settings`);
  assert.equal(r.status, 200);
  return r.json();
}

/** Requests to the plugin while `during` runs: every one must be answered 200. */
async function underLoad<T>(url: string, during: () => Promise<T>): Promise<{ result: T; ok: number; failed: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  let stop = false;
  let ok = 0;
  let failed = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const req = request(`${url}/plugin/cfg/api/who`, { agent }, (res) => {
        res.resume();
        res.on("end", () => {
          if (res.statusCode === 200) ok++;
          else failed++;
          resolve();
        });
      });
      req.on("error", () => {
        failed++;
        resolve();
      });
      req.end();
    });
  const lanes = Array.from({ length: 4 }, async () => {
    while (!stop) await one();
  });
  try {
    const result = await during();
    return { result, ok, failed };
  } finally {
    stop = true;
    await Promise.all(lanes);
    agent.destroy();
  }
}

test("settings: validation, secrets, live apply, swap, kill -9, upgrades", async () => {
  let { c, url, sse } = await start();
  const v1 = await buildPackage(work, plugin("1.0.0", { callback: true }));
  const inst = await api(c, "POST", "/admin/api/plugins", readFileSync(v1));
  assert.equal(inst.status, 201, inst.body);

  // defaults: nothing set, the secret field listed as not set, the plugin got the schema's default
  const empty = await api(c, "GET", "/admin/api/plugins/cfg/settings");
  assert.equal(empty.status, 200, empty.body);
  assert.deepEqual(empty.json().values, {});
  assert.deepEqual(empty.json().secrets, { apiKey: { set: false } });
  assert.equal(empty.json().schema.properties.limit.maximum, 1000);
  const first = await pluginView(url);
  assert.deepEqual(first.init, { greeting: "hi", apiKey: null });

  // a bad PUT: 400 with every field's error, nothing stored, no event
  const eventsBefore = (await api(c, "GET", "/admin/api/plugins/cfg/events")).json().events.length;
  const bad = await api(c, "PUT", "/admin/api/plugins/cfg/settings", {
    values: { limit: 0, mode: "slow", bogus: 1, verbose: "yes", apiKey: "short" },
  });
  assert.equal(bad.status, 400, bad.body);
  assert.equal(bad.json().error.code, "invalid_settings");
  const fields = bad
    .json()
    .error.details.map((d: { field: string }) => d.field)
    .sort();
  assert.deepEqual(fields, ["apiKey", "bogus", "limit", "mode", "verbose"]);
  for (const d of bad.json().error.details) assert.equal(typeof d.message, "string");
  assert.doesNotMatch(bad.body, /short/, "an error never quotes the value");
  assert.equal((await api(c, "GET", "/admin/api/plugins/cfg/events")).json().events.length, eventsBefore);
  assert.deepEqual((await api(c, "GET", "/admin/api/plugins/cfg/settings")).json().values, {});
  const shape = await api(c, "PUT", "/admin/api/plugins/cfg/settings", { values: [1], extra: true });
  assert.equal(shape.status, 400);
  assert.deepEqual(
    shape
      .json()
      .error.details.map((d: { field: string }) => d.field)
      .sort(),
    ["extra", "values"],
  );
  const notJson = await unixRequest(c.socketPath, "PUT", "/admin/api/plugins/cfg/settings", "limit=5", {
    "content-type": "text/plain",
  });
  assert.equal(notJson.status, 415);
  assert.equal((await api(c, "PUT", "/admin/api/plugins/nope/settings", { values: {} })).status, 404);

  // a good PUT: applied live through onSettingsChanged (same instance), the secret never answered
  const t0 = performance.now();
  const put = await api(c, "PUT", "/admin/api/plugins/cfg/settings", {
    values: { limit: 5, mode: "safe", verbose: true, apiKey: SECRET },
  });
  const liveMs = performance.now() - t0;
  assert.equal(put.status, 200, put.body);
  assert.equal(put.json().applied, "live");
  assert.deepEqual(put.json().values, { limit: 5, mode: "safe", verbose: true });
  assert.deepEqual(put.json().secrets, { apiKey: { set: true } });
  const live = await pluginView(url);
  assert.equal(live.instance, first.instance, "applied live, not swapped");
  assert.equal(live.changes, 1);
  assert.deepEqual(live.now, { greeting: "hi", limit: 5, mode: "safe", verbose: true, apiKey: sha(SECRET) });
  const events = (await api(c, "GET", "/admin/api/plugins/cfg/events")).json().events;
  const changed = events.filter((e: { type: string }) => e.type === "plugin_settings_changed_v1");
  assert.equal(changed.length, 1);
  assert.deepEqual(changed[0].data.changed.sort(), ["apiKey", "limit", "mode", "verbose"]);
  assert.match(changed[0].data.values.apiKey.$enc, /^v1\./, "stored encrypted");

  // unset one field (keeps the secret)
  const unset = await api(c, "PUT", "/admin/api/plugins/cfg/settings", { unset: ["mode"] });
  assert.equal(unset.status, 200, unset.body);
  assert.deepEqual(unset.json().values, { limit: 5, verbose: true });
  assert.equal((await pluginView(url)).now.apiKey, sha(SECRET));

  // kill -9: the settings come back in the plugin's init config
  c.child.kill("SIGKILL");
  await c.exited;
  sse.close();
  const secretLogs = [c.output()];
  ({ c, url, sse } = await start());
  const afterKill = await pluginView(url);
  assert.notEqual(afterKill.instance, first.instance);
  assert.deepEqual(afterKill.init, { greeting: "hi", limit: 5, verbose: true, apiKey: sha(SECRET) });

  // upgrade to a version without the callback: settings kept; a change then swaps it with zero downtime
  const v2 = await buildPackage(work, plugin("2.0.0", { callback: false }));
  const up2 = await api(c, "POST", "/admin/api/plugins/cfg/upgrade", readFileSync(v2));
  assert.equal(up2.status, 200, up2.body);
  const onV2 = await pluginView(url);
  assert.deepEqual(onV2.init, { greeting: "hi", limit: 5, verbose: true, apiKey: sha(SECRET) });
  const t1 = performance.now();
  const swap = await underLoad(url, () => api(c, "PUT", "/admin/api/plugins/cfg/settings", { values: { limit: 7 } }));
  const swapMs = performance.now() - t1;
  assert.equal(swap.result.status, 200, swap.result.body);
  assert.equal(swap.result.json().applied, "swap");
  assert.equal(swap.failed, 0, "no request failed during the swap");
  assert.ok(swap.ok > 0);
  const swapped = await pluginView(url);
  assert.notEqual(swapped.instance, onV2.instance, "swapped: a new instance");
  assert.deepEqual(swapped.init, { greeting: "hi", limit: 7, verbose: true, apiKey: sha(SECRET) });

  // an upgrade whose schema the settings no longer fit (limit <= 3) is refused with the field list
  const v3 = await buildPackage(work, plugin("3.0.0", { callback: true, maxLimit: 3 }));
  const refused = await api(c, "POST", "/admin/api/plugins/cfg/upgrade", readFileSync(v3));
  assert.equal(refused.status, 422, refused.body);
  assert.equal(refused.json().error.code, "settings_incompatible");
  assert.deepEqual(
    refused.json().error.details.map((d: { field: string }) => d.field),
    ["limit"],
  );
  assert.equal((await api(c, "GET", "/admin/api/plugins/cfg")).json().version, "2.0.0");
  assert.equal((await pluginView(url)).instance, swapped.instance, "the running version is untouched");
  // ... unless asked to reset them
  const reset = await api(c, "POST", "/admin/api/plugins/cfg/upgrade", readFileSync(v3), "?reset_settings=1");
  assert.equal(reset.status, 200, reset.body);
  assert.equal(reset.json().version, "3.0.0");
  const cleared = await api(c, "GET", "/admin/api/plugins/cfg/settings");
  assert.deepEqual(cleared.json().values, {});
  assert.deepEqual(cleared.json().secrets, { apiKey: { set: false } });
  assert.deepEqual((await pluginView(url)).init, { greeting: "hi", apiKey: null });
  const resetEvent = (await api(c, "GET", "/admin/api/plugins/cfg/events"))
    .json()
    .events.filter((e: { type: string }) => e.type === "plugin_settings_changed_v1")
    .at(-1);
  assert.equal(resetEvent.data.reset, true);

  // the secret again, then look everywhere for it
  assert.equal((await api(c, "PUT", "/admin/api/plugins/cfg/settings", { values: { apiKey: SECRET } })).status, 200);
  assert.equal((await pluginView(url)).now.apiKey, sha(SECRET));
  await api(c, "GET", "/admin/api/plugins/cfg");
  await api(c, "GET", "/admin/api/plugins");
  await api(c, "GET", "/admin/api/plugins/cfg/logs?tail=1000");
  await new Promise((r) => setTimeout(r, 200)); // the last SSE events on the wire
  c.child.kill("SIGTERM");
  await c.exited;
  sse.close();
  secretLogs.push(c.output());

  const logs = secretLogs.join("\n");
  assert.match(logs, /settings changed/, "the daemon's log was captured (trace level)");
  assert.ok(!logs.includes(SECRET), "the secret is in no log line");
  const sseText = streams.map((x) => x.text).join("");
  assert.equal(sseText.match(/"type":"plugin_settings_changed_v1"/g)?.length, 5, "every change went out on SSE");
  assert.ok(!sseText.includes(SECRET), "the secret is in no SSE event");
  assert.ok(!seen.some((b) => b.includes(SECRET)), "the secret is in no admin API answer");
  const grep = filesHolding(home, SECRET);
  assert.ok(grep.files > 5);
  // the grep does read the store's content: the event's type is found in the lifecycle SQLite files
  assert.ok(filesHolding(home, "plugin_settings_changed_v1").leaks.some((f) => /plugins\.sqlite/.test(f)));
  assert.deepEqual(grep.leaks, [], "the secret is in clear in no file under $HECATE_HOME (SQLite files included)");
  assert.equal(statSync(join(home, "settings.key")).mode & 0o777, 0o600);
  console.log(
    `settings: live apply ${liveMs.toFixed(0)} ms, swap apply ${swapMs.toFixed(0)} ms (${swap.ok} requests during it, 0 failed), ${grep.files} files grepped`,
  );
});

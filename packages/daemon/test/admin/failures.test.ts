/**
 * Failures are lifecycle events the user can see (view.lastError, /events, 422 answers): a bad archive, a load
 * failure, a crash and a disable reported by WorkerPlugins. The daemon keeps serving throughout.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { generateSigningKeyPair, packPlugin } from "@hecate/package";
import { create as tarCreate } from "tar";
import { buildPackage, getJson, startTestDaemon, type TestDaemon, writePluginDir } from "../lifecycle/helpers.js";

let d: TestDaemon;

before(async () => {
  // No restart budget: the first crash restarts, the second disables (fast and deterministic).
  d = await startTestDaemon({ runtime: { restartBudget: { maxRestarts: 1, windowMs: 60_000 } } });
});
after(async () => {
  await d.stop();
});

const gz = { "content-type": "application/gzip" };

async function events(name: string): Promise<{ type: string; data: Record<string, unknown> }[]> {
  return (await (await d.api("GET", `/admin/api/plugins/${name}/events`)).json()).events;
}

test("a package whose files do not match their digests: 422 with the PackageError code, event + lastError", async () => {
  const src = writePluginDir(mkdtempSync(join(d.work, "tampered-")), { name: "tampered", version: "1.0.0" });
  await packPlugin(src, join(d.work, "ignored.tar.gz")); // writes hecate-files.json
  writeFileSync(join(src, "dist/index.js"), "export const evil = 1;\n"); // changed after the digests were taken
  const archive = join(d.work, "tampered.tar.gz");
  await tarCreate({ gzip: true, cwd: src, file: archive, portable: true }, [
    "manifest.json",
    "hecate-files.json",
    "dist",
    "priv",
  ]);
  const r = await d.api("POST", "/admin/api/plugins", { body: readFileSync(archive), headers: gz });
  const body = await r.json();
  assert.equal(r.status, 422, JSON.stringify(body));
  assert.equal(body.error.code, "digest_mismatch");
  assert.equal(body.error.details.stage, "extract");
  const view = await (await d.api("GET", "/admin/api/plugins/tampered")).json();
  assert.equal(view.status, "failed");
  assert.equal(view.lastError.stage, "extract");
  assert.equal(view.lastError.code, "digest_mismatch");
  const failed = (await events("tampered")).find((e) => e.type === "plugin_extract_failed_v1");
  assert.equal(failed?.data.code, "digest_mismatch");
  assert.equal((await fetch(`${d.url}/plugin/tampered/api/who`)).status, 503); // failed: plugin_not_active
  // A good package fixes it through upgrade.
  const good = await buildPackage(d.work, { name: "tampered", version: "1.0.1" });
  const up = await d.api("POST", "/admin/api/plugins/tampered/upgrade", { body: readFileSync(good), headers: gz });
  assert.equal(up.status, 200, await up.clone().text());
  assert.equal((await up.json()).status, "loaded");
  await d.api("DELETE", "/admin/api/plugins/tampered?purge=1");
});

test("not a gzip at all: 422 not_gzip, no plugin recorded, only the refusal, no leftovers", async () => {
  const before = await d.lifecycle.store.headPosition();
  const r = await d.api("POST", "/admin/api/plugins", { body: Buffer.from("hello, not a tarball"), headers: gz });
  const body = await r.json();
  assert.equal(r.status, 422, JSON.stringify(body));
  assert.equal(body.error.code, "not_gzip");
  // The one event appended is the daemon-level refusal (the plugin's name was never known).
  const appended = await d.lifecycle.store.readAll({ afterPosition: before });
  assert.deepEqual(
    appended.map((e) => [e.stream, e.type]),
    [["package-rejections", "package_rejected_v1"]],
  );
  assert.deepEqual(
    appended.map((e) => (e.data as { code: string }).code),
    ["not_gzip"],
  );
  assert.deepEqual(
    readdirSync(join(d.home, "run")).filter((f) => f.startsWith("incoming-")),
    [],
    "the upload is deleted",
  );
});

test("a plugin whose init throws: 422 load_failed with stage init, lastError, daemon fine", async () => {
  const archive = await buildPackage(d.work, {
    name: "badinit",
    version: "1.0.0",
    init: `throw new Error("database unreachable");`,
  });
  const r = await d.api("POST", "/admin/api/plugins", { body: readFileSync(archive), headers: gz });
  const body = await r.json();
  assert.equal(r.status, 422);
  assert.equal(body.error.code, "load_failed");
  assert.equal(body.error.details.stage, "init");
  assert.match(body.error.message, /database unreachable/);
  const view = await (await d.api("GET", "/admin/api/plugins/badinit")).json();
  assert.equal(view.status, "failed");
  assert.deepEqual([view.lastError.stage, view.lastError.code], ["init", "load_failed"]);
  const ev = (await events("badinit")).find((e) => e.type === "plugin_load_failed_v1");
  assert.equal(ev?.data.stage, "init");
  assert.equal((await fetch(`${d.url}/health`)).status, 200);
  await d.api("DELETE", "/admin/api/plugins/badinit?purge=1");
});

test("runtime crash and disable become plugin_crashed_v1 / plugin_disabled_v1", async () => {
  const archive = await buildPackage(d.work, {
    name: "crashy",
    version: "1.0.0",
    routes: `{ method: "POST", path: "/die", handler: () => { setTimeout(() => process.exit(3), 1); return { bye: true }; } },`,
  });
  assert.equal((await d.api("POST", "/admin/api/plugins", { body: readFileSync(archive), headers: gz })).status, 201);
  const waitFor = (type: string, after: number) =>
    d.lifecycle.waitFor("crashy", after, [type as "plugin_crashed_v1"], 10_000);
  const pos0 = await d.lifecycle.store.headPosition();
  const restarted = new Promise((resolve) => d.hosts.once("restarted", resolve));
  await fetch(`${d.url}/plugin/crashy/api/die`, { method: "POST" });
  const crashed = await waitFor("plugin_crashed_v1", pos0);
  assert.match(String((crashed.data as { reason: string }).reason), /exit|3/);
  // Restarted once within the budget: it answers again.
  await restarted;
  assert.equal((await fetch(`${d.url}/plugin/crashy/api/who`)).status, 200);
  const pos1 = await d.lifecycle.store.headPosition();
  await fetch(`${d.url}/plugin/crashy/api/die`, { method: "POST" });
  const disabled = await waitFor("plugin_disabled_v1", pos1);
  assert.ok(disabled);
  const view = await (await d.api("GET", "/admin/api/plugins/crashy")).json();
  assert.equal(view.status, "failed");
  assert.equal(view.lastError.code, "disabled");
  assert.ok(view.restarts >= 2);
  assert.equal((await fetch(`${d.url}/plugin/crashy/api/who`)).status, 503);
  // activate retries a failed plugin
  const again = await d.api("POST", "/admin/api/plugins/crashy/activate");
  assert.equal(again.status, 200);
  assert.equal((await fetch(`${d.url}/plugin/crashy/api/who`)).status, 200);
  await d.api("DELETE", "/admin/api/plugins/crashy?purge=1");
});

test("upgrade with a package for another plugin: 422 name_mismatch, the installed one untouched", async () => {
  const a = await buildPackage(d.work, { name: "keep", version: "1.0.0" });
  const b = await buildPackage(d.work, { name: "other", version: "9.0.0" });
  assert.equal((await d.api("POST", "/admin/api/plugins", { body: readFileSync(a), headers: gz })).status, 201);
  const r = await d.api("POST", "/admin/api/plugins/keep/upgrade", { body: readFileSync(b), headers: gz });
  assert.equal(r.status, 422);
  assert.equal((await r.json()).error.code, "name_mismatch");
  assert.equal((await getJson(`${d.url}/plugin/keep/api/who`)).version, "1.0.0");
  await d.api("DELETE", "/admin/api/plugins/keep?purge=1");
});

test("plugin logs: handler errors show up in /logs (tail) and live in /logs?follow=1", async () => {
  const archive = await buildPackage(d.work, {
    name: "noisy",
    version: "1.0.0",
    routes: `{ method: "GET", path: "/oops", handler: () => { throw new Error("kaboom " + Date.now()); } },`,
  });
  assert.equal((await d.api("POST", "/admin/api/plugins", { body: readFileSync(archive), headers: gz })).status, 201);
  const follow = await d.api("GET", "/admin/api/plugins/noisy/logs?follow=1&tail=0");
  assert.match(follow.headers.get("content-type") ?? "", /text\/event-stream/);
  const reader = follow.body!.getReader();
  assert.equal((await fetch(`${d.url}/plugin/noisy/api/oops`)).status, 500);
  let buf = "";
  while (!buf.includes("event: log")) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += Buffer.from(value).toString("utf8");
  }
  await reader.cancel();
  const line = JSON.parse(/data: (.*)/.exec(buf.slice(buf.indexOf("event: log")))![1]);
  assert.equal(line.plugin, "noisy");
  assert.equal(line.level, "error");
  assert.match(line.msg, /kaboom/);
  const tail = await (await d.api("GET", "/admin/api/plugins/noisy/logs?tail=10")).json();
  assert.equal(tail.logs.length, 1);
  assert.match(tail.logs[0].msg, /kaboom/);
  assert.ok(tail.logs[0].time);
  await d.api("DELETE", "/admin/api/plugins/noisy?purge=1");
});

test("requireSignature: unsigned -> 422 unsigned; signed by a key in trusted-keys/ -> installed", async () => {
  const strict = await startTestDaemon({ requireSignature: true });
  try {
    const unsigned = await buildPackage(strict.work, { name: "signed", version: "1.0.0" });
    const r = await strict.api("POST", "/admin/api/plugins", { body: readFileSync(unsigned), headers: gz });
    assert.equal(r.status, 422);
    assert.equal((await r.json()).error.code, "unsigned");
    const keys = generateSigningKeyPair();
    mkdirSync(join(strict.home, "trusted-keys"), { recursive: true });
    writeFileSync(join(strict.home, "trusted-keys", "dev.pub"), keys.publicKeyPem);
    const src = writePluginDir(mkdtempSync(join(strict.work, "signed-")), { name: "signed", version: "1.0.1" });
    const signed = join(strict.work, "signed.tar.gz");
    await packPlugin(src, signed, { privateKeyPem: keys.privateKeyPem });
    const up = await strict.api("POST", "/admin/api/plugins/signed/upgrade", {
      body: readFileSync(signed),
      headers: gz,
    });
    assert.equal(up.status, 200, await up.clone().text());
    assert.equal((await up.json()).status, "loaded");
  } finally {
    await strict.stop();
  }
});

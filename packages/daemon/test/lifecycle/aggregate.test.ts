import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { CommandRejected, type Cqrs, createCqrs, type EventStore, openEventStore } from "@hecate/store";
import {
  acceptsInstall,
  Flags,
  flagNames,
  type PackageInfo,
  type PluginCommand,
  type PluginState,
  pluginAggregate,
  statusName,
} from "../../src/lifecycle/aggregate.js";

let dir: string;
let store: EventStore;
let cqrs: Cqrs;

before(() => {
  dir = mkdtempSync(join(tmpdir(), "hecate-agg-"));
  store = openEventStore({ directory: dir, storeId: "plugins" });
  cqrs = createCqrs(store);
});
after(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const pkg = (name: string, version = "1.0.0"): PackageInfo => ({
  name,
  version,
  plugin_type: "in_process",
  callback_module: "dist/index.js",
  source: "upload",
});

async function run(name: string, cmd: PluginCommand) {
  return cqrs.dispatch(pluginAggregate, name, cmd);
}

async function rejection(name: string, cmd: PluginCommand): Promise<string> {
  try {
    await run(name, cmd);
  } catch (err) {
    assert.ok(err instanceof CommandRejected, `expected CommandRejected, got ${err}`);
    return err.code;
  }
  assert.fail(`${cmd.type} was accepted`);
}

const state = async (name: string) => (await cqrs.load(pluginAggregate, name)).state as PluginState;

test("the full command path sets and clears the original's status flags", async () => {
  const n = "alpha";
  const installed = await run(n, { type: "install_plugin_v1", data: pkg(n) });
  assert.deepEqual(
    installed.events.map((e) => e.type),
    ["plugin_installed_v1"],
  );
  assert.deepEqual(flagNames((await state(n)).status), ["INSTALLED", "EXTRACTING"]);
  assert.equal(statusName((await state(n)).status), "extracting");
  const gen = (await state(n)).generation;
  await run(n, { type: "extract_plugin_package_v1", data: { generation: gen, version: "1.0.0", files: 3, bytes: 10 } });
  assert.deepEqual(flagNames((await state(n)).status), ["INSTALLED", "EXTRACTED"]);
  await run(n, { type: "activate_plugin_v1", data: {} });
  assert.equal(statusName((await state(n)).status), "activated");
  const act = (await state(n)).activation;
  await run(n, {
    type: "confirm_plugin_loaded_v1",
    data: { activation: act, version: "1.0.0", routes: [{ method: "GET", path: "/who" }] },
  });
  let s = await state(n);
  assert.deepEqual(flagNames(s.status), ["INSTALLED", "ACTIVATED", "EXTRACTED", "LOADED"]);
  assert.equal(s.loaded_version, "1.0.0");
  assert.ok(s.installed_at && s.extracted_at && s.activated_at && s.loaded_at);
  await run(n, { type: "deactivate_plugin_v1", data: {} });
  await run(n, { type: "confirm_plugin_unloaded_v1", data: {} });
  s = await state(n);
  assert.equal(statusName(s.status), "deactivated");
  assert.equal(s.status & Flags.ACTIVATED, 0);
  assert.ok(s.deactivated_at);
  await run(n, { type: "remove_plugin_v1", data: { purge: false } });
  assert.deepEqual(flagNames((await state(n)).status), ["REMOVED"]);
  // A removed plugin accepts install again (reinstall), with a new package generation.
  await run(n, { type: "install_plugin_v1", data: pkg(n, "2.0.0") });
  s = await state(n);
  assert.equal(s.installed_version, "2.0.0");
  assert.ok(s.generation > gen);
  assert.deepEqual(
    (await store.readStream("plugin-alpha")).map((e) => e.type),
    [
      "plugin_installed_v1",
      "plugin_package_extracted_v1",
      "plugin_activated_v1",
      "plugin_load_confirmed_v1",
      "plugin_deactivated_v1",
      "plugin_unload_confirmed_v1",
      "plugin_removed_v1",
      "plugin_installed_v1",
    ],
  );
});

test("invalid transitions are typed rejections with the original's codes", async () => {
  const n = "beta";
  assert.equal(await rejection(n, { type: "activate_plugin_v1", data: {} }), "plugin_not_installed");
  assert.equal(await rejection(n, { type: "deactivate_plugin_v1", data: {} }), "plugin_not_activated");
  assert.equal(await rejection(n, { type: "remove_plugin_v1", data: { purge: false } }), "plugin_not_installed");
  assert.equal(await rejection(n, { type: "upgrade_plugin_v1", data: pkg(n) }), "plugin_not_installed");
  await run(n, { type: "install_plugin_v1", data: pkg(n) });
  assert.equal(await rejection(n, { type: "install_plugin_v1", data: pkg(n) }), "plugin_already_installed");
  // activate before extract
  assert.equal(await rejection(n, { type: "activate_plugin_v1", data: {} }), "plugin_not_extracted");
  // an extraction result for another package generation is stale
  assert.equal(
    await rejection(n, {
      type: "extract_plugin_package_v1",
      data: { generation: 99, version: "1.0.0", files: 1, bytes: 1 },
    }),
    "stale_command",
  );
  const gen = (await state(n)).generation;
  await run(n, { type: "extract_plugin_package_v1", data: { generation: gen, version: "1.0.0", files: 1, bytes: 1 } });
  // the same extraction result twice: nothing is being extracted any more
  assert.equal(
    await rejection(n, {
      type: "extract_plugin_package_v1",
      data: { generation: gen, version: "1.0.0", files: 1, bytes: 1 },
    }),
    "stale_command",
  );
  await run(n, { type: "activate_plugin_v1", data: {} });
  assert.equal(await rejection(n, { type: "activate_plugin_v1", data: {} }), "plugin_already_activated");
  assert.equal(
    await rejection(n, { type: "confirm_plugin_loaded_v1", data: { activation: 0, version: "1.0.0", routes: [] } }),
    "stale_command",
  );
  await run(n, { type: "deactivate_plugin_v1", data: {} });
  assert.equal(await rejection(n, { type: "deactivate_plugin_v1", data: {} }), "plugin_not_activated");
  assert.equal(
    await rejection(n, { type: "confirm_plugin_loaded_v1", data: { activation: 1, version: "1.0.0", routes: [] } }),
    "plugin_not_activated",
  );
});

test("names that are not [a-z0-9][a-z0-9_-]* and malformed commands are rejected", async () => {
  for (const bad of ["", "Upper", "-dash", "a/b", "../x", "a b", "x".repeat(65), "é"]) {
    assert.equal(
      await rejection("ok-name", { type: "install_plugin_v1", data: pkg(bad) }),
      "invalid_plugin_name",
      `name ${JSON.stringify(bad)}`,
    );
  }
  assert.equal(
    await rejection("gamma", {
      type: "install_plugin_v1",
      data: { ...pkg("gamma"), plugin_type: "vm" as "container" },
    }),
    "invalid_command",
  );
  assert.equal(
    await rejection("gamma", { type: "install_plugin_v1", data: { ...pkg("gamma"), version: "" } }),
    "invalid_command",
  );
  assert.equal(
    await rejection("gamma", { type: "explode_v1", data: {} } as unknown as PluginCommand),
    "invalid_command",
  );
  assert.equal(await store.streamRevision("plugin-gamma"), -1, "nothing written for rejected commands");
});

test("failures are events: extract failure, load failure, crash, disable (with reasons in last_error)", async () => {
  const n = "delta";
  await run(n, { type: "install_plugin_v1", data: pkg(n) });
  await run(n, {
    type: "fail_plugin_extract_v1",
    data: { generation: (await state(n)).generation, code: "digest_mismatch", message: "dist/index.js changed" },
  });
  let s = await state(n);
  assert.equal(statusName(s.status), "failed");
  assert.deepEqual(
    { stage: s.last_error?.stage, code: s.last_error?.code },
    { stage: "extract", code: "digest_mismatch" },
  );
  // upgrade with a good package clears the failure
  await run(n, { type: "upgrade_plugin_v1", data: pkg(n, "1.0.1") });
  assert.equal(statusName((await state(n)).status), "extracting");
  await run(n, {
    type: "extract_plugin_package_v1",
    data: { generation: (await state(n)).generation, version: "1.0.1", files: 1, bytes: 1 },
  });
  await run(n, { type: "activate_plugin_v1", data: {} });
  await run(n, {
    type: "fail_plugin_load_v1",
    data: { activation: (await state(n)).activation, version: "1.0.1", stage: "init", message: "boom" },
  });
  s = await state(n);
  assert.equal(statusName(s.status), "failed");
  assert.deepEqual(s.last_error && { stage: s.last_error.stage, message: s.last_error.message }, {
    stage: "init",
    message: "boom",
  });
  // a failed activation may be retried
  await run(n, { type: "activate_plugin_v1", data: {} });
  await run(n, {
    type: "confirm_plugin_loaded_v1",
    data: { activation: (await state(n)).activation, version: "1.0.1", routes: [] },
  });
  assert.equal(statusName((await state(n)).status), "loaded");
  assert.equal((await state(n)).last_error, null);
  await run(n, { type: "report_plugin_crash_v1", data: { reason: "worker exited with code 1" } });
  s = await state(n);
  assert.equal(s.restarts, 1);
  assert.equal(statusName(s.status), "loaded");
  assert.equal(s.last_error?.code, "crashed");
  await run(n, { type: "disable_plugin_v1", data: { reason: "crashed 4 times" } });
  s = await state(n);
  assert.equal(statusName(s.status), "failed");
  assert.equal(s.last_error?.code, "disabled");
  assert.equal(s.last_error?.message, "crashed 4 times");
});

test("a failed upgrade keeps the running version loaded", async () => {
  const n = "epsilon";
  await run(n, { type: "install_plugin_v1", data: pkg(n) });
  await run(n, {
    type: "extract_plugin_package_v1",
    data: { generation: (await state(n)).generation, version: "1.0.0", files: 1, bytes: 1 },
  });
  await run(n, { type: "activate_plugin_v1", data: {} });
  await run(n, {
    type: "confirm_plugin_loaded_v1",
    data: { activation: (await state(n)).activation, version: "1.0.0", routes: [] },
  });
  await run(n, { type: "upgrade_plugin_v1", data: pkg(n, "2.0.0") });
  await run(n, {
    type: "fail_plugin_extract_v1",
    data: { generation: (await state(n)).generation, code: "path_traversal", message: "../x" },
  });
  let s = await state(n);
  assert.equal(statusName(s.status), "loaded");
  assert.equal(s.loaded_version, "1.0.0");
  assert.equal(s.last_error?.code, "path_traversal");
  await run(n, { type: "upgrade_plugin_v1", data: pkg(n, "3.0.0") });
  await run(n, {
    type: "extract_plugin_package_v1",
    data: { generation: (await state(n)).generation, version: "3.0.0", files: 1, bytes: 1 },
  });
  await run(n, {
    type: "fail_plugin_load_v1",
    data: { activation: (await state(n)).activation, version: "3.0.0", stage: "import", message: "SyntaxError" },
  });
  s = await state(n);
  assert.equal(statusName(s.status), "loaded", "the swap failed, the old worker still serves");
  assert.equal(s.loaded_version, "1.0.0");
});

test("install after a failure before the plugin ever ran is a fresh attempt; a running or activated one is not", async () => {
  const n = "reinstall";
  const gen = async () => (await state(n)).generation;
  await run(n, { type: "install_plugin_v1", data: pkg(n) });
  // installing, not failed: refused
  assert.equal(await rejection(n, { type: "install_plugin_v1", data: pkg(n) }), "plugin_already_installed");
  await run(n, {
    type: "fail_plugin_extract_v1",
    data: { generation: await gen(), code: "digest_mismatch", message: "x" },
  });
  assert.equal(statusName((await state(n)).status), "failed");
  assert.equal(acceptsInstall(await state(n)), true);
  // the fresh attempt: a new generation, failure flags and last_error cleared, extraction starts over
  const again = await run(n, { type: "install_plugin_v1", data: pkg(n, "1.0.1") });
  assert.deepEqual(
    again.events.map((e) => e.type),
    ["plugin_installed_v1"],
  );
  let s = await state(n);
  assert.equal(s.generation, 2);
  assert.deepEqual(flagNames(s.status), ["INSTALLED", "EXTRACTING"]);
  assert.equal(s.installed_version, "1.0.1");
  assert.equal(s.last_error, null);
  // the stale extraction result of the refused attempt no longer applies
  assert.equal(
    await rejection(n, { type: "fail_plugin_extract_v1", data: { generation: 1, code: "not_gzip", message: "x" } }),
    "stale_command",
  );
  // the history keeps the failed attempt
  assert.deepEqual(
    (await store.readStream(`plugin-${n}`)).map((e) => e.type),
    ["plugin_installed_v1", "plugin_extract_failed_v1", "plugin_installed_v1"],
  );
  await run(n, {
    type: "extract_plugin_package_v1",
    data: { generation: await gen(), version: "1.0.1", files: 1, bytes: 1 },
  });
  await run(n, { type: "activate_plugin_v1", data: {} });
  // a failed first load is ACTIVATED: it is retried with activate (or replaced with upgrade), not re-installed
  await run(n, {
    type: "fail_plugin_load_v1",
    data: { activation: (await state(n)).activation, version: "1.0.1", stage: "init", message: "boom" },
  });
  s = await state(n);
  assert.equal(statusName(s.status), "failed");
  assert.equal(acceptsInstall(s), false);
  assert.equal(await rejection(n, { type: "install_plugin_v1", data: pkg(n) }), "plugin_already_installed");
  await run(n, { type: "activate_plugin_v1", data: {} });
  await run(n, {
    type: "confirm_plugin_loaded_v1",
    data: { activation: (await state(n)).activation, version: "1.0.1", routes: [] },
  });
  // loaded, and a failed upgrade keeps it LOADED: still refused
  assert.equal(await rejection(n, { type: "install_plugin_v1", data: pkg(n) }), "plugin_already_installed");
  await run(n, { type: "upgrade_plugin_v1", data: pkg(n, "2.0.0") });
  await run(n, { type: "fail_plugin_extract_v1", data: { generation: await gen(), code: "not_gzip", message: "x" } });
  assert.equal(statusName((await state(n)).status), "loaded");
  assert.equal(await rejection(n, { type: "install_plugin_v1", data: pkg(n) }), "plugin_already_installed");
  // disabled after crashes: FAILED but still ACTIVATED: refused (activate retries it)
  await run(n, { type: "disable_plugin_v1", data: { reason: "crashed 4 times" } });
  assert.equal(statusName((await state(n)).status), "failed");
  assert.equal(await rejection(n, { type: "install_plugin_v1", data: pkg(n) }), "plugin_already_installed");
  // deactivated and healthy: refused (activate or upgrade)
  await run(n, { type: "deactivate_plugin_v1", data: {} });
  assert.equal(acceptsInstall(await state(n)), false);
  assert.equal(await rejection(n, { type: "install_plugin_v1", data: pkg(n) }), "plugin_already_installed");
  // removed: installable again, as before
  await run(n, { type: "remove_plugin_v1", data: { purge: false } });
  assert.equal(acceptsInstall(await state(n)), true);
});

test("commands with an id are idempotent; a boot reload of an already loaded version writes nothing", async () => {
  const n = "zeta";
  const a = await cqrs.dispatch(pluginAggregate, n, { id: "cmd-1", type: "install_plugin_v1", data: pkg(n) });
  const b = await cqrs.dispatch(pluginAggregate, n, { id: "cmd-1", type: "install_plugin_v1", data: pkg(n) });
  assert.equal(b.duplicate, true);
  assert.equal(b.position, a.position);
  assert.equal(await store.streamRevision("plugin-zeta"), 0);
  await run(n, {
    type: "extract_plugin_package_v1",
    data: { generation: (await state(n)).generation, version: "1.0.0", files: 1, bytes: 1 },
  });
  await run(n, { type: "activate_plugin_v1", data: {} });
  const act = (await state(n)).activation;
  await run(n, { type: "confirm_plugin_loaded_v1", data: { activation: act, version: "1.0.0", routes: [] } });
  const rev = await store.streamRevision("plugin-zeta");
  const again = await run(n, {
    type: "confirm_plugin_loaded_v1",
    data: { activation: act, version: "1.0.0", routes: [], boot: true },
  });
  assert.equal(again.events.length, 0);
  assert.equal(await store.streamRevision("plugin-zeta"), rev);
});

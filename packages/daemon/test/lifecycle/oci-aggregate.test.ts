/**
 * The original's container commands on the `plugin` aggregate (decide/evolve, no store): start_oci_pull /
 * cancel_oci_pull / complete_oci_pull (+ fail), start/stop_plugin_execution, confirm_container_up/down, their flags and
 * rejection codes (already_pulling, not_pulling, plugin_already_running, plugin_not_running), and the OCI reference
 * grammar, the registry settings (TLS policy, 0600 credentials file).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isRejection } from "@hecate/store";
import { isLoopbackRegistry, parseOciReference } from "../../src/container/oci-reference.js";
import {
  describeRegistries,
  registriesFile,
  registryCredentials,
  registryUsesPlainHttp,
  setRegistry,
} from "../../src/container/registry-config.js";
import {
  Flags,
  flagNames,
  initialPluginState,
  type PluginCommand,
  type PluginEvent,
  type PluginState,
  pluginAggregate,
  statusName,
} from "../../src/lifecycle/aggregate.js";

const DIGEST = `sha256:${"a".repeat(64)}`;
const oci = {
  reference: "oci://r.example/x:1",
  image: `r.example/x@${DIGEST}`,
  digest: DIGEST,
  layers: 2,
  bytes: 1000,
};

/** Applies commands in order; returns the state and the last outcome (events or a rejection code). */
function run(cmds: PluginCommand[], from: PluginState = initialPluginState) {
  let s = from;
  let last: PluginEvent[] | string = [];
  for (const c of cmds) {
    const r = pluginAggregate.decide(c, s);
    if (isRejection(r)) {
      last = r.code;
      continue;
    }
    last = r as PluginEvent[];
    for (const e of last) s = pluginAggregate.evolve(s, e as never);
  }
  return { s, last };
}

const install: PluginCommand = {
  type: "install_plugin_v1",
  data: { name: "img", version: "1.0.0", plugin_type: "container", source: oci.reference, oci },
};
const start: PluginCommand = { type: "start_oci_pull_v1", data: { generation: 1 } };

test("a pull: PULLING while it runs (status pulling), progress, complete clears it; the digest travels in the events", () => {
  const { s, last } = run([install, start]);
  assert.deepEqual(flagNames(s.status), ["INSTALLED", "EXTRACTING", "PULLING"]);
  assert.equal(statusName(s.status), "pulling");
  assert.equal((last as PluginEvent[])[0].type, "oci_pull_started_v1");
  assert.equal(((last as PluginEvent[])[0].data as { digest: string }).digest, DIGEST);
  assert.equal(s.oci_image, oci.image);
  const p = run([{ type: "report_oci_pull_progress_v1", data: { generation: 1, layers_done: 0, bytes_done: 400 } }], s);
  assert.deepEqual(p.s.pull && [p.s.pull.bytes_done, p.s.pull.bytes_total], [400, 1000]);
  assert.equal(run([start], s).last, "already_pulling");
  const done = run([{ type: "complete_oci_pull_v1", data: { generation: 1, digest: DIGEST, image_id: "i" } }], p.s);
  assert.equal(done.s.status & Flags.PULLING, 0);
  assert.equal(done.s.pull, null);
  assert.equal(run([{ type: "cancel_oci_pull_v1", data: { reason: "x" } }], done.s).last, "not_pulling");
  assert.equal(
    run([{ type: "complete_oci_pull_v1", data: { generation: 1, digest: DIGEST, image_id: "i" } }], done.s).last,
    "not_pulling",
  );
});

test("a failed pull: FAILED with the reason (stage pull); a cancelled first install leaves nothing (removed)", () => {
  const { s } = run([install, start]);
  const failed = run(
    [{ type: "fail_oci_pull_v1", data: { generation: 1, code: "registry_unreachable", message: "m" } }],
    s,
  );
  assert.equal(statusName(failed.s.status), "failed");
  assert.deepEqual(failed.s.last_error && [failed.s.last_error.stage, failed.s.last_error.code], [
    "pull",
    "registry_unreachable",
  ]);
  const cancelled = run([{ type: "cancel_oci_pull_v1", data: { reason: "operator" } }], s);
  assert.equal(statusName(cancelled.s.status), "removed");
  assert.equal(((cancelled.last as PluginEvent[])[0].data as { first_install: boolean }).first_install, true);
  // installable again
  assert.equal(run([install], cancelled.s).s.generation, 2);
});

test("execution and health: RUNNING / STOPPED, CONFIRMED_UP / CONFIRMED_DOWN recorded on transitions only", () => {
  const { s } = run([install]);
  assert.equal(run([{ type: "confirm_container_up_v1", data: {} }], s).last, "plugin_not_running");
  assert.equal(run([{ type: "stop_plugin_execution_v1", data: { reason: "x" } }], s).last, "plugin_not_running");
  const running = run([{ type: "start_plugin_execution_v1", data: {} }], s);
  assert.ok(flagNames(running.s.status).includes("RUNNING"));
  assert.equal(run([{ type: "start_plugin_execution_v1", data: {} }], running.s).last, "plugin_already_running");
  const up = run([{ type: "confirm_container_up_v1", data: {} }], running.s);
  assert.ok(flagNames(up.s.status).includes("CONFIRMED_UP"));
  assert.deepEqual(run([{ type: "confirm_container_up_v1", data: {} }], up.s).last, [], "no transition, no event");
  const down = run([{ type: "confirm_container_down_v1", data: { reason: "crashed: exit" } }], up.s);
  assert.ok(flagNames(down.s.status).includes("CONFIRMED_DOWN"));
  assert.ok(!flagNames(down.s.status).includes("CONFIRMED_UP"));
  const stopped = run([{ type: "stop_plugin_execution_v1", data: { reason: "deactivated" } }], down.s);
  assert.ok(flagNames(stopped.s.status).includes("STOPPED"));
  assert.ok(!flagNames(stopped.s.status).some((f) => f === "RUNNING" || f.startsWith("CONFIRMED")));
});

test("oci:// references: registry required, tag or digest, loopback registries", () => {
  assert.deepEqual(parseOciReference("oci://127.0.0.1:5000/team/echo:1.2"), {
    registry: "127.0.0.1:5000",
    repository: "team/echo",
    tag: "1.2",
    digest: null,
  });
  assert.equal(parseOciReference("oci://r.example/echo").tag, "latest");
  assert.equal(parseOciReference(`oci://r.example/echo@${DIGEST}`).digest, DIGEST);
  for (const bad of [
    "oci://echo",
    "oci://r.example/Echo:1",
    "oci://r.example/echo@sha256:12",
    "docker://r/x",
    "oci:///x",
  ])
    assert.throws(() => parseOciReference(bad), /invalid|expected|starts with/, bad);
  assert.ok(isLoopbackRegistry("127.0.0.1:5000"));
  assert.ok(isLoopbackRegistry("localhost:5000"));
  assert.ok(isLoopbackRegistry("[::1]:5000"));
  assert.ok(!isLoopbackRegistry("registry.example.com"));
  assert.ok(!isLoopbackRegistry("10.0.0.1:5000"));
});

test("registry settings: TLS unless loopback or set insecure; 0600 file; the password never described", () => {
  const home = mkdtempSync(join(tmpdir(), "hecate-reg-"));
  try {
    assert.equal(registryUsesPlainHttp(home, "registry.example.com"), false);
    assert.equal(registryUsesPlainHttp(home, "127.0.0.1:5000"), true);
    const shown = setRegistry(home, "Registry.Example.com:5000", { username: "ci", password: "s3cret-pw" });
    assert.deepEqual(shown, {
      registry: "registry.example.com:5000",
      username: "ci",
      passwordSet: true,
      insecure: false,
      scheme: "https",
    });
    assert.equal(statSync(registriesFile(home)).mode & 0o777, 0o600);
    assert.deepEqual(registryCredentials(home, "registry.example.com:5000"), { username: "ci", password: "s3cret-pw" });
    assert.equal(registryUsesPlainHttp(home, "registry.example.com:5000"), false);
    setRegistry(home, "registry.example.com:5000", { insecure: true });
    assert.equal(registryUsesPlainHttp(home, "registry.example.com:5000"), true);
    assert.ok(!JSON.stringify(describeRegistries(home)).includes("s3cret-pw"));
    assert.throws(() => setRegistry(home, "bad host/x", { insecure: true }), /invalid registry/);
    assert.throws(() => setRegistry(home, "r.example", { username: "u" }), /needs a password/);
    setRegistry(home, "registry.example.com:5000", { username: null });
    assert.equal(registryCredentials(home, "registry.example.com:5000"), null);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { CrashAttribution } from "../../src/supervisor/crash-attribution.js";

const options = { activityIntervalMs: 250, crashWindowMs: 60_000, crashesBeforeIsolation: 3, loadStrikes: 2 };
const all = () => true;

test("a death during a load: a strike per loading plugin, quarantined at the second (at the first in isolation)", () => {
  const a = new CrashAttribution(options);
  const first = a.died(1, true, Date.now(), "boom", ["bad"], ["bad", "good"], all, all);
  assert.deepEqual(first.quarantine, []);
  assert.deepEqual(first.isolate, []);
  const second = a.died(1, true, Date.now(), "boom", ["bad"], ["bad", "good"], all, all);
  assert.deepEqual(second.quarantine, [{ name: "bad", reason: "boom while loading it, 2 times" }]);
  // A clean load clears the strikes.
  a.cleared("bad");
  assert.deepEqual(a.died(1, true, Date.now(), "boom", ["bad"], [], all, all).quarantine, []);
  // In an isolated host the first death while loading names the plugin.
  assert.deepEqual(a.died(7, false, Date.now(), "boom", ["iso"], ["iso"], all, all).quarantine, [
    { name: "iso", reason: "boom while loading it, 1 time" },
  ]);
});

test("deaths while serving: suspects active before every death move into isolated hosts, never quarantined", () => {
  const a = new CrashAttribution(options);
  const onHost = ["a", "b", "c", "d"];
  const verdicts = [];
  for (const active of [
    ["a", "b"],
    ["a", "c"],
    ["a", "d"],
  ]) {
    a.active(1, active);
    verdicts.push(a.died(1, true, Date.now(), "boom", [], onHost, all, all));
  }
  assert.deepEqual(verdicts[0].active, ["a", "b"]);
  assert.deepEqual(verdicts[0].isolate, []);
  assert.deepEqual(verdicts[1].isolate, []);
  assert.deepEqual(verdicts[2].isolate, [["a"]], "only `a` was active before all three deaths");
  assert.ok(verdicts.every((v) => v.quarantine.length === 0));
});

test("serve-time suspects: activity older than the horizon and plugins that cannot move are left out", () => {
  const a = new CrashAttribution(options);
  a.active(1, ["old"]);
  const long = Date.now() + 10_000; // the death is 10 s after the last activity: past the 2 s horizon
  assert.deepEqual(a.died(1, true, long, "boom", [], ["old"], all, all).active, []);
  // No common suspect and only containers active: every movable plugin of the host is a suspect, 4 groups at most.
  const b = new CrashAttribution(options);
  const onHost = ["c1", "w1", "w2", "w3", "w4", "w5"];
  const movable = (n: string) => n.startsWith("w");
  let v = b.died(1, true, Date.now(), "boom", [], onHost, all, movable);
  for (let i = 0; i < 2; i++) {
    b.active(1, ["c1"]);
    v = b.died(1, true, Date.now(), "boom", [], onHost, all, movable);
  }
  assert.equal(v.isolate.length, 4);
  assert.deepEqual(v.isolate.flat().sort(), ["w1", "w2", "w3", "w4", "w5"]);
});

test("an isolated host's death: its only plugin is quarantined; a group is halved", () => {
  const a = new CrashAttribution(options);
  assert.deepEqual(a.died(5, false, Date.now(), "boom", [], ["x"], all, all).quarantine, [
    { name: "x", reason: "boom while serving it, in isolation" },
  ]);
  assert.deepEqual(a.died(6, false, Date.now(), "boom", [], ["p", "q", "r", "s"], all, all).isolate, [["r", "s"]]);
});

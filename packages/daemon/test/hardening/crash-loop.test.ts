/**
 * CI-sized crash-recovery run (bench/crash-loop.ts runs >= 200): kill -9 the daemon child process at random points
 * of install / upgrade / remove / deactivate / activate, restart it, check store integrity, settled states, no
 * orphans, no duplicate events, acknowledged operations durable.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { checkHistory, runCrashLoop } from "../../bench/crash-loop.js";

test("kill -9 at random points of lifecycle operations: every invariant holds after each restart", async () => {
  const lines: string[] = [];
  const r = await runCrashLoop({
    iterations: Number(process.env.CRASH_LOOP_TEST_ITERATIONS ?? 10),
    seed: process.env.CRASH_LOOP_SEED ? Number(process.env.CRASH_LOOP_SEED) : undefined,
    log: (l) => lines.push(l),
  });
  console.log(`# crash-loop ${JSON.stringify(r)}`);
  assert.deepEqual(r.violations, [], lines.join("\n"));
  assert.ok(r.kills.mid_operation > 0, "no kill landed mid-operation");
});

test("the history check flags duplicated and skipped lifecycle events", () => {
  const row = (revision: number, type: string, data: object) => ({
    stream: "plugin-x",
    revision,
    type,
    data: JSON.stringify(data),
  });
  const clean = [
    row(0, "plugin_installed_v1", { generation: 1 }),
    row(1, "plugin_package_extracted_v1", { generation: 1 }),
    row(2, "plugin_activated_v1", { activation: 1 }),
    row(3, "plugin_load_confirmed_v1", { activation: 1 }),
    row(4, "plugin_load_confirmed_v1", { activation: 1, boot: true }),
    row(5, "plugin_upgraded_v1", { generation: 2 }),
    row(6, "plugin_package_extracted_v1", { generation: 2 }),
    row(7, "plugin_load_confirmed_v1", { activation: 1 }),
  ];
  assert.deepEqual(checkHistory(clean), []);
  const dup = [...clean, row(8, "plugin_load_confirmed_v1", { activation: 1 })];
  assert.match(checkHistory(dup).join(), /second load outcome for activation 1/);
  const twiceExtracted = [...clean, row(8, "plugin_package_extracted_v1", { generation: 2 })];
  assert.match(checkHistory(twiceExtracted).join(), /second extract outcome for generation 2/);
  const skipped = [...clean, row(8, "plugin_upgraded_v1", { generation: 4 })];
  assert.match(checkHistory(skipped).join(), /generation 4 after 2/);
  const gap = [...clean, row(9, "plugin_deactivated_v1", {})];
  assert.match(checkHistory(gap).join(), /revision 9 at index 8/);
});

/**
 * Boot loads run side by side, bounded by the loader (DEFAULT_LOAD_CONCURRENCY): 30 installed plugins whose init
 * takes 300 ms at boot, restarted on the same home. Every route answers after the restart; the plugins' own records
 * of when their init ran show loads overlapping (parallel) but never more than the bound at once; one plugin that
 * fails at boot is marked failed and does not stop the 29 others; a load empties the plugin's scratch dir.
 */
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { pluginPaths } from "@hecate/sdk";
import { DEFAULT_LOAD_CONCURRENCY } from "../../src/lifecycle/loader.js";
import { buildPackage, startTestDaemon, type TestDaemon } from "./helpers.js";

const N = 30;
const INIT_MS = 300;
const names = Array.from({ length: N }, (_, i) => `pb${String(i).padStart(2, "0")}`);
const FAILING = "pb07";

// At boot (a `slow-boot` marker in its data dir), init records when it ran and takes INIT_MS; with a `fail-boot`
// marker it throws. Installs run without markers, so they stay quick.
const init = `
  const { existsSync, appendFileSync } = await import("node:fs");
  if (existsSync(join(config.dataDir, "fail-boot"))) throw new Error("refusing to boot (test)");
  if (existsSync(join(config.dataDir, "slow-boot"))) {
    const start = performance.timeOrigin + performance.now();
    await new Promise((r) => setTimeout(r, ${INIT_MS}));
    appendFileSync(join(config.dataDir, "boots.jsonl"), JSON.stringify({ start, end: performance.timeOrigin + performance.now() }) + "\\n");
  }`;

const daemons: TestDaemon[] = [];
after(async () => {
  for (const d of daemons.reverse()) await d.stop().catch(() => {});
});

/** Most intervals open at one instant. */
function maxOverlap(intervals: { start: number; end: number }[]): number {
  const edges = intervals.flatMap((i) => [
    [i.start, 1],
    [i.end, -1],
  ]);
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0;
  let most = 0;
  for (const [, delta] of edges) {
    open += delta;
    most = Math.max(most, open);
  }
  return most;
}

test("30 plugins load in parallel at boot, at most DEFAULT_LOAD_CONCURRENCY at once, one failing stops none", async () => {
  const first = await startTestDaemon();
  daemons.push(first);
  const home = first.home;
  const archives = await Promise.all(names.map((name) => buildPackage(first.work, { name, version: "1.0.0", init })));
  for (const archive of archives) {
    const r = await first.api("POST", "/admin/api/plugins", {
      body: readFileSync(archive),
      headers: { "content-type": "application/gzip" },
    });
    assert.equal(r.status, 201, await r.text());
  }
  await first.close();
  for (const name of names) writeFileSync(join(pluginPaths(home, name).data, "slow-boot"), "");
  writeFileSync(join(pluginPaths(home, FAILING).data, "fail-boot"), "");
  // What a previous run left in a plugin's scratch dir (files, dirs) is gone after its load; the dir stays.
  const scratch = pluginPaths(home, names[0]).tmp;
  mkdirSync(join(scratch, "left", "deep"), { recursive: true });
  writeFileSync(join(scratch, "left.txt"), "x");

  const t0 = performance.now();
  const d = await startTestDaemon({ home });
  daemons.push(d);
  const bootMs = performance.now() - t0;
  // Every route answers once startDaemon resolved (boot loads are part of it), except the failing plugin's.
  const answers = await Promise.all(
    names.map(async (name) => {
      const r = await fetch(`${d.url}/plugin/${name}/api/who`);
      return { name, status: r.status, body: await r.text() };
    }),
  );
  for (const a of answers) {
    if (a.name === FAILING) assert.equal(a.status, 503, a.body);
    else assert.deepEqual([a.status, JSON.parse(a.body)], [200, { name: a.name, version: "1.0.0" }]);
  }
  assert.deepEqual(readdirSync(scratch), []);
  const failed = (await (await d.api("GET", `/admin/api/plugins/${FAILING}`)).json()) as Record<string, unknown>;
  assert.equal(failed.status, "failed", JSON.stringify(failed));
  assert.match(JSON.stringify(failed), /refusing to boot/);

  const boots = names
    .filter((n) => n !== FAILING)
    .map((name) => {
      const lines = readFileSync(join(pluginPaths(home, name).data, "boots.jsonl"), "utf8")
        .trim()
        .split("\n");
      assert.equal(lines.length, 1, `${name} booted once`);
      return JSON.parse(lines[0]) as { start: number; end: number };
    });
  const most = maxOverlap(boots);
  console.log(`boot of ${N} plugins (init ${INIT_MS} ms each): ${bootMs.toFixed(0)} ms, at most ${most} at once`);
  assert.ok(most >= 2, `loads ran one after another (max overlap ${most})`);
  assert.ok(most <= DEFAULT_LOAD_CONCURRENCY, `more than ${DEFAULT_LOAD_CONCURRENCY} loads at once: ${most}`);
  rmSync(join(pluginPaths(home, FAILING).data, "fail-boot"));
});

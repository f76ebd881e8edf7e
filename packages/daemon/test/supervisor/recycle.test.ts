/**
 * Host recycling under real load: keep-alive clients in another process (the bench's loadgen: an undici Pool per
 * route) hammer a shared plugin and a worker plugin while the main plugin host is recycled through the admin API and
 * through `hecate host recycle`. Not one request fails, and every replaced host process is gone afterwards.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { loadgen } from "../../bench/run-load.js";
import type { RecycleResult } from "../../src/supervisor/plugin-hosts.js";
import { buildPackage, startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";

const CLI = fileURLToPath(new URL("../../../../cli/dist/src/main.js", import.meta.url));
const gz = { "content-type": "application/gzip" };

async function install(d: TestDaemon, name: string, manifest: Record<string, unknown> = {}): Promise<void> {
  const p = await buildPackage(d.work, { name, version: "1.0.0", manifest });
  const r = await d.api("POST", "/admin/api/plugins", { body: readFileSync(p), headers: gz });
  assert.equal(r.status, 201, await r.text());
}

function cliRecycle(home: string): Promise<RecycleResult> {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [CLI, "--home", home, "host", "recycle", "--json"], (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout)),
    ),
  );
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("recycle under keep-alive load: 0 failed requests, the old host processes are gone, the CLI and the admin API both recycle", async () => {
  const d = await startTestDaemon({ hosts: { recycleIdleGraceMs: 500 } });
  try {
    await install(d, "direct", { isolation: "shared" });
    await install(d, "threaded");
    const stops: (() => void)[] = [];
    const onChild = (stop: () => void) => stops.push(stop);
    const loads = [
      loadgen(`${d.url}/plugin/direct/api/who`, 6, 120_000, onChild),
      loadgen(`${d.url}/plugin/threaded/api/who`, 2, 120_000, onChild),
    ];
    await new Promise((r) => setTimeout(r, 1000));
    const results: RecycleResult[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await d.api("POST", "/admin/api/hosts/recycle");
      assert.equal(r.status, 200);
      results.push(await r.json());
      await new Promise((r) => setTimeout(r, 300));
    }
    results.push(await cliRecycle(d.home));
    await new Promise((r) => setTimeout(r, 500));
    for (const stop of stops) stop();
    const [direct, threaded] = await Promise.all(loads);
    console.log(
      `recycles: ${results.map((r) => `${r.oldPid}->${r.newPid} switch ${r.switchMs} ms, gone ${r.ms} ms`).join("; ")}`,
    );
    console.log(
      `load: direct ${direct.ok} ok / ${direct.errors} errors / ${direct.non2xx} non-2xx; threaded ${threaded.ok} ok / ${threaded.errors} errors / ${threaded.non2xx} non-2xx`,
    );
    for (const l of [direct, threaded]) {
      assert.equal(l.errors, 0, "no failed request");
      assert.equal(l.non2xx, 0, "no error answer");
      assert.ok(l.ok > 100, `requests answered: ${l.ok}`);
    }
    for (const [i, r] of results.entries()) {
      assert.equal(r.plugins, 2);
      assert.equal(r.drained, true);
      assert.ok(!alive(r.oldPid!), `old host ${r.oldPid} is gone`);
      if (i > 0) assert.equal(r.oldPid, results[i - 1].newPid, "each recycle replaces the host serving then");
    }
    assert.equal(d.hosts.pids()[1], results.at(-1)!.newPid);
    const who = await (await fetch(`${d.url}/plugin/direct/api/who`)).json();
    assert.deepEqual(who, { name: "direct", version: "1.0.0" });
  } finally {
    await d.stop();
  }
});

/**
 * Crash domains with real processes and signals: plugins that abort their plugin-host process (a fatal V8 heap
 * abort inside a worker, SIGKILL of their own process at init and at request time) never take the supervisor, the
 * admin API or a neighbour plugin down for good; the culprit is quarantined within the stated number of host deaths;
 * a restart with the poisoned plugin installed comes up healthy; killing the supervisor leaves no host behind.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  buildPackage,
  getJson,
  spawnDaemon,
  startTestDaemon,
  type TestDaemon,
  unixRequest,
  until,
} from "../lifecycle/helpers.js";

const gz = { "content-type": "application/gzip" };

async function install(d: TestDaemon, archive: string): Promise<number> {
  return (await d.api("POST", "/admin/api/plugins", { body: readFileSync(archive), headers: gz })).status;
}

/** Polls the admin `/health` every 25 ms until stopped; returns the latencies (ms) and the failures. */
function watchAdmin(adminUrl: string): { stop(): Promise<{ p99: number; max: number; failed: number; n: number }> } {
  const lat: number[] = [];
  let failed = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const t = performance.now();
      try {
        const r = await fetch(`${adminUrl}/health`, { signal: AbortSignal.timeout(5000) });
        await r.arrayBuffer();
        if (r.status !== 200) failed++;
      } catch {
        failed++;
      }
      lat.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      const sorted = [...lat].sort((a, b) => a - b);
      return {
        p99: sorted[Math.floor(sorted.length * 0.99)] ?? 0,
        max: sorted.at(-1) ?? 0,
        failed,
        n: lat.length,
      };
    },
  };
}

function hostCrashes(d: TestDaemon) {
  return d.lifecycle.hostCrashes();
}

async function events(d: TestDaemon, name: string): Promise<{ type: string; data: Record<string, unknown> }[]> {
  return (await (await d.api("GET", `/admin/api/plugins/${name}/events`)).json()).events;
}

/** Sends GET requests to a plugin until stopped; counts the answers by status (0 = connection failed). */
function traffic(url: string): { stop(): Promise<Map<number, number>> } {
  const counts = new Map<number, number>();
  let running = true;
  const lane = async () => {
    while (running) {
      let s = 0;
      try {
        const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
        await r.arrayBuffer();
        s = r.status;
      } catch {}
      counts.set(s, (counts.get(s) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const lanes = [lane(), lane()];
  return {
    async stop() {
      running = false;
      await Promise.all(lanes);
      return counts;
    },
  };
}

test("a plugin that SIGKILLs its process in init is quarantined after at most 2 host deaths; a restart with it installed comes up healthy", async () => {
  const d = await startTestDaemon();
  const admin = watchAdmin(d.adminUrl);
  try {
    assert.equal(await install(d, await buildPackage(d.work, { name: "calm", version: "1.0.0" })), 201);
    await until(async () => (await fetch(`${d.url}/plugin/calm/api/who`)).status === 200, 20_000, "calm serving");
    const calmHost = d.hosts.pids()[1];
    const poison = await buildPackage(d.work, {
      name: "poison",
      version: "1.0.0",
      init: `process.kill(process.pid, "SIGKILL");`,
    });
    assert.equal(await install(d, poison), 422); // the install answers once the plugin is quarantined
    const view = await until(
      async () => {
        const v = await (await d.api("GET", "/admin/api/plugins/poison")).json();
        return v.lastError?.code === "quarantined" ? v : null;
      },
      60_000,
      "poison quarantined",
    );
    assert.match(view.lastError.message, /plugin host died \(signal SIGKILL\) while loading it/);
    assert.equal(view.status, "failed");
    const crashes = await hostCrashes(d);
    assert.ok(crashes.length >= 1 && crashes.length <= 2, `host deaths: ${crashes.length}`);
    for (const c of crashes) {
      assert.equal(c.signal, "SIGKILL");
      assert.deepEqual(c.loading, ["poison"]);
    }
    assert.ok(
      (await events(d, "poison")).some((e) => e.type === "plugin_quarantined_v1"),
      "plugin_quarantined_v1 on its stream",
    );
    // The neighbour is back in a new host process.
    await until(async () => (await fetch(`${d.url}/plugin/calm/api/who`)).status === 200, 20_000, "calm again");
    assert.notEqual(d.hosts.pids()[1], calmHost, "a new host process serves");
    assert.equal((await fetch(`${d.url}/plugin/poison/api/who`)).status, 503); // quarantined: plugin_not_active
    const a = await admin.stop();
    console.log(`admin /health during init-kill: n=${a.n} p99=${a.p99.toFixed(1)} ms max=${a.max.toFixed(1)} ms`);
    assert.equal(a.failed, 0, "the admin API answered throughout");

    // A restart with the poisoned plugin installed: healthy, no host death, calm serving, poison still out.
    await d.close();
    const again = await startTestDaemon({ home: `${d.work}/home` });
    try {
      assert.equal((await fetch(`${again.url}/ready`)).status, 200);
      assert.equal((await fetch(`${again.url}/plugin/calm/api/who`)).status, 200);
      assert.equal((await again.lifecycle.hostCrashes()).length, crashes.length, "no new host death at boot");
      // An explicit activate re-enables it (and it is quarantined again: it still kills its host).
      const r = await again.api("POST", "/admin/api/plugins/poison/activate");
      assert.equal(r.status, 422);
      assert.equal((await r.json()).error.code, "quarantined");
      await until(
        async () =>
          (await (await again.api("GET", "/admin/api/plugins/poison")).json()).lastError?.code === "quarantined",
        60_000,
        "quarantined again",
      );
      await until(async () => (await fetch(`${again.url}/plugin/calm/api/who`)).status === 200, 20_000, "calm back");
    } finally {
      await again.stop();
    }
  } finally {
    await admin.stop();
    await d.close().catch(() => {});
  }
});

test("a plugin that aborts its host at request time (fatal heap abort, SIGKILL) is found and quarantined; its busy neighbour keeps serving", async () => {
  // The watchdog would end a worker stuck in garbage collection before V8 gives up: give V8 the time to abort.
  const d = await startTestDaemon({ hosts: { activityIntervalMs: 100 }, runtime: { heartbeatTimeoutMs: 60_000 } });
  const admin = watchAdmin(d.adminUrl);
  try {
    assert.equal(await install(d, await buildPackage(d.work, { name: "busy", version: "1.0.0" })), 201);
    const bomb = await buildPackage(d.work, {
      name: "bomb",
      version: "1.0.0",
      routes: `
        { method: "POST", path: "/oom", handler: () => { const s = "x".repeat(300 * 1024 * 1024); return { n: Buffer.from(s).length }; } },
        { method: "POST", path: "/kill", handler: () => { process.kill(process.pid, "SIGKILL"); return {}; } },`,
    });
    assert.equal(await install(d, bomb), 201);
    await until(async () => (await fetch(`${d.url}/plugin/bomb/api/who`)).status === 200, 20_000, "bomb serving");
    const load = traffic(`${d.url}/plugin/busy/api/who`);
    await new Promise((r) => setTimeout(r, 300));
    // Host deaths while both plugins serve: the first by a fatal heap abort, then by SIGKILL.
    let deaths = 0;
    for (const path of ["oom", "kill", "kill", "kill", "kill"]) {
      const view = await (await d.api("GET", "/admin/api/plugins/bomb")).json();
      if (view.lastError?.code === "quarantined") break;
      await until(async () => (await fetch(`${d.url}/plugin/bomb/api/who`)).status === 200, 30_000, "bomb back");
      const before = (await hostCrashes(d)).length;
      await fetch(`${d.url}/plugin/bomb/api/${path}`, { method: "POST" }).catch(() => {});
      await until(async () => (await hostCrashes(d)).length > before, 60_000, `host death by ${path}`);
      deaths++;
    }
    const view = await until(
      async () => {
        const v = await (await d.api("GET", "/admin/api/plugins/bomb")).json();
        return v.lastError?.code === "quarantined" ? v : null;
      },
      30_000,
      "bomb quarantined",
    );
    assert.ok(deaths <= 4, `quarantined after ${deaths} host deaths (3 in the shared host + 1 in isolation)`);
    assert.match(view.lastError.message, /while serving it/);
    const crashes = await hostCrashes(d);
    assert.ok(
      crashes.some((c) => c.signal === "SIGABRT" || c.signal === "SIGTRAP" || c.code === 134),
      "a fatal abort",
    );
    for (const c of crashes.filter((x) => x.hostId === 1)) assert.ok(c.active.includes("bomb"), "bomb was active");
    // The neighbour serves (now or again), and served most of the time.
    await until(async () => (await fetch(`${d.url}/plugin/busy/api/who`)).status === 200, 20_000, "busy again");
    const counts = await load.stop();
    const ok = counts.get(200) ?? 0;
    const bad = [...counts].filter(([s]) => s !== 200).reduce((n, [, c]) => n + c, 0);
    console.log(`neighbour during ${deaths} host deaths: ${ok} ok, ${bad} failed (in flight at a death)`);
    assert.ok(ok > 20 && bad <= deaths * 4, `neighbour: ${ok} ok, ${bad} failed`);
    const a = await admin.stop();
    console.log(
      `admin /health during request-time aborts: n=${a.n} p99=${a.p99.toFixed(1)} ms max=${a.max.toFixed(1)} ms`,
    );
    assert.equal(a.failed, 0);
  } finally {
    await admin.stop();
    await d.stop();
  }
});

test("an endless loop in a handler is contained in its worker: the host lives, the plugin is disabled by its restart budget", async () => {
  const d = await startTestDaemon({
    runtime: { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 500, restartBudget: { maxRestarts: 1, windowMs: 60_000 } },
  });
  try {
    assert.equal(await install(d, await buildPackage(d.work, { name: "calm", version: "1.0.0" })), 201);
    const loop = await buildPackage(d.work, {
      name: "spin",
      version: "1.0.0",
      routes: `{ method: "POST", path: "/spin", handler: () => { for (;;) {} } },`,
    });
    assert.equal(await install(d, loop), 201);
    const host = d.hosts.pids()[1];
    for (let i = 0; i < 2; i++) {
      await until(async () => (await fetch(`${d.url}/plugin/spin/api/who`)).status === 200, 20_000, "spin serving");
      const r = await fetch(`${d.url}/plugin/spin/api/spin`, { method: "POST" });
      assert.equal(r.status, 502);
    }
    await until(
      async () => (await (await d.api("GET", "/admin/api/plugins/spin")).json()).lastError?.code === "disabled",
      20_000,
      "spin disabled",
    );
    assert.equal(d.hosts.pids()[1], host, "same host process");
    assert.equal((await hostCrashes(d)).length, 0);
    assert.equal((await fetch(`${d.url}/plugin/calm/api/who`)).status, 200);
  } finally {
    await d.stop();
  }
});

test("kill -9 of the host: requests wait for the new host instead of being refused; kill -9 of the supervisor leaves no host", async () => {
  const work = mkdtempSync(join(tmpdir(), "hecate-sup-"));
  const home = join(work, "home");
  const d = spawnDaemon(home);
  try {
    const url = await d.url;
    const archive = await buildPackage(work, { name: "calm", version: "1.0.0" });
    const r = await unixRequest(d.socketPath, "POST", "/admin/api/plugins", readFileSync(archive), gz);
    assert.equal(r.status, 201, r.body);
    await until(async () => (await fetch(`${url}/plugin/calm/api/who`).catch(() => null))?.status === 200);
    const hostPid = async () => Number(readFileSync(join(home, "run", "hosts", "host-1.pid"), "utf8"));
    const recoveries: number[] = [];
    for (let i = 0; i < 5; i++) {
      const pid = await hostPid();
      const t = performance.now();
      process.kill(pid, "SIGKILL");
      // Sent right after the kill: it waits in the supervisor's queue and is answered by the next host.
      const res = await fetch(`${url}/plugin/calm/api/who`, { signal: AbortSignal.timeout(20_000) });
      if (res.status !== 200) {
        const plugins = await unixRequest(d.socketPath, "GET", "/admin/api/plugins");
        assert.fail(`kill ${i + 1}: ${res.status} ${await res.text()}; plugins: ${plugins.body}`);
      }
      assert.equal(((await res.json()) as { name: string }).name, "calm");
      recoveries.push(performance.now() - t);
      assert.notEqual(await hostPid(), pid);
    }
    recoveries.sort((a, b) => a - b);
    console.log(`host kill -9 -> serving: p50 ${recoveries[2].toFixed(0)} ms, max ${recoveries[4].toFixed(0)} ms`);
    const health = await getJson(`${url}/health`);
    assert.equal(health.status, "ok");
    // The supervisor dies: its host follows at once.
    const pid = await hostPid();
    d.child.kill("SIGKILL");
    await d.exited;
    await until(
      () => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      },
      10_000,
      "host gone with its supervisor",
    );
    // Restart restores everything.
    const again = spawnDaemon(home);
    try {
      const url2 = await again.url;
      await until(async () => (await fetch(`${url2}/plugin/calm/api/who`).catch(() => null))?.status === 200);
    } finally {
      again.child.kill("SIGTERM");
      await again.exited;
    }
  } finally {
    d.child.kill("SIGKILL");
    rmSync(work, { recursive: true, force: true });
  }
});

/**
 * `isolation: "shared"` plugins with a real daemon, real host processes and real HTTP / WebSocket clients: they serve
 * routes, static files and ws like a worker plugin but on the host's main thread (each with its own SDK instance);
 * an upgrade swaps with no failed request; the operator's policy refuses them with a clear error; the host is
 * recycled by itself once unloaded generations pass the threshold; a shared plugin that kills its host is
 * attributed and quarantined like any plugin.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { Agent, get } from "node:http";
import { test } from "node:test";
import { WebSocket } from "ws";
import type { RecycleResult } from "../../src/supervisor/plugin-hosts.js";
import { sharedPolicyFromEnv } from "../../src/supervisor/shared-policy.js";
import { buildPackage, type PluginSource, startTestDaemon, type TestDaemon, until } from "../lifecycle/helpers.js";

const gz = { "content-type": "application/gzip" };

/** A shared plugin: /where says which process and thread runs it and what its own SDK's getConfig() says. */
function shared(name: string, version: string, more: Partial<PluginSource> = {}): PluginSource {
  return {
    name,
    version,
    manifest: { isolation: "shared" },
    extra: `import { isMainThread } from "node:worker_threads";
import { getConfig } from "@hecate/sdk";
${more.extra ?? ""}`,
    init: more.init,
    routes: `{ method: "GET", path: "/where", handler: () => ({ pid: process.pid, main: isMainThread, plugin: getConfig().pluginName }) },
      { kind: "ws", path: "/echo", handlers: { onMessage: (c, m) => c.send(${JSON.stringify(version)} + ":" + m) } },
      ${more.routes ?? ""}`,
  };
}

async function install(d: TestDaemon, p: PluginSource): Promise<Response> {
  return d.api("POST", "/admin/api/plugins", { body: readFileSync(await buildPackage(d.work, p)), headers: gz });
}

async function upgrade(d: TestDaemon, p: PluginSource): Promise<Response> {
  return d.api("POST", `/admin/api/plugins/${p.name}/upgrade`, {
    body: readFileSync(await buildPackage(d.work, p)),
    headers: gz,
  });
}

async function json(url: string): Promise<Record<string, unknown>> {
  const r = await fetch(url);
  assert.equal(r.status, 200, `${url}: ${r.status}`);
  return (await r.json()) as Record<string, unknown>;
}

/**
 * GET loops on `url` over keep-alive connections until stopped: every answer by status (0 = the request failed)
 * and every body seen. node:http, not fetch: these thousands of plugin answers need no contract check.
 */
function traffic(url: string, lanes = 4): { stop(): Promise<{ counts: Map<number, number>; bodies: Set<string> }> } {
  const counts = new Map<number, number>();
  const bodies = new Set<string>();
  const agent = new Agent({ keepAlive: true, maxSockets: lanes });
  let running = true;
  const once = () =>
    new Promise<[number, string]>((resolve) => {
      const req = get(url, { agent, timeout: 10_000 }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve([res.statusCode ?? 0, body]));
        res.on("error", () => resolve([0, ""]));
      });
      req.on("error", () => resolve([0, ""]));
      req.on("timeout", () => req.destroy());
    });
  const lane = async () => {
    while (running) {
      const [status, body] = await once();
      bodies.add(body);
      counts.set(status, (counts.get(status) ?? 0) + 1);
    }
  };
  const all = Array.from({ length: lanes }, lane);
  return {
    async stop() {
      running = false;
      await Promise.all(all);
      agent.destroy();
      return { counts, bodies };
    },
  };
}

function echo(url: string, text: string): Promise<string> {
  const w = new WebSocket(url);
  return new Promise((resolve, reject) => {
    w.once("open", () => w.send(text));
    w.once("message", (m) => {
      resolve(String(m));
      w.close();
    });
    w.once("error", reject);
  });
}

test("a shared plugin serves its routes, static files and ws on the host's main thread, with its own SDK config; an upgrade swaps with no failed request", async () => {
  const d = await startTestDaemon();
  try {
    assert.equal((await install(d, shared("alpha", "1.0.0"))).status, 201);
    assert.equal((await install(d, shared("beta", "1.0.0"))).status, 201);
    const hostPid = d.hosts.pids()[1];
    for (const name of ["alpha", "beta"]) {
      const w = await json(`${d.url}/plugin/${name}/api/where`);
      assert.deepEqual(w, { pid: hostPid, main: true, plugin: name }, "direct calls in the main host, own config");
      const page = await fetch(`${d.url}/plugin/${name}/`);
      assert.equal(await page.text(), `<h1>${name} 1.0.0</h1>`);
      assert.equal(await echo(`ws://127.0.0.1:${d.port}/plugin/${name}/api/echo`, "hi"), "1.0.0:hi");
    }
    const view = await (await d.api("GET", "/admin/api/plugins/alpha")).json();
    assert.equal(view.status, "loaded");

    // Upgrade under traffic: no failed request, the new version answers afterwards, in the same host process.
    const load = traffic(`${d.url}/plugin/alpha/api/who`);
    await new Promise((r) => setTimeout(r, 200));
    for (const v of ["1.1.0", "1.2.0", "1.3.0"]) assert.equal((await upgrade(d, shared("alpha", v))).status, 200);
    await new Promise((r) => setTimeout(r, 200));
    const { counts, bodies } = await load.stop();
    assert.deepEqual([...counts.keys()], [200], `answers by status: ${JSON.stringify([...counts])}`);
    const versions = [...new Set([...bodies].map((b) => JSON.parse(b).version as string))].sort();
    assert.deepEqual(versions.at(-1), "1.3.0");
    assert.ok(versions.length >= 2, `versions seen during the upgrades: ${versions}`);
    assert.deepEqual(await json(`${d.url}/plugin/alpha/api/who`), { name: "alpha", version: "1.3.0" });
    assert.equal(await echo(`ws://127.0.0.1:${d.port}/plugin/alpha/api/echo`, "x"), "1.3.0:x");
    assert.equal(d.hosts.pids()[1], hostPid, "an upgrade swaps inside the host");
  } finally {
    await d.stop();
  }
});

test("policy: with shared plugins refused, the load fails with stage policy and says how to allow it", async () => {
  const d = await startTestDaemon({ shared: { allow: false } });
  try {
    const r = await install(d, shared("gamma", "1.0.0"));
    assert.equal(r.status, 422);
    const view = await (await d.api("GET", "/admin/api/plugins/gamma")).json();
    assert.equal(view.status, "failed");
    assert.equal(view.lastError.stage, "policy");
    assert.match(view.lastError.message, /isolation "shared".*refuses \(HECATE_ALLOW_SHARED=0\)/);
    assert.equal((await fetch(`${d.url}/plugin/gamma/api/who`)).status, 503);
    // A worker plugin is not affected.
    assert.equal((await install(d, { name: "delta", version: "1.0.0" })).status, 201);
    assert.equal((await fetch(`${d.url}/plugin/delta/api/who`)).status, 200);
  } finally {
    await d.stop();
  }
});

test("the host is recycled by itself once unloaded shared generations pass the threshold", async () => {
  const d = await startTestDaemon({ shared: { recycleAfterGenerations: 3 } });
  try {
    assert.equal((await install(d, shared("eps", "1.0.0"))).status, 201);
    assert.equal((await install(d, { name: "wrk", version: "1.0.0" })).status, 201);
    const first = d.hosts.pids()[1]!;
    const recycled = once(d.hosts, "host-recycled") as Promise<[RecycleResult]>;
    const load = traffic(`${d.url}/plugin/eps/api/who`, 2);
    for (const v of ["1.0.1", "1.0.2", "1.0.3"]) assert.equal((await upgrade(d, shared("eps", v))).status, 200);
    const [r] = await recycled;
    const { counts } = await load.stop();
    assert.deepEqual([...counts.keys()], [200], `answers by status: ${JSON.stringify([...counts])}`);
    assert.match(r.reason, /3 unloaded shared plugin generations \(threshold 3\)/);
    assert.equal(r.oldPid, first);
    assert.notEqual(r.newPid, first);
    assert.equal(d.hosts.pids()[1], r.newPid);
    assert.throws(() => process.kill(first, 0), { code: "ESRCH" }, "the old host process is gone");
    assert.deepEqual(await json(`${d.url}/plugin/eps/api/who`), { name: "eps", version: "1.0.3" });
    assert.equal((await json(`${d.url}/plugin/eps/api/where`)).pid, r.newPid);
    assert.deepEqual(await json(`${d.url}/plugin/wrk/api/who`), { name: "wrk", version: "1.0.0" });
  } finally {
    await d.stop();
  }
});

test("the bytes threshold recycles too (generations threshold off)", async () => {
  const d = await startTestDaemon({ shared: { recycleAfterGenerations: 0, recycleAfterBytes: 1 } });
  try {
    assert.equal((await install(d, shared("zeta", "1.0.0"))).status, 201);
    const first = d.hosts.pids()[1]!;
    const recycled = once(d.hosts, "host-recycled") as Promise<[RecycleResult]>;
    assert.equal((await upgrade(d, shared("zeta", "1.0.1"))).status, 200);
    const [r] = await recycled;
    assert.match(r.reason, /MiB left by unloaded shared plugin generations \(threshold 0 MiB\)/);
    assert.equal(r.oldPid, first);
    assert.deepEqual(await json(`${d.url}/plugin/zeta/api/who`), { name: "zeta", version: "1.0.1" });
  } finally {
    await d.stop();
  }
});

test("a shared plugin that kills its host at init is attributed and quarantined; one that kills it at request time is found by isolation", async () => {
  const d = await startTestDaemon({ hosts: { crashesBeforeIsolation: 2 } });
  try {
    assert.equal((await install(d, { name: "calm", version: "1.0.0" })).status, 201);
    const r = await install(d, shared("boom", "1.0.0", { init: `process.kill(process.pid, "SIGKILL");` }));
    assert.equal(r.status, 422);
    const view = await until(
      async () => {
        const v = await (await d.api("GET", "/admin/api/plugins/boom")).json();
        return v.lastError?.code === "quarantined" ? v : null;
      },
      60_000,
      "boom quarantined",
    );
    assert.match(view.lastError.message, /plugin host died \(signal SIGKILL\) while loading it/);
    for (const c of await d.lifecycle.hostCrashes()) assert.deepEqual(c.loading, ["boom"]);

    // Serve time: a route that ends the host process. After 2 host deaths it is isolated, then named.
    const killer = shared("bang", "1.0.0", {
      routes: `{ method: "GET", path: "/die", handler: () => { setImmediate(() => process.exit(7)); return { bye: true }; } },`,
    });
    assert.equal((await install(d, killer)).status, 201);
    await until(
      async () => {
        await fetch(`${d.url}/plugin/bang/api/die`).catch(() => {});
        const v = await (await d.api("GET", "/admin/api/plugins/bang")).json();
        return v.lastError?.code === "quarantined" ? v : null;
      },
      90_000,
      "bang quarantined",
    );
    const deaths = (await d.lifecycle.hostCrashes()).filter((c) => c.code === 7);
    assert.ok(deaths.length >= 2, `host deaths by exit 7: ${deaths.length}`);
    assert.ok(
      deaths.every((c) => c.active.includes("bang")),
      "bang was active before every death",
    );
    await until(async () => (await fetch(`${d.url}/plugin/calm/api/who`)).status === 200, 20_000, "calm serving");
  } finally {
    await d.stop();
  }
});

test("policy from the environment: HECATE_ALLOW_SHARED and the recycle thresholds, bad values named", () => {
  assert.deepEqual(sharedPolicyFromEnv({}), {});
  assert.deepEqual(
    sharedPolicyFromEnv({
      HECATE_ALLOW_SHARED: "0",
      HECATE_SHARED_RECYCLE_GENERATIONS: "4",
      HECATE_SHARED_RECYCLE_MB: "64",
    }),
    { allow: false, recycleAfterGenerations: 4, recycleAfterBytes: 64 * 2 ** 20 },
  );
  assert.deepEqual(sharedPolicyFromEnv({ HECATE_ALLOW_SHARED: "1" }), { allow: true });
  assert.throws(() => sharedPolicyFromEnv({ HECATE_ALLOW_SHARED: "maybe" }), /HECATE_ALLOW_SHARED must be 0 or 1/);
  assert.throws(
    () => sharedPolicyFromEnv({ HECATE_SHARED_RECYCLE_GENERATIONS: "-1" }),
    /HECATE_SHARED_RECYCLE_GENERATIONS must be a non-negative integer/,
  );
});

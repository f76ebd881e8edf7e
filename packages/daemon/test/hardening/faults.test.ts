/**
 * Fault injection against in-process plugins with WorkerPlugins' production defaults (watchdog 500/2000 ms, heap
 * 128 MiB, restart budget 3 per 5 min). For every fault a prober hits /health every 10 ms and another one hits a
 * healthy neighbour plugin: /health p99 must stay < 100 ms, the neighbour must answer every probe, and the faulty
 * plugin must end the way WorkerPlugins promises (kept running / restarted / disabled).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { WorkerPlugins } from "../../src/worker/worker-plugins.js";
import { type Env, json, raw, setup, whoPlugin, writePlugin } from "../worker/helpers.js";
import { type ProbeResult, startControlServer, startProber } from "./probe.js";

let env: Env;
let control: Awaited<ReturnType<typeof startControlServer>>;
const measured: Record<string, { p99: number; max: number; samples: number; control_p99: number }> = {};

before(async () => {
  control = await startControlServer();
  env = await setup();
  await env.workers.load(
    writePlugin(
      env.home,
      "good",
      "1.0.0",
      whoPlugin(
        "good",
        "1.0.0",
        `function extraRoutes() {
          return [
            { method: "GET", path: "/proto", handler: () => ({ polluted: ({}).polluted ?? null, isAdmin: ({}).isAdmin ?? null, arr: [].evil ?? null }) },
            { method: "GET", path: "/query", handler: (req) => ({ keys: Object.keys(req.query), own: Object.getPrototypeOf(req.query) === Object.prototype || Object.getPrototypeOf(req.query) === null }) },
          ];
        }`,
      ),
    ),
  );
});

after(async () => {
  await env.close();
  await control.close();
  console.log(`# fault /health latency (ms): ${JSON.stringify(measured)}`);
});

/** Resolves with the args of the next `event` emitted for `name`. */
function nextEvent(workers: WorkerPlugins, event: string, name: string, ms = 15_000): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      workers.off(event, on);
      reject(new Error(`no ${event} event for ${name} within ${ms} ms`));
    }, ms);
    const on = (n: string, ...rest: unknown[]) => {
      if (n !== name) return;
      clearTimeout(t);
      workers.off(event, on);
      resolve(rest);
    };
    workers.on(event, on);
  });
}

/**
 * Runs `fault` under three probers (daemon /health, the neighbour plugin, the control server) for at least `minMs`,
 * so quick faults still get ~200 samples (p99 is then not just the single worst one), and checks the daemon and the
 * neighbour stayed healthy. /health p99 must be < 100 ms. When the machine itself is slow (the control server's p99
 * too: a shared 2-core CI box, Chromium starting in a parallel test file), the bound becomes 2x the control's p99
 * + 50 ms: what the test must catch is the daemon's main thread stalling (a fault leaking into it shows up as
 * seconds), not the box being busy. Quiet-machine numbers are printed at the end.
 */
async function underProbe(label: string, fault: () => Promise<void>, minMs = 2000): Promise<void> {
  const health = startProber(`${env.base}/health`, 10);
  const neighbour = startProber(`${env.base}/plugin/good/api/who`, 10);
  const baseline = startProber(control.url, 10);
  const until = Date.now() + minMs;
  try {
    await fault();
    if (Date.now() < until) await new Promise((r) => setTimeout(r, until - Date.now()));
  } finally {
    // Stop the probers whatever happened; a failing fault keeps its own error (asserting here would mask it).
    const h = await health.stop();
    const n = await neighbour.stop();
    const c = await baseline.stop();
    measured[label] = { p99: round(h.p99), max: round(h.max), samples: h.samples, control_p99: round(c.p99) };
    checks = { h, n, c };
  }
  const { h, n, c } = checks;
  assert.deepEqual(h.failures, [], `${label}: /health failures`);
  assert.deepEqual(n.failures, [], `${label}: neighbour failures`);
  assert.ok(h.samples >= 20, `${label}: only ${h.samples} probes`);
  const bound = Math.max(100, 2 * c.p99 + 50);
  assert.ok(
    h.p99 < bound,
    `${label}: /health p99 ${h.p99.toFixed(1)} ms (max ${h.max.toFixed(1)}, control p99 ${c.p99.toFixed(1)})`,
  );
}
let checks: { h: ProbeResult; n: ProbeResult; c: ProbeResult };

const round = (x: number) => Math.round(x * 10) / 10;

/** A plugin whose `/arm` route schedules `body` outside any request (so the fault is not tied to a reply). */
async function loadArmed(
  name: string,
  body: string,
  handlerBody = `setTimeout(() => { ${body} }, 5); return "armed";`,
) {
  const code = whoPlugin(
    name,
    "1.0.0",
    `function extraRoutes() { return [{ method: "GET", path: "/arm", handler: () => { ${handlerBody} } }]; }`,
  );
  return env.workers.load(writePlugin(env.home, name, "1.0.0", code));
}

/** Triggers a crash via /arm and waits for crashed + restarted; returns the crash reason. */
async function crashAndRestart(name: string): Promise<string> {
  const before = env.workers.get(name)!;
  const crashed = nextEvent(env.workers, "crashed", name);
  const restarted = nextEvent(env.workers, "restarted", name);
  const arm = await raw(env.port, "GET", `/plugin/${name}/api/arm`);
  // The reply may win the race against the crash (200) or lose it (502); never anything else.
  assert.ok(arm.status === 200 || arm.status === 502, `arm -> ${arm.status} ${arm.body}`);
  const [reason] = (await crashed) as [string];
  await restarted;
  const now = env.workers.get(name)!;
  assert.equal(now.status, "running");
  assert.equal(now.restarts, before.restarts + 1);
  assert.notEqual(now.threadId, before.threadId);
  assert.equal(json(await raw(env.port, "GET", `/plugin/${name}/api/who`)).name, name, "serves after restart");
  return reason;
}

test("throw inside a timer: the worker crashes, is restarted, serves again", async () => {
  await loadArmed("timer-throw", `throw new Error("timer boom");`);
  let reason = "";
  await underProbe("timer_throw", async () => {
    reason = await crashAndRestart("timer-throw");
  });
  assert.match(reason, /timer boom/);
  await env.workers.unload("timer-throw");
});

test("unhandled rejection: logged, the plugin keeps its worker and serves", async () => {
  await loadArmed("rejecter", `Promise.reject(new Error("nobody catches this"));`);
  const thread = env.workers.get("rejecter")!.threadId;
  const logs: string[] = [];
  let onLogged = () => {};
  const logged = new Promise<void>((resolve) => {
    onLogged = resolve;
  });
  const onLog = (e: { plugin: string; msg: string }) => {
    if (e.plugin !== "rejecter") return;
    logs.push(e.msg);
    onLogged();
  };
  env.workers.on("log", onLog);
  try {
    await underProbe("unhandled_rejection", async () => {
      assert.equal((await raw(env.port, "GET", "/plugin/rejecter/api/arm")).status, 200);
      await logged;
      assert.equal((await raw(env.port, "GET", "/plugin/rejecter/api/who")).status, 200);
    });
  } finally {
    env.workers.off("log", onLog);
  }
  assert.match(logs.join("\n"), /unhandled rejection: nobody catches this/);
  const info = env.workers.get("rejecter")!;
  assert.equal(info.threadId, thread);
  assert.equal(info.restarts, 0);
  await env.workers.unload("rejecter");
});

test("process.exit from a timer ends only the worker; restarted", async () => {
  await loadArmed("exiter", "process.exit(3);");
  let reason = "";
  await underProbe("process_exit", async () => {
    reason = await crashAndRestart("exiter");
  });
  assert.match(reason, /exited with code 3/);
  await env.workers.unload("exiter");
});

test("infinite loop outside a request: watchdog terminates the worker; restarted", async () => {
  await loadArmed("looper", "for (;;) {}");
  let reason = "";
  await underProbe("infinite_loop", async () => {
    reason = await crashAndRestart("looper");
  });
  assert.match(reason, /watchdog/);
  await env.workers.unload("looper");
});

test("heap bomb: the worker hits its heap limit, the daemon does not; restarted", async () => {
  await loadArmed("heapbomb", "const keep = []; for (;;) keep.push(new Array(1e5).fill(Math.random()));");
  const heapBefore = process.memoryUsage().heapUsed;
  let reason = "";
  await underProbe("heap_bomb", async () => {
    reason = await crashAndRestart("heapbomb");
  });
  // The worker dies of its heap limit, or first of the watchdog (the bomb's loop never yields: on a loaded machine the
  // missed heartbeats can come before the limit). Either way the worker died, not the daemon.
  assert.match(reason, /memory|heap|watchdog/i);
  // The bomb lived in the worker's isolate: the daemon's own heap did not take it.
  assert.ok(process.memoryUsage().heapUsed - heapBefore < 64 * 1024 * 1024, "main heap grew by the bomb");
  await env.workers.unload("heapbomb");
});

test("3 s synchronous busy loop in a handler: watchdog kills it (502), neighbour unaffected; restarted", async () => {
  await loadArmed("blocker", "", `const end = Date.now() + 3000; while (Date.now() < end) {} return "finished";`);
  await underProbe("event_loop_block_3s", async () => {
    const restarted = nextEvent(env.workers, "restarted", "blocker");
    const t0 = Date.now();
    const r = await raw(env.port, "GET", "/plugin/blocker/api/arm");
    // Default watchdog: no pong for 2000 ms -> killed before the 3 s loop could finish.
    assert.equal(r.status, 502, r.body.toString());
    assert.equal(json(r).error.code, "plugin_crashed");
    assert.match(json(r).error.message, /watchdog/);
    assert.ok(Date.now() - t0 < 3000, `answered after ${Date.now() - t0} ms`);
    await restarted;
  });
  assert.equal((await raw(env.port, "GET", "/plugin/blocker/api/who")).status, 200);
  await env.workers.unload("blocker");
});

test("prototype pollution inside a plugin reaches neither the daemon nor another plugin", async () => {
  const code = whoPlugin(
    "polluter",
    "1.0.0",
    `
    Object.prototype.polluted = "yes";
    Object.prototype.isAdmin = true;
    Array.prototype.evil = "yes";
    Object.defineProperty(Object.prototype, "toJSON", { value: undefined, writable: true, configurable: true });
    function extraRoutes() {
      return [
        { method: "GET", path: "/proto", handler: () => ({ polluted: ({}).polluted ?? null, isAdmin: ({}).isAdmin ?? null }) },
        // A reply built to pollute whoever merges it naively: own "__proto__" keys in body and headers.
        { method: "GET", path: "/evil-reply", handler: () => ({
            status: 200,
            headers: JSON.parse('{"__proto__": {"x-injected": "1", "polluted": "via-header"}, "x-ok": "1"}'),
            body: JSON.parse('{"__proto__": {"polluted": "via-body"}, "constructor": {"prototype": {"polluted": "deep"}}}'),
          }) },
      ];
    }`,
  );
  await env.workers.load(writePlugin(env.home, "polluter", "1.0.0", code));
  await underProbe("prototype_pollution", async () => {
    // The pollution really happened inside the polluter's own realm...
    assert.deepEqual(json(await raw(env.port, "GET", "/plugin/polluter/api/proto")), {
      polluted: "yes",
      isAdmin: true,
    });
    const evil = await raw(env.port, "GET", "/plugin/polluter/api/evil-reply");
    assert.equal(evil.status, 200);
    assert.equal(evil.headers["x-ok"], "1");
    assert.equal(evil.headers["x-injected"], undefined);
    // ...but not in the daemon...
    const probe: Record<string, unknown> = {};
    assert.equal(probe.polluted, undefined);
    assert.equal(probe.isAdmin, undefined);
    assert.equal(([] as unknown as { evil?: string }).evil, undefined);
    // ...nor in the neighbour's realm.
    assert.deepEqual(json(await raw(env.port, "GET", "/plugin/good/api/proto")), {
      polluted: null,
      isAdmin: null,
      arr: null,
    });
    // Query keys that name Object.prototype members are plain data for the plugin, not a 500.
    const q = await raw(
      env.port,
      "GET",
      "/plugin/good/api/query?__proto__[polluted]=1&__proto__=x&constructor=1&toString=2&hasOwnProperty=3&constructor[prototype][polluted]=4",
    );
    assert.equal(q.status, 200, q.body.toString());
    assert.deepEqual(json(q).keys.sort(), [
      "__proto__",
      "__proto__[polluted]",
      "constructor",
      "constructor[prototype][polluted]",
      "hasOwnProperty",
      "toString",
    ]);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
  await env.workers.unload("polluter");
});

test("a plugin that crashes right after every start is restarted 3 times, then disabled", async () => {
  const code = whoPlugin("crashloop", "1.0.0", `setTimeout(() => { throw new Error("dies at boot"); }, 20);`);
  const disabled = nextEvent(env.workers, "disabled", "crashloop", 30_000);
  let crashes = 0;
  const onCrash = (n: string) => {
    if (n === "crashloop") crashes++;
  };
  env.workers.on("crashed", onCrash);
  try {
    await underProbe("crash_loop_to_disabled", async () => {
      await env.workers.load(writePlugin(env.home, "crashloop", "1.0.0", code));
      const [reason] = (await disabled) as [string];
      assert.match(reason, /crashed 4 times/);
    });
  } finally {
    env.workers.off("crashed", onCrash);
  }
  assert.equal(crashes, 4);
  assert.equal(env.workers.get("crashloop")?.status, "disabled");
  assert.equal((await raw(env.port, "GET", "/plugin/crashloop/api/who")).status, 404);
  assert.equal(json(await raw(env.port, "GET", "/plugin/good/api/who")).name, "good");
  await env.workers.unload("crashloop");
});

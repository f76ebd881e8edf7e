import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { standaloneConfig } from "../src/config.js";
import type { PluginModule } from "../src/contract.js";
import { pluginPaths } from "../src/paths.js";
import type { WorkerToMain } from "../src/protocol.js";
import { Dispatcher } from "../src/runtime/dispatcher.js";
import { createTestHarness } from "../src/runtime/harness.js";
import * as scheduler from "../src/scheduler.js";

/** A promise plus its resolve, for waiting on events from inside jobs. */
function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

type Logged = { level: string; msg: string; fields?: Record<string, unknown> };

test("interval job runs repeatedly and records stats", async () => {
  const s = scheduler.createScheduler();
  const fifth = deferred();
  const job = s.every(
    10,
    ({ run }) => {
      if (run === 5) fifth.resolve();
    },
    { name: "tick" },
  );
  const t0 = Date.now();
  await fifth.promise;
  assert.ok(Date.now() - t0 >= 40, "five runs at 10 ms take at least ~40 ms");
  assert.equal(job.name, "tick");
  assert.ok(job.stats.runs >= 5);
  assert.equal(job.stats.errors, 0);
  assert.ok(job.stats.lastRunAt! >= t0);
  assert.ok(job.nextRunAt()! > Date.now() - 20);
  await s.stopAll();
  assert.equal(job.stopped, true);
  assert.equal(job.nextRunAt(), null);
  assert.equal(s.jobs().length, 0);
});

test("no overlapping runs of one job unless allowOverlap", async () => {
  const s = scheduler.createScheduler();
  let active = 0;
  let maxActive = 0;
  const gate = deferred();
  const release = deferred();
  const slow = s.every(5, async ({ run }) => {
    active++;
    maxActive = Math.max(maxActive, active);
    if (run === 1) {
      gate.resolve();
      await release.promise;
    }
    active--;
  });
  await gate.promise;
  // While run 1 is held, ticks keep coming and are skipped.
  while (slow.stats.skipped < 3) await sleep(5);
  assert.equal(slow.stats.runs, 1);
  assert.equal(slow.stats.running, 1);
  await slow.trigger(); // a manual trigger during a run is skipped too
  assert.equal(slow.stats.runs, 1);
  release.resolve();
  while (slow.stats.runs < 3) await sleep(5);
  assert.equal(maxActive, 1);
  await slow.stop();

  let concurrent = 0;
  let maxConcurrent = 0;
  const overlapping = deferred();
  const hold = deferred();
  const ov = s.every(
    5,
    async () => {
      concurrent++;
      maxConcurrent = Math.max(maxConcurrent, concurrent);
      if (concurrent === 3) overlapping.resolve();
      await hold.promise;
      concurrent--;
    },
    { allowOverlap: true },
  );
  await overlapping.promise;
  assert.ok(maxConcurrent >= 3);
  assert.equal(ov.stats.skipped, 0);
  hold.resolve();
  await s.stopAll();
  assert.equal(ov.stats.running, 0, "stopAll waited for running runs");
});

test("errors are logged and counted, the job keeps running", async () => {
  const logs: Logged[] = [];
  const s = scheduler.createScheduler({ log: (level, msg, fields) => logs.push({ level, msg, fields }) });
  const sixth = deferred();
  const job = s.every(
    5,
    async ({ run }) => {
      if (run === 6) sixth.resolve();
      if (run % 2 === 1) throw new Error(`boom ${run}`);
      if (run === 4) return Promise.reject("plain rejection");
    },
    { name: "flaky" },
  );
  await sixth.promise;
  await job.stop();
  assert.ok(job.stats.runs >= 6);
  assert.ok(job.stats.errors >= 4, `errors ${job.stats.errors}`);
  assert.ok(job.stats.lastError && /boom|plain rejection/.test(job.stats.lastError.message));
  const errors = logs.filter((l) => l.level === "error");
  assert.equal(errors.length, job.stats.errors);
  assert.match(errors[0].msg, /^scheduled job flaky failed: boom 1$/);
  assert.equal(errors[0].fields?.job, "flaky");
  assert.ok(errors.some((l) => l.msg.endsWith("plain rejection")));
});

test("cron jobs with seconds fire on second boundaries; bad patterns are typed errors", async () => {
  const s = scheduler.createScheduler();
  const starts: number[] = [];
  const second = deferred();
  const job = s.cron("* * * * * *", ({ scheduledAt }) => {
    starts.push(scheduledAt);
    if (starts.length === 2) second.resolve();
  });
  assert.equal(job.kind, "cron");
  const next = job.nextRunAt()!;
  assert.equal(next % 1000, 0, "next run is on a whole second");
  await second.promise;
  await s.stopAll();
  assert.ok(starts[1] - starts[0] >= 500 && starts[1] - starts[0] <= 1500, `spacing ${starts[1] - starts[0]}`);
  for (const t of starts) assert.ok(t % 1000 < 400, `tick ${t} near a second boundary`);

  assert.throws(
    () => s.cron("61 * * * * *", () => {}),
    (e: unknown) => e instanceof scheduler.ScheduleError && e.code === "invalid_schedule" && e.field === "pattern",
  );
  assert.throws(() => s.every(0, () => {}), scheduler.ScheduleError);
  assert.throws(() => s.every(10, () => {}, { jitterMs: -1 }), scheduler.ScheduleError);
});

test("jitter delays each run by random * jitterMs", async () => {
  const s = scheduler.createScheduler();
  const delays: number[] = [];
  const third = deferred();
  s.every(
    10,
    ({ scheduledAt }) => {
      delays.push(Date.now() - scheduledAt);
      if (delays.length === 3) third.resolve();
    },
    { jitterMs: 60, random: () => 0.5, allowOverlap: true },
  );
  await third.promise;
  await s.stopAll();
  // Lower bound exact (30 ms); the upper one leaves room for a loaded CI machine.
  for (const d of delays) assert.ok(d >= 29 && d < 250, `delay ${d} ~ 30 ms`);
  // With the default random source the delays vary and stay within the bound.
  const varied: number[] = [];
  const enough = deferred();
  s.every(
    5,
    ({ scheduledAt }) => {
      varied.push(Date.now() - scheduledAt);
      if (varied.length === 8) enough.resolve();
    },
    { jitterMs: 40, allowOverlap: true },
  );
  await enough.promise;
  await s.stopAll();
  assert.ok(varied.every((d) => d >= 0 && d < 250));
  assert.ok(new Set(varied).size > 1, `delays vary: ${varied.join(",")}`);
});

test("stopping aborts the run's signal and waits for it", async () => {
  const s = scheduler.createScheduler();
  const started = deferred<AbortSignal>();
  let finished = false;
  const job = s.every(
    5,
    async ({ signal }) => {
      started.resolve(signal);
      await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
      await sleep(20);
      finished = true;
    },
    { runImmediately: true },
  );
  const signal = await started.promise;
  await job.stop();
  assert.equal(signal.aborted, true);
  assert.equal(finished, true, "stop() resolved only after the run settled");
});

test("jobs stop at unload: the dispatcher stops schedulers after terminate(), errors go to the plugin log", async (t) => {
  const posted: WorkerToMain[] = [];
  const d = new Dispatcher({ post: (m) => posted.push(m) });
  let runs = 0;
  const failing = deferred();
  const mod: PluginModule = {
    manifest: () => ({ name: "sched", version: "1.0.0" }),
    init() {
      // Module-level helpers: the default scheduler, never stopped by the plugin itself.
      scheduler.every(5, () => {
        runs++;
      });
      scheduler.cron("* * * * * *", () => {});
      scheduler.every(5, () => {
        failing.resolve();
        throw new Error("nope");
      });
    },
  };
  const home = mkdtempSync(join(tmpdir(), "hecate-sched-"));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const ready = await d.load(mod, standaloneConfig("sched", { paths: pluginPaths(home, "sched") }));
  assert.equal(ready.t, "ready");
  await failing.promise;
  while (runs < 3) await sleep(5);
  const jobs = scheduler.defaultInstance().jobs();
  assert.equal(jobs.length, 3);
  await d.terminate(1000);
  assert.ok(jobs.every((j) => j.stopped && j.nextRunAt() === null));
  const after = runs;
  await sleep(40);
  assert.equal(runs, after, "no run after unload");
  const log = posted.find((m) => m.t === "log" && m.level === "error" && m.msg.includes("nope"));
  assert.ok(log, "the failure reached the plugin's log through the host");
  assert.equal(scheduler.defaultInstance().jobs().length, 0, "a fresh default scheduler after unload");
});

test("a plugin calling stopAll() in terminate() through the harness", async () => {
  let runs = 0;
  const twice = deferred();
  const mod: PluginModule = {
    manifest: () => ({ name: "sched2", version: "1.0.0" }),
    init() {
      scheduler.every(5, () => {
        if (++runs === 2) twice.resolve();
      });
    },
    routes: () => [
      {
        method: "GET",
        path: "/stats",
        handler: () => ({
          jobs: scheduler
            .defaultInstance()
            .jobs()
            .map((j) => j.stats),
        }),
      },
    ],
    terminate: () => scheduler.stopAll(),
  };
  const h = await createTestHarness(mod);
  await twice.promise;
  const { url } = await h.listen();
  const res = (await (await fetch(`${url}/stats`)).json()) as { jobs: scheduler.JobStats[] };
  assert.equal(res.jobs.length, 1);
  assert.ok(res.jobs[0].runs >= 2);
  const jobs = scheduler.defaultInstance().jobs();
  await h.close();
  assert.ok(jobs[0].stopped);
});

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter, once } from "node:events";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { PluginModule } from "../src/contract.js";
import { createTestHarness } from "../src/runtime/harness.js";
import * as supervisor from "../src/supervisor.js";

/**
 * Real async children: each run is a timer loop ticking until it is stopped, crashes or exits. `log` records
 * "start:id#n" / "stop:id#n" in order, so the tests can check exactly who was restarted and in which order.
 */
class Lab extends EventEmitter {
  log: string[] = [];
  runs = new Map<string, Run[]>();

  child(id: string, restart?: supervisor.RestartType): supervisor.ChildSpec {
    return { id, restart, start: () => this.startRun(id) };
  }

  private startRun(id: string): Run {
    const list = this.runs.get(id) ?? [];
    const run = new Run(id, list.length + 1, this);
    list.push(run);
    this.runs.set(id, list);
    this.log.push(`start:${run.name}`);
    this.emit("started", run);
    return run;
  }

  latest(id: string): Run {
    return this.runs.get(id)!.at(-1)!;
  }

  /** Resolves when `n` more runs have started (one listener counting, so back-to-back starts are not missed). */
  starts(n: number): Promise<void> {
    return new Promise((resolve) => {
      let left = n;
      const onStart = () => {
        if (--left > 0) return;
        this.off("started", onStart);
        resolve();
      };
      this.on("started", onStart);
    });
  }
}

class Run {
  readonly done: Promise<void>;
  ticks = 0;
  stopped = false;
  private timer: NodeJS.Timeout;
  private finish!: { resolve: () => void; reject: (e: Error) => void };

  constructor(
    readonly id: string,
    readonly n: number,
    private readonly lab: Lab,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.finish = { resolve, reject };
    });
    this.done.catch(() => {});
    this.timer = setInterval(() => this.ticks++, 1);
  }

  get name(): string {
    return `${this.id}#${this.n}`;
  }

  crash(message = "boom"): void {
    clearInterval(this.timer);
    this.finish.reject(new Error(message));
  }

  exit(): void {
    clearInterval(this.timer);
    this.finish.resolve();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.lab.log.push(`stop:${this.name}`);
    await new Promise((r) => setImmediate(r)); // stopping takes a turn, like closing a socket
    clearInterval(this.timer);
    this.finish.resolve();
  }
}

test("one_for_one: only the crashed child is restarted", async () => {
  const lab = new Lab();
  const sup = await supervisor.start({ strategy: "one_for_one", children: ["a", "b", "c"].map((id) => lab.child(id)) });
  assert.deepEqual(lab.log, ["start:a#1", "start:b#1", "start:c#1"]);
  const restarted = once(sup, "restart");
  const started = once(sup, "started"); // after the new run's handle is in place
  lab.latest("b").crash();
  assert.deepEqual((await started)[0], { id: "b", restarts: 1 });
  assert.deepEqual((await restarted)[0], { id: "b", reason: "exited" });
  assert.deepEqual(lab.log.slice(3), ["start:b#2"]);
  assert.deepEqual(
    sup.which().map((c) => [c.id, c.status, c.restarts]),
    [
      ["a", "running", 0],
      ["b", "running", 1],
      ["c", "running", 0],
    ],
  );
  await sup.stop();
  assert.deepEqual(lab.log.slice(4), ["stop:c#1", "stop:b#2", "stop:a#1"]);
  await sup.done; // resolves on a normal stop
});

test("one_for_all: every child is stopped (reverse order) and restarted (start order)", async () => {
  const lab = new Lab();
  const sup = await supervisor.start({ strategy: "one_for_all", children: ["a", "b", "c"].map((id) => lab.child(id)) });
  lab.latest("b").crash();
  await lab.starts(3);
  assert.deepEqual(lab.log.slice(3), ["stop:c#1", "stop:a#1", "start:a#2", "start:b#2", "start:c#2"]);
  assert.ok(lab.runs.get("a")![0].stopped && lab.runs.get("c")![0].stopped);
  await sup.stop();
});

test("rest_for_one: the crashed child and the ones started after it are restarted", async () => {
  const lab = new Lab();
  const sup = await supervisor.start({
    strategy: "rest_for_one",
    children: ["a", "b", "c", "d"].map((id) => lab.child(id)),
  });
  lab.latest("b").crash();
  await lab.starts(3);
  assert.deepEqual(lab.log.slice(4), ["stop:d#1", "stop:c#1", "start:b#2", "start:c#2", "start:d#2"]);
  assert.equal(lab.runs.get("a")!.length, 1);
  assert.equal(lab.runs.get("a")![0].stopped, false);
  await sup.stop();
});

test("restart types: permanent always, transient only after a crash, temporary never", async () => {
  const lab = new Lab();
  const sup = await supervisor.start({
    intensity: 10,
    children: [lab.child("perm", "permanent"), lab.child("trans", "transient"), lab.child("temp", "temporary")],
  });
  // permanent: a normal exit is restarted too
  lab.latest("perm").exit();
  await lab.starts(1);
  assert.equal(lab.log.at(-1), "start:perm#2");

  // transient: normal exit -> stays down; crash -> restarted
  const exited = once(sup, "exit");
  lab.latest("trans").exit();
  assert.deepEqual((await exited)[0], { id: "trans", kind: "normal", reason: undefined });
  assert.equal(sup.which().find((c) => c.id === "trans")!.status, "exited");
  await sup.startChild(lab.child("trans2", "transient"));
  lab.latest("trans2").crash();
  await lab.starts(1);
  assert.equal(lab.log.at(-1), "start:trans2#2");

  // temporary: a crash removes it, nothing restarted
  const crashed = once(sup, "exit");
  lab.latest("temp").crash("temp died");
  const [info] = await crashed;
  assert.equal(info.id, "temp");
  assert.equal(info.kind, "crash");
  assert.equal((info.reason as Error).message, "temp died");
  await sup.terminateChild("trans2"); // serial: the temp exit was handled before this
  assert.deepEqual(
    sup.which().map((c) => c.id),
    ["perm", "trans"],
  );
  assert.equal(lab.runs.get("temp")!.length, 1);
  await sup.stop();
});

test("a temporary sibling stopped by one_for_all is removed, not restarted", async () => {
  const lab = new Lab();
  const sup = await supervisor.start({
    strategy: "one_for_all",
    children: [lab.child("a"), lab.child("tmp", "temporary"), lab.child("c")],
  });
  lab.latest("c").crash();
  await lab.starts(2);
  assert.deepEqual(lab.log.slice(3), ["stop:tmp#1", "stop:a#1", "start:a#2", "start:c#2"]);
  assert.deepEqual(
    sup.which().map((c) => c.id),
    ["a", "c"],
  );
  await sup.stop();
});

test("intensity: more than `intensity` restarts in `period` -> gives up, stops all children, done rejects", async () => {
  const lab = new Lab();
  let now = 1000;
  const sup = await supervisor.start({
    name: "root",
    intensity: 2,
    period: 1000,
    now: () => now,
    children: [lab.child("a"), lab.child("flaky")],
  });
  // Restarts spread wider than the period never give up.
  for (let i = 0; i < 5; i++) {
    lab.latest("flaky").crash();
    await lab.starts(1);
    now += 600;
  }
  assert.equal(lab.runs.get("flaky")!.length, 6);
  now += 2000; // the old restarts leave the window
  // Three crashes inside one period: the third exceeds intensity 2.
  lab.latest("flaky").crash();
  await lab.starts(1);
  now += 10;
  lab.latest("flaky").crash();
  await lab.starts(1);
  now += 10;
  const gaveUp = once(sup, "gave_up");
  lab.latest("flaky").crash("third strike");
  const [err] = await gaveUp;
  assert.ok(err instanceof supervisor.SupervisorGaveUp);
  assert.equal(err.childId, "flaky");
  assert.match(err.message, /more than 2 restarts in 1000 ms.*third strike/);
  await assert.rejects(sup.done, supervisor.SupervisorGaveUp);
  assert.equal(lab.runs.get("flaky")!.length, 8, "no restart after giving up");
  assert.ok(lab.latest("a").stopped, "the healthy sibling was stopped");
  assert.ok(sup.which().every((c) => c.status !== "running"));
  await assert.rejects(sup.startChild(lab.child("late")), { code: "stopped" });
});

test("escalation: a nested supervisor that gives up is a crashed child of its parent; the root escalates too", async () => {
  const lab = new Lab();
  const root = await supervisor.start({
    name: "root",
    strategy: "one_for_one",
    intensity: 1,
    period: 60_000,
    children: [
      lab.child("logger"),
      supervisor.child("workers", {
        strategy: "one_for_all",
        intensity: 1,
        period: 60_000,
        children: [lab.child("w1"), lab.child("w2")],
      }),
    ],
  });
  assert.deepEqual(lab.log, ["start:logger#1", "start:w1#1", "start:w2#1"]);
  const inner = root.handleOf("workers") as supervisor.Supervisor;

  // 1st crash: the inner supervisor restarts both workers itself (one_for_all).
  lab.latest("w1").crash();
  await lab.starts(2);
  assert.deepEqual(lab.log.slice(3), ["stop:w2#1", "start:w1#2", "start:w2#2"]);

  // 2nd crash: inner intensity exceeded -> inner stops its workers and fails -> root restarts the subtree.
  const rootRestart = once(root, "restart");
  lab.latest("w2").crash();
  await lab.starts(2);
  assert.equal((await rootRestart)[0].id, "workers");
  await assert.rejects(inner.done, supervisor.SupervisorGaveUp);
  assert.deepEqual(lab.log.slice(6), ["stop:w1#2", "start:w1#3", "start:w2#3"]);
  assert.notEqual(root.handleOf("workers"), inner, "a fresh inner supervisor");
  assert.equal(lab.runs.get("logger")!.length, 1, "one_for_one at the root: the logger kept running");

  // The new subtree fails twice again: the root has used its one restart -> it gives up and stops everything.
  lab.latest("w1").crash();
  await lab.starts(2);
  const rootGaveUp = once(root, "gave_up");
  lab.latest("w1").crash();
  const [err] = await rootGaveUp;
  assert.equal(err.supervisor, "root");
  assert.equal(err.childId, "workers");
  assert.match(err.message, /supervisor workers gave up/);
  await assert.rejects(root.done, supervisor.SupervisorGaveUp);
  assert.ok(lab.latest("logger").stopped);
  assert.ok(lab.latest("w2").stopped);
});

test("a child failing to start: the started ones are stopped and start() rejects with a typed error", async () => {
  const lab = new Lab();
  await assert.rejects(
    supervisor.start({
      children: [
        lab.child("a"),
        {
          id: "bad",
          start: () => {
            throw new Error("port in use");
          },
        },
        lab.child("c"),
      ],
    }),
    { code: "start_failed", message: /child bad failed to start: port in use/ },
  );
  assert.deepEqual(lab.log, ["start:a#1", "stop:a#1"]);
  assert.throws(() => new supervisor.Supervisor({ strategy: "all_for_none" as never, children: [] }), {
    code: "invalid_spec",
    field: "strategy",
  });
  assert.throws(() => new supervisor.Supervisor({ children: [lab.child("x"), lab.child("x")] }), {
    code: "duplicate_child",
  });
});

test("a restart whose start() fails counts against the intensity; a stop() that hangs is bounded by shutdownMs", async () => {
  const lab = new Lab();
  let failStarts = 0;
  const flaky: supervisor.ChildSpec = {
    id: "flaky",
    start: () => {
      if (failStarts > 0) {
        failStarts--;
        throw new Error("not yet");
      }
      return lab.child("flaky").start();
    },
  };
  const sup = await supervisor.start({ intensity: 3, period: 60_000, children: [flaky] });
  // Crash + 2 failing starts + 1 good start = 3 restarts: within intensity 3.
  failStarts = 2;
  const exits: string[] = [];
  sup.on("exit", (e: { kind: string }) => exits.push(e.kind));
  const restarted = once(sup, "started");
  lab.latest("flaky").crash();
  assert.deepEqual((await restarted)[0], { id: "flaky", restarts: 3 });
  assert.deepEqual(exits, ["crash", "crash", "crash"]);
  assert.equal(sup.which()[0].status, "running");
  // One more crash: the 4th restart exceeds the intensity.
  const gaveUp = once(sup, "gave_up");
  lab.latest("flaky").crash();
  await gaveUp;

  // A child whose stop() never settles does not hang the supervisor past shutdownMs.
  const stuck: supervisor.ChildSpec = {
    id: "stuck",
    shutdownMs: 50,
    start: () => ({ stop: () => new Promise<void>(() => {}), done: new Promise(() => {}) }),
  };
  const sup2 = await supervisor.start({ children: [stuck] });
  const t0 = performance.now();
  await sup2.stop();
  const ms = performance.now() - t0;
  assert.ok(ms >= 45 && ms < 1000, `stop took ${ms} ms`);

  // A handle without done/EventEmitter is refused at start, and stopped.
  let stopped = false;
  await assert.rejects(
    supervisor.start({
      children: [
        {
          id: "odd",
          start: () =>
            ({
              stop: () => {
                stopped = true;
              },
            }) as unknown as supervisor.ChildHandle,
        },
      ],
    }),
    { code: "start_failed", message: /done/ },
  );
  assert.ok(stopped);
});

/** A real OS process as a child: `crash` on stdin makes it exit 1; stop() = SIGTERM. An EventEmitter handle. */
function processChild(id: string, pids: number[]): supervisor.ChildSpec {
  return {
    id,
    start: async () => {
      const proc: ChildProcess = spawn(
        process.execPath,
        ["-e", "process.stdin.on('data', (d) => { if (String(d).includes('crash')) process.exit(1); });"],
        { stdio: ["pipe", "ignore", "inherit"] },
      );
      await once(proc, "spawn");
      pids.push(proc.pid!);
      const handle = new EventEmitter() as EventEmitter & { stop(): Promise<void>; proc: ChildProcess };
      handle.proc = proc;
      proc.on("exit", (code, signal) => {
        if (code === 0) handle.emit("exit");
        else handle.emit("crash", new Error(`exited with ${code ?? signal}`));
      });
      handle.stop = async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) return;
        const exited = once(proc, "exit");
        proc.kill("SIGTERM");
        await exited;
      };
      return handle;
    },
  };
}

test("real child processes: a crashed process is replaced by a new one; stop() kills them all", async () => {
  const pids: number[] = [];
  const sup = await supervisor.start({ children: [processChild("p1", pids), processChild("p2", pids)] });
  assert.equal(pids.length, 2);
  const restart = once(sup, "restart");
  (sup.handleOf("p1") as unknown as { proc: ChildProcess }).proc.stdin!.write("crash\n");
  await restart;
  while (pids.length < 3) await new Promise((r) => setImmediate(r));
  assert.notEqual(pids[2], pids[0]);
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  assert.ok(alive(pids[2]) && alive(pids[1]));
  await sup.stop();
  assert.ok(!alive(pids[1]) && !alive(pids[2]));
});

test("host: the plugin's supervision trees are stopped at unload", async () => {
  const lab = new Lab();
  const mod: PluginModule = {
    manifest: () => ({ name: "sup-plugin", version: "1.0.0" }),
    async init() {
      await supervisor.start({ children: [lab.child("poller"), lab.child("mailer")] });
    },
  };
  const h = await createTestHarness(mod);
  try {
    assert.deepEqual(lab.log, ["start:poller#1", "start:mailer#1"]);
    await h.close();
    assert.deepEqual(lab.log.slice(2), ["stop:mailer#1", "stop:poller#1"]);
  } finally {
    rmSync(join(h.config.paths.root, "..", ".."), { recursive: true, force: true });
  }
});

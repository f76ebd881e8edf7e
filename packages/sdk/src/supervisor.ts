/**
 * The plugin's supervision tree (the original's OTP supervisors, for async Node work: pollers, consumers, servers).
 *
 *   const sup = await supervisor.start({
 *     strategy: "one_for_one", intensity: 3, period: 5000,
 *     children: [{ id: "poller", start: () => startPoller() }],   // start() -> { stop(), done } or an EventEmitter
 *   });
 *
 * A child's handle signals its end either with `done` (a promise: resolves = normal exit, rejects = crash) or, as an
 * EventEmitter, with `exit` (normal) / `crash` or `error` (abnormal). Restart types: `permanent` (always restarted),
 * `transient` (only after a crash), `temporary` (never, not even when a sibling's restart stops it). More than
 * `intensity` restarts within `period` ms: the supervisor gives up, stops every child (reverse start order) and fails
 * itself: its own `done` rejects with `SupervisorGaveUp`, so a parent supervisor sees a crashed child (nesting: use
 * `child(id, spec)`). Root supervisors are stopped by the host at unload.
 *
 * Written here rather than taken from npm: no maintained library offers OTP restart strategies with intensity/period
 * for promise-based children.
 */
import { EventEmitter } from "node:events";

export type RestartType = "permanent" | "transient" | "temporary";
export type Strategy = "one_for_one" | "one_for_all" | "rest_for_one";

/** What `start()` returns: something that can be stopped and that tells when it ended. */
export type ChildHandle =
  | { stop(): void | Promise<void>; done: Promise<unknown> }
  | (EventEmitter & { stop(): void | Promise<void> });

export interface ChildSpec {
  id: string;
  start(): ChildHandle | Promise<ChildHandle>;
  /** Default "permanent". */
  restart?: RestartType;
  /** How long to wait for `stop()` to finish before moving on (default 5000 ms). */
  shutdownMs?: number;
}

export interface SupervisorSpec {
  /** Default "one_for_one". */
  strategy?: Strategy;
  /** Restarts allowed within `period` (default 3). */
  intensity?: number;
  /** ms (default 5000). */
  period?: number;
  children: ChildSpec[];
  /** For messages and events. */
  name?: string;
  /** Clock for the intensity window (tests). */
  now?: () => number;
}

export type ChildStatus = "running" | "restarting" | "stopped" | "exited";

export interface ChildInfo {
  id: string;
  status: ChildStatus;
  restart: RestartType;
  /** How many times this child was (re)started by the supervisor after its first start. */
  restarts: number;
}

export class SupervisorGaveUp extends Error {
  readonly code = "supervisor_gave_up";
  constructor(
    readonly supervisor: string,
    readonly childId: string,
    readonly restarts: number,
    readonly period: number,
    readonly reason: unknown,
  ) {
    super(
      `supervisor ${supervisor} gave up: more than ${restarts} restarts in ${period} ms (last: child ${childId}: ${describe(reason)})`,
    );
    this.name = "SupervisorGaveUp";
  }
}

export class SupervisorError extends Error {
  constructor(
    readonly code: "invalid_spec" | "duplicate_child" | "unknown_child" | "start_failed" | "stopped",
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = "SupervisorError";
  }
}

interface ChildState {
  spec: ChildSpec;
  restart: RestartType;
  handle: ChildHandle | undefined;
  /** Bumped at every (re)start and stop: exit signals of an older run are ignored. */
  run: number;
  status: ChildStatus;
  restarts: number;
}

type ExitKind = { kind: "normal" } | { kind: "crash"; reason: unknown };

/** Root supervisors of this plugin (stopped by the host at unload). */
const roots = new Set<Supervisor>();

/**
 * Events: `started` ({id, restarts}), `restart` ({id, reason}), `exit` ({id, kind, reason}), `gave_up`
 * (SupervisorGaveUp), `stopped`.
 * It is itself a ChildHandle (`stop()` + `done`), so supervisors nest.
 */
export class Supervisor extends EventEmitter {
  readonly name: string;
  readonly strategy: Strategy;
  readonly intensity: number;
  readonly period: number;
  /** Resolves when stopped, rejects with SupervisorGaveUp when the restart intensity was exceeded. */
  readonly done: Promise<void>;
  private readonly children: ChildState[] = [];
  private readonly now: () => number;
  private restartTimes: number[] = [];
  /** Exit handling and API calls run one at a time, in order. */
  private queue: Promise<void> = Promise.resolve();
  private state: "starting" | "running" | "stopping" | "stopped" | "failed" = "starting";
  private settle!: { resolve: () => void; reject: (e: Error) => void };

  constructor(spec: SupervisorSpec) {
    super();
    this.name = spec.name ?? "supervisor";
    this.strategy = spec.strategy ?? "one_for_one";
    this.intensity = spec.intensity ?? 3;
    this.period = spec.period ?? 5000;
    this.now = spec.now ?? Date.now;
    if (!["one_for_one", "one_for_all", "rest_for_one"].includes(this.strategy))
      throw new SupervisorError("invalid_spec", `unknown strategy ${JSON.stringify(this.strategy)}`, "strategy");
    if (!Number.isInteger(this.intensity) || this.intensity < 0)
      throw new SupervisorError("invalid_spec", "intensity must be an integer >= 0", "intensity");
    if (!(this.period > 0)) throw new SupervisorError("invalid_spec", "period must be > 0", "period");
    this.done = new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    // Nobody awaiting `done` must not turn a give-up into an unhandled rejection; `gave_up` is emitted as well.
    this.done.catch(() => {});
    for (const c of spec.children) this.addSpec(c);
  }

  /**
   * Starts the children in order; if one fails to start, the started ones are stopped and this rejects. Runs in the
   * serial queue, so an early child crashing while later ones start is handled once they all are up.
   */
  startChildren(): Promise<void> {
    return this.serial(() => this.startInOrder());
  }

  private async startInOrder(): Promise<void> {
    for (let i = 0; i < this.children.length; i++) {
      try {
        await this.launch(this.children[i]);
      } catch (err) {
        await this.stopRange(0, i);
        this.state = "failed";
        const e = new SupervisorError(
          "start_failed",
          `${this.name}: child ${this.children[i].spec.id} failed to start: ${describe(err)}`,
        );
        this.settle.reject(e);
        throw e;
      }
    }
    this.state = "running";
  }

  /** Children with their status. */
  which(): ChildInfo[] {
    return this.children.map((c) => ({ id: c.spec.id, status: c.status, restart: c.restart, restarts: c.restarts }));
  }

  /** The running handle of a child (e.g. to talk to it), or undefined. */
  handleOf(id: string): ChildHandle | undefined {
    return this.children.find((c) => c.spec.id === id)?.handle;
  }

  /** Adds and starts a child at the end. */
  startChild(spec: ChildSpec): Promise<void> {
    return this.serial(async () => {
      this.assertActive();
      const c = this.addSpec(spec);
      try {
        await this.launch(c);
      } catch (err) {
        this.children.splice(this.children.indexOf(c), 1);
        throw new SupervisorError("start_failed", `child ${spec.id} failed to start: ${describe(err)}`);
      }
    });
  }

  /** Stops a child and removes it (it is not restarted). */
  terminateChild(id: string): Promise<void> {
    return this.serial(async () => {
      const i = this.children.findIndex((c) => c.spec.id === id);
      if (i < 0) throw new SupervisorError("unknown_child", `no child ${JSON.stringify(id)}`, "id");
      await this.stopChild(this.children[i]);
      this.children.splice(i, 1);
    });
  }

  /** Stops every child (reverse start order); `done` resolves. Idempotent. */
  stop(): Promise<void> {
    roots.delete(this);
    if (this.state === "stopped" || this.state === "failed" || this.state === "stopping") return this.queue;
    this.state = "stopping";
    return this.serial(async () => {
      await this.stopRange(0, this.children.length);
      this.state = "stopped";
      this.settle.resolve();
      this.emit("stopped");
    });
  }

  private addSpec(spec: ChildSpec): ChildState {
    if (!spec || typeof spec.id !== "string" || spec.id === "")
      throw new SupervisorError("invalid_spec", "child id must be a non-empty string", "id");
    if (typeof spec.start !== "function")
      throw new SupervisorError("invalid_spec", `child ${spec.id}: start must be a function`, "start");
    const restart = spec.restart ?? "permanent";
    if (!["permanent", "transient", "temporary"].includes(restart))
      throw new SupervisorError("invalid_spec", `child ${spec.id}: unknown restart type ${restart}`, "restart");
    if (this.children.some((c) => c.spec.id === spec.id))
      throw new SupervisorError("duplicate_child", `duplicate child id ${JSON.stringify(spec.id)}`, "id");
    const c: ChildState = { spec, restart, handle: undefined, run: 0, status: "stopped", restarts: 0 };
    this.children.push(c);
    return c;
  }

  private assertActive(): void {
    if (this.state !== "running" && this.state !== "starting")
      throw new SupervisorError("stopped", `supervisor ${this.name} is ${this.state}`);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn);
    this.queue = p.then(
      () => {},
      () => {},
    );
    return p;
  }

  private async launch(c: ChildState): Promise<void> {
    const run = ++c.run;
    const handle = await c.spec.start();
    if (!handle || typeof (handle as { stop?: unknown }).stop !== "function")
      throw new Error("start() must return a handle with stop()");
    const hasDone = typeof (handle as { done?: Promise<unknown> }).done?.then === "function";
    if (!hasDone && !(handle instanceof EventEmitter)) {
      await Promise.resolve(handle.stop()).catch(() => {});
      throw new Error("start() must return a handle with a `done` promise or an EventEmitter (exit/crash)");
    }
    c.handle = handle;
    c.status = "running";
    this.emit("started", { id: c.spec.id, restarts: c.restarts });
    watch(handle, (exit) => {
      if (c.run !== run) return; // a run we stopped ourselves, or an older one
      c.run++;
      c.status = "exited";
      c.handle = undefined;
      this.emit("exit", { id: c.spec.id, kind: exit.kind, reason: exit.kind === "crash" ? exit.reason : undefined });
      void this.serial(() => this.onChildExit(c, exit));
    });
  }

  private async stopChild(c: ChildState): Promise<void> {
    const handle = c.handle;
    c.run++; // its exit signal is now expected, not a failure
    c.handle = undefined;
    c.status = "stopped";
    if (!handle) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.resolve()
        .then(() => handle.stop())
        .catch(() => {}),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, c.spec.shutdownMs ?? 5000);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Stops children [from, to) in reverse order. */
  private async stopRange(from: number, to: number): Promise<void> {
    for (let i = to - 1; i >= from; i--) await this.stopChild(this.children[i]);
  }

  private async onChildExit(c: ChildState, exit: ExitKind): Promise<void> {
    if (this.state !== "running" && this.state !== "starting") return;
    const index = this.children.indexOf(c);
    if (index < 0) return;
    const wanted = c.restart === "permanent" || (c.restart === "transient" && exit.kind === "crash");
    if (!wanted) {
      if (c.restart === "temporary") this.children.splice(index, 1);
      return;
    }
    const reason = exit.kind === "crash" ? exit.reason : "normal exit of a permanent child";
    // Several children may fail at once; each failure costs one restart of the budget.
    while (true) {
      if (!this.allowRestart()) return this.giveUp(c, reason);
      try {
        await this.restartFor(c);
        return;
      } catch (err) {
        // A failing start() counts as one more crash against the intensity.
        this.emit("exit", { id: c.spec.id, kind: "crash", reason: err });
      }
    }
  }

  private allowRestart(): boolean {
    const t = this.now();
    this.restartTimes = this.restartTimes.filter((x) => t - x < this.period);
    this.restartTimes.push(t);
    return this.restartTimes.length <= this.intensity;
  }

  /** Applies the strategy for the failed child `c` (already exited). */
  private async restartFor(c: ChildState): Promise<void> {
    const index = this.children.indexOf(c);
    let group: ChildState[];
    if (this.strategy === "one_for_one") group = [c];
    else {
      const from = this.strategy === "one_for_all" ? 0 : index;
      group = this.children.slice(from);
      // Reverse start order; `c` is included in case an earlier attempt of this restart had started it again.
      for (let i = group.length - 1; i >= 0; i--) await this.stopChild(group[i]);
      // Temporary siblings stopped by the strategy are not restarted: they are removed (OTP semantics).
      for (const g of group)
        if (g !== c && g.restart === "temporary") this.children.splice(this.children.indexOf(g), 1);
      group = group.filter((g) => g === c || g.restart !== "temporary");
    }
    for (const g of group) {
      g.status = "restarting";
      g.restarts++;
      this.emit("restart", { id: g.spec.id, reason: g === c ? "exited" : `sibling ${c.spec.id} exited` });
    }
    for (const g of group) await this.launch(g);
  }

  private async giveUp(c: ChildState, reason: unknown): Promise<void> {
    this.state = "failed";
    roots.delete(this);
    await this.stopRange(0, this.children.length);
    const err = new SupervisorGaveUp(this.name, c.spec.id, this.intensity, this.period, reason);
    this.emit("gave_up", err);
    this.settle.reject(err);
  }
}

function watch(handle: ChildHandle, onExit: (e: ExitKind) => void): void {
  let fired = false;
  const once = (e: ExitKind) => {
    if (fired) return;
    fired = true;
    onExit(e);
  };
  if ("done" in handle && handle.done && typeof (handle.done as Promise<unknown>).then === "function") {
    (handle.done as Promise<unknown>).then(
      () => once({ kind: "normal" }),
      (reason) => once({ kind: "crash", reason }),
    );
    return;
  }
  if (handle instanceof EventEmitter) {
    handle.once("exit", () => once({ kind: "normal" }));
    handle.once("crash", (reason) => once({ kind: "crash", reason }));
    handle.once("error", (reason) => once({ kind: "crash", reason }));
    return;
  }
}

function describe(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}

/** Creates and starts a root supervisor (stopped by the host when the plugin unloads). */
export async function start(spec: SupervisorSpec): Promise<Supervisor> {
  const sup = new Supervisor(spec);
  roots.add(sup);
  sup.once("gave_up", () => roots.delete(sup));
  try {
    await sup.startChildren();
  } catch (err) {
    roots.delete(sup);
    throw err;
  }
  return sup;
}

/** A child spec running a nested supervisor: its give-up is a crash of this child in the parent. */
export function child(id: string, spec: SupervisorSpec, restart: RestartType = "permanent"): ChildSpec {
  return {
    id,
    restart,
    start: async () => {
      const sup = new Supervisor({ name: id, ...spec });
      await sup.startChildren();
      return sup;
    },
  };
}

/** Stops every root supervisor (the host calls this at unload). */
export async function stopAll(): Promise<void> {
  await Promise.allSettled([...roots].map((s) => s.stop()));
}

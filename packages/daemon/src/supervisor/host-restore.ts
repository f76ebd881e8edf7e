/**
 * What a plugin host's death means, and its restore: the death is reported (`host-crashed`), the verdict of
 * crash-attribution.ts applied (plugins quarantined, or moved into isolated hosts), the host restarted and its
 * placed plugins loaded again (for the main host: the isolated plugins' proxies too); the main host's connections
 * wait meanwhile (waiting-connections.ts). A load whose host died under it is retried once the host is back, one at
 * a time, unless its plugin was quarantined.
 */
import type { ContainerPluginSpec } from "../container/container-plugins.js";
import type { LoadedInfo, ReconcileOutcome } from "../host/protocol.js";
import { answerWithin } from "../util/answer-within.js";
import { type AttributionOptions, CrashAttribution } from "./crash-attribution.js";
import type { HostLoads } from "./host-loads.js";
import type { HostPool } from "./host-pool.js";
import { describeExit, HostDiedError, type HostExit, type HostProcess } from "./host-process.js";
import { type Emit, type Hosted, type HostsState, inProcess, logSupervisor, MAIN, placedOn } from "./hosts-state.js";
import type { WaitingConnections } from "./waiting-connections.js";

/** What `host-crashed` reports: the data of `plugin_host_crashed_v1` (the lifecycle records it). */
export interface HostCrash {
  hostId: number;
  pid: number | undefined;
  code: number | null;
  signal: string | null;
  /** Plugins placed on the host. */
  loaded: string[];
  /** Plugins whose load was running. */
  loading: string[];
  /** Plugins that received requests shortly before the death. */
  active: string[];
}

/** The load of a plugin that took its host down too often: it is quarantined, not loaded. */
export class QuarantinedError extends Error {
  readonly stage = "host_crash";
  constructor(
    readonly plugin: string,
    reason: string,
  ) {
    super(reason);
    this.name = "QuarantinedError";
  }
}

/** The main host's restore waits this long at most for a restarting isolated host before mounting its plugins. */
const ISOLATED_RESTORE_WAIT_MS = 5000;

export interface HostRestoreParts {
  state: HostsState;
  pool: Pick<HostPool, "get" | "host" | "retireIfEmpty">;
  loads: Pick<HostLoads, "loadOn" | "mountRemote" | "takeRunning">;
  waiting: Pick<WaitingConnections, "serving" | "flush">;
  emit: Emit;
}

export class HostRestore {
  private readonly attribution: CrashAttribution;
  private readonly quarantined = new Map<string, string>();
  /** Plugins moved into isolated hosts: name -> host id. */
  private readonly isolatedIn = new Map<string, number>();
  /** A dead host's restore in progress (retried loads wait for it). */
  private readonly restorings = new Map<number, Promise<void>>();
  /** After a host death, retried loads run one at a time (so the next death names its plugin exactly). */
  private retryChain: Promise<unknown> = Promise.resolve();
  private nextHostId = MAIN + 1;

  constructor(
    private readonly p: HostRestoreParts,
    attribution: AttributionOptions,
  ) {
    this.attribution = new CrashAttribution(attribution);
  }

  /** Host `hostId`'s restore in progress, if any. */
  restoring(hostId: number): Promise<void> | undefined {
    return this.restorings.get(hostId);
  }

  /** A host reported these plugins as receiving requests now. */
  active(hostId: number, plugins: string[]): void {
    this.attribution.active(hostId, plugins);
  }

  /** Host `hostId` was replaced by a new process (recycled): its activity record starts over. */
  hostReplaced(hostId: number): void {
    this.attribution.forgetHost(hostId);
  }

  /** An unloaded plugin leaves its isolated host for good (loaded again, it goes to the main host). */
  unisolate(name: string): void {
    this.isolatedIn.delete(name);
  }

  /** Loads (or swaps in) a plugin; retried after a host death unless the plugin is quarantined meanwhile. */
  async load(name: string, hosted: Hosted): Promise<LoadedInfo> {
    this.quarantined.delete(name); // an explicit (re)activation lifts a quarantine
    const hostOf = () => (inProcess(hosted) ? (this.isolatedIn.get(name) ?? MAIN) : MAIN);
    try {
      return await this.attempt(name, hosted, hostOf());
    } catch (err) {
      if (!(err instanceof HostDiedError)) throw err;
    }
    for (;;) {
      // The host died during the load: retry once it is restored, alone.
      const retry = this.retryChain.then(async () => {
        await this.restorings.get(hostOf());
        const why = this.quarantined.get(name);
        if (why !== undefined) throw new QuarantinedError(name, why);
        if (this.p.state.closed) throw new Error("plugin hosts closed");
        return this.attempt(name, hosted, hostOf());
      });
      this.retryChain = retry.catch(() => {});
      try {
        return await retry;
      } catch (err) {
        if (!(err instanceof HostDiedError)) throw err;
      }
    }
  }

  private async attempt(name: string, hosted: Hosted, hostId: number): Promise<LoadedInfo> {
    const info = await this.p.loads.loadOn(hostId, name, hosted);
    this.attribution.cleared(name);
    return info;
  }

  /** The current process of a host exited (`expected`: closed on purpose). */
  died(proc: HostProcess, exit: HostExit, expected: boolean): void {
    const { state, emit } = this.p;
    const hostId = proc.id;
    if (expected || state.closed) return;
    const diedAt = Date.now();
    if (hostId === MAIN) this.p.waiting.serving = false; // connections wait until the plugins are back
    const loaded = placedOn(state, hostId).map(([n]) => n);
    const loading = this.p.loads.takeRunning(hostId);
    const verdict = this.attribution.died(
      hostId,
      hostId === MAIN,
      diedAt,
      `the plugin host died (${describeExit(exit)})`,
      loading,
      loaded,
      (n) => state.placed.has(n),
      (n) => inProcess(state.placed.get(n)?.hosted),
    );
    emit("host-crashed", {
      hostId,
      pid: proc.pid,
      code: exit.code,
      signal: exit.signal,
      loaded,
      loading,
      active: verdict.active,
    } satisfies HostCrash);
    for (const q of verdict.quarantine) this.quarantine(q.name, q.reason);
    for (const group of verdict.isolate) this.isolate(group);
    void this.restore(hostId, diedAt);
  }

  /** Moves plugins into a new isolated host (loaded there when the hosts are restored). */
  private isolate(names: string[]): void {
    const hostId = this.nextHostId++;
    for (const n of names) {
      const p = this.p.state.placed.get(n);
      if (!p || !inProcess(p.hosted)) continue;
      this.isolatedIn.set(n, hostId);
      p.hostId = hostId;
    }
    logSupervisor(this.p.emit, "warn", `plugins ${names.join(", ")} moved into isolated host ${hostId}`);
    void this.restore(hostId, Date.now());
  }

  private quarantine(name: string, reason: string): void {
    if (this.quarantined.has(name)) return;
    this.quarantined.set(name, reason);
    const p = this.p.state.placed.get(name);
    this.p.state.placed.delete(name);
    this.isolatedIn.delete(name);
    this.attribution.cleared(name);
    this.p.emit("quarantined", name, reason);
    if (p && p.hostId !== MAIN) {
      void this.p.pool
        .get(MAIN)
        ?.request({ t: "unload", name })
        .catch(() => {});
      void this.p.pool.retireIfEmpty(p.hostId);
    }
  }

  /** Restarts a dead host and loads its placed plugins again (for the main host: remote mounts too). */
  private restore(hostId: number, diedAt: number): Promise<void> {
    const previous = this.restorings.get(hostId) ?? Promise.resolve();
    const next = previous.then(() => this.restoreNow(hostId, diedAt));
    this.restorings.set(hostId, next);
    void next.finally(() => {
      if (this.restorings.get(hostId) === next) this.restorings.delete(hostId);
    });
    return next;
  }

  private async restoreNow(hostId: number, diedAt: number): Promise<void> {
    const { state, pool, loads, emit } = this.p;
    if (state.closed) return;
    if (hostId !== MAIN && placedOn(state, hostId).length === 0) return void pool.retireIfEmpty(hostId);
    let host: HostProcess;
    try {
      host = await pool.host(hostId);
    } catch {
      return; // closed meanwhile
    }
    const placements = placedOn(state, hostId);
    const containers = placements.filter(([, p]) => p.hosted.kind === "container");
    const workers = placements.filter(([, p]) => inProcess(p.hosted));
    const reload = async (name: string, hosted: Hosted) => {
      try {
        await loads.loadOn(hostId, name, hosted, true);
      } catch (err) {
        if (err instanceof HostDiedError) return; // the next restore takes over
        state.placed.delete(name);
        emit("disabled", name, `reload after a plugin host restart failed: ${(err as Error).message}`);
      }
    };
    try {
      if (containers.length) {
        const specs = containers.map(([, p]) => p.hosted.spec as ContainerPluginSpec);
        const r = await host.request<ReconcileOutcome>({ t: "reconcile", specs });
        for (const f of r.failed) {
          state.placed.delete(f.name);
          emit("disabled", f.name, `reload after a plugin host restart failed: ${f.error.message}`);
        }
      }
      const queue = [...workers];
      const lane = async () => {
        for (let next = queue.shift(); next; next = queue.shift()) await reload(next[0], next[1].hosted);
      };
      await Promise.all(Array.from({ length: Math.min(4, queue.length) }, lane));
      if (hostId === MAIN)
        for (const [name, p] of [...state.placed].filter(([, q]) => q.hostId !== MAIN)) {
          // An isolated host restarting too (a plugin is isolated when the main host dies) serves only once restored:
          // until then its plugins' connections wait here, as everyone's do, instead of meeting a socket not yet
          // bound (502). Bounded, so one slow isolated host never holds every other plugin back.
          const pending = this.restorings.get(p.hostId);
          if (pending) await answerWithin(pending, ISOLATED_RESTORE_WAIT_MS, undefined);
          await loads.mountRemote(name, p.hostId, p.hosted).catch(() => {});
        }
      else
        for (const [name, p] of placedOn(state, hostId))
          await loads.mountRemote(name, hostId, p.hosted).catch(() => {});
    } catch (err) {
      if (err instanceof HostDiedError) return; // its own death restores it again
      logSupervisor(emit, "error", `restoring plugin host ${hostId}: ${String(err)}`);
    }
    if (!host.alive) return;
    if (hostId === MAIN) {
      this.p.waiting.serving = true;
      this.p.waiting.flush(host);
    }
    emit("host-restarted", hostId, Date.now() - diedAt);
  }
}

/**
 * The supervisor's view of the plugin-host processes: which plugin runs where, what a host's death means, and the
 * plugin listener's hand-off. The loader talks to it as to a single PluginHost.
 *
 * - Placement: every plugin runs in the main host (1), which receives the plugin listener's connections. A plugin
 *   suspected of taking its host down can be moved into an isolated host of its own; the main host then mounts it
 *   as a `remote` plugin (a proxy to the isolated host's socket).
 * - Death of a host: recorded (`host-crashed`), the host restarted (with backoff, never given up) and its loaded
 *   set restored; client connections accepted meanwhile wait in a queue, so none is refused.
 * - Attribution (the rules live in crash-attribution.ts) at load time (exact): a plugin whose load was running when
 *   its host died gets a strike; its load is retried once the host is back; at `loadStrikes` (2) strikes it is
 *   quarantined (`quarantined`).
 * - Attribution at serve time: each host reports the plugins that receive requests (`active`, sent before the
 *   request is dispatched). After `crashesBeforeIsolation` (3) deaths of the main host within `crashWindowMs`
 *   (5 min), the suspects (the plugins active before every one of those deaths) are moved into isolated hosts,
 *   where the next death names the culprit exactly; it is quarantined. Isolated plugins stay isolated (served
 *   through the main host's proxy) until the daemon restarts.
 */
import { EventEmitter } from "node:events";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { join } from "node:path";
import type { PluginHealth } from "@hecate/sdk";
import type { MetricJson } from "@hecate/sdk/metrics";
import type { ContainerPluginSpec } from "../container/runtime.js";
import type { HostRuntimeOptions, SettingsOutcome } from "../host/plugin-host.js";
import type { ContainerPolicy, HostEvent, HostedSpec, LoadedInfo, ReconcileOutcome } from "../host/protocol.js";
import type { ConnectionLimits } from "../http/conn-limits.js";
import type { PluginSpec } from "../runtime/plugin-worker.js";
import { answerWithin } from "../util/answer-within.js";
import { CrashAttribution } from "./crash-attribution.js";
import { describeExit, HostDiedError, type HostExit, HostProcess } from "./host-process.js";
import { populateHost, type RecycleResult, retireHost } from "./host-recycle.js";
import {
  DEFAULT_SHARED_POLICY,
  leakPastThreshold,
  type SharedPolicyOptions,
  SharedRefusedError,
} from "./shared-policy.js";

export type Hosted =
  | { kind: "worker"; spec: PluginSpec }
  /** `isolation: "shared"`: on the host's main thread (see host/shared/shared-host.ts). */
  | { kind: "shared"; spec: PluginSpec }
  | { kind: "container"; spec: ContainerPluginSpec };

/** Plugin code in a host process (a worker thread, or the main thread): movable into an isolated host. */
function inProcess(h: Hosted | undefined): h is Extract<Hosted, { kind: "worker" | "shared" }> {
  return h?.kind === "worker" || h?.kind === "shared";
}

export type { RecycleResult } from "./host-recycle.js";

/** An in-process plugin's static dir (served by the main host for an isolated plugin too). */
function staticDirOf(h: Hosted): string | undefined {
  return inProcess(h) ? h.spec.staticDir : undefined;
}

export interface PluginHostsOptions {
  home: string;
  containers: boolean;
  runtime?: HostRuntimeOptions;
  /** How often a host reports the same active plugin again (ms), default 250. */
  activityIntervalMs?: number;
  crashWindowMs?: number;
  crashesBeforeIsolation?: number;
  loadStrikes?: number;
  /** Client connections kept while the main host restarts, default 4096 (more are closed). */
  maxQueuedConnections?: number;
  /** The plugin listener's Host allow-list entries (besides loopback) and connection caps, applied by the main host. */
  allowedHosts?: string[];
  limits?: ConnectionLimits;
  containerPolicy?: ContainerPolicy;
  /** Plugin request metrics in the hosts (default true). */
  metrics?: boolean;
  /** `isolation: "shared"` plugins: allowed, and the leak thresholds that recycle the main host (shared-policy.ts). */
  shared?: SharedPolicyOptions;
  /** Recycle: how long the old host may drain its connections (default 30 s), and the idle grace (default 1 s). */
  recycleDrainMs?: number;
  recycleIdleGraceMs?: number;
}

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

interface Placement {
  hosted: Hosted;
  hostId: number;
}

const MAIN = 1;
/** The main host's restore waits this long at most for a restarting isolated host before mounting its plugins. */
const ISOLATED_RESTORE_WAIT_MS = 5000;
/** A host's answer to a metrics scrape (it asks its workers within 1 s). */
const HOST_SCRAPE_TIMEOUT_MS = 3000;

/**
 * Events: `log` (entry), `crashed` / `disabled` (plugin, reason: a plugin's own crash inside a host),
 * `restarted` (plugin), `host-crashed` (HostCrash), `host-restarted` (hostId, ms from death to serving),
 * `quarantined` (plugin, reason).
 */
export class PluginHosts extends EventEmitter {
  private readonly hosts = new Map<number, HostProcess>();
  private readonly starting = new Map<number, Promise<HostProcess>>();
  private readonly placed = new Map<string, Placement>();
  /** Plugins moved into isolated hosts: name -> host id. */
  private readonly isolatedIn = new Map<string, number>();
  private readonly loading = new Map<number, Set<string>>();
  /** A dead host's restore in progress (retried loads wait for it). */
  private readonly restoring = new Map<number, Promise<void>>();
  /** Loads that restore a host's plugins after its death (known good: blamed only when nothing else loads). */
  private readonly restoreLoading = new Map<number, Set<string>>();
  /** After a host death, retried loads run one at a time (so the next death names its plugin exactly). */
  private retryChain: Promise<unknown> = Promise.resolve();
  private readonly attribution: CrashAttribution;
  private readonly quarantined = new Map<string, string>();
  private readonly queue: Socket[] = [];
  private nextHostId = MAIN + 1;
  private consecutiveFailures = 0;
  private closed = false;
  private ready = false;
  /** Installed plugins not loaded, for the main host's router (see setInactive). */
  private inactive: Record<string, string> = {};
  /** True once container plugins were reconciled (boot): their leftovers of a previous run are gone. */
  containersReconciled = false;
  /** The main host may receive connections: false from its death until its plugins are restored. */
  private mainServing = true;
  private adminSocketPath: string | undefined;
  /** A recycle in progress (loads, unloads and settings wait for it: the new host must get the final set). */
  private recycling: Promise<RecycleResult> | undefined;
  /** Old main hosts draining after a recycle (their pids stay untrusted on the admin socket). */
  private readonly retiring = new Set<HostProcess>();
  private readonly ops = new Set<Promise<unknown>>();
  private readonly sharedPolicy: Required<SharedPolicyOptions>;
  private readonly o: Required<
    Omit<PluginHostsOptions, "runtime" | "limits" | "containerPolicy" | "metrics" | "shared">
  > &
    Pick<PluginHostsOptions, "metrics"> &
    Pick<PluginHostsOptions, "limits" | "containerPolicy"> & { runtime: HostRuntimeOptions };

  constructor(options: PluginHostsOptions) {
    super();
    this.o = {
      activityIntervalMs: 250,
      crashWindowMs: 5 * 60_000,
      crashesBeforeIsolation: 3,
      loadStrikes: 2,
      maxQueuedConnections: 4096,
      runtime: {},
      allowedHosts: [],
      recycleDrainMs: 30_000,
      recycleIdleGraceMs: 1000,
      ...options,
    };
    this.sharedPolicy = { ...DEFAULT_SHARED_POLICY, ...options.shared };
    this.attribution = new CrashAttribution(this.o);
    mkdirSync(this.hostsDir, { recursive: true, mode: 0o700 });
  }

  private get hostsDir(): string {
    return join(this.o.home, "run", "hosts");
  }

  /** Starts the main host; `adminSocketPath` when the admin shares the plugin port (proxied by the main host). */
  async start(options: { adminSocketPath?: string } = {}): Promise<void> {
    this.adminSocketPath = options.adminSocketPath;
    await this.host(MAIN);
  }

  /** `/ready` on the plugin listener (also for every main host started later). */
  async setReady(ready: boolean): Promise<void> {
    this.ready = ready;
    await this.hosts
      .get(MAIN)
      ?.request({ t: "set-ready", ready })
      .catch(() => {});
  }

  /**
   * The installed plugins that are not loaded, each with what a request to its URLs is told (503); also given to
   * every main host started later. Sent only when it changed.
   */
  async setInactive(plugins: Record<string, string>): Promise<void> {
    if (JSON.stringify(plugins) === JSON.stringify(this.inactive)) return;
    this.inactive = plugins;
    await this.hosts
      .get(MAIN)
      ?.request({ t: "set-inactive", plugins })
      .catch(() => {});
  }

  /** Every plugin's health, as the main host's `/health` lists it (isolated plugins through their host). */
  async health(timeoutMs: number): Promise<Record<string, PluginHealth>> {
    const main = this.hosts.get(MAIN);
    if (!main?.alive) return {};
    // The host bounds each plugin's answer; this bounds a host too busy to answer at all.
    return answerWithin(main.request<Record<string, PluginHealth>>({ t: "health", timeoutMs }), timeoutMs + 1000, {});
  }

  /** Each live host's metrics (prom-client JSON); a host that dies meanwhile is left out of this scrape. */
  async metrics(): Promise<MetricJson[][]> {
    const answers = await Promise.all(
      [...this.hosts.values()]
        .filter((h) => h.alive)
        .map((h) => answerWithin(h.request<MetricJson[]>({ t: "metrics" }), HOST_SCRAPE_TIMEOUT_MS, [])),
    );
    return answers;
  }

  /** Pids of the running host processes (also in `run/hosts/host-{id}.pid`). */
  pids(): Record<number, number | undefined> {
    return Object.fromEntries([...this.hosts].map(([id, h]) => [id, h.pid]));
  }

  /** Every host process that runs plugin code, draining ones included (never trusted on the admin socket). */
  untrustedPids(): number[] {
    return [...this.hosts.values(), ...this.retiring].map((h) => h.pid).filter((p): p is number => p !== undefined);
  }

  has(name: string): boolean {
    return this.placed.has(name);
  }

  /** A client connection accepted on the plugin listener. */
  adopt(socket: Socket): void {
    const main = this.hosts.get(MAIN);
    if (main?.alive && this.mainServing && !this.starting.has(MAIN) && main.adopt(socket)) return;
    if (this.closed || this.queue.length >= this.o.maxQueuedConnections) {
      socket.destroy();
      return;
    }
    this.queue.push(socket);
  }

  /** Loads (or swaps in, when loaded) a plugin; retried after a host death unless the plugin is quarantined. */
  async load(name: string, hosted: Hosted): Promise<LoadedInfo> {
    if (hosted.kind === "shared" && !this.sharedPolicy.allow) throw new SharedRefusedError(name);
    await this.afterRecycle();
    return this.track(this.loadNow(name, hosted));
  }

  private async loadNow(name: string, hosted: Hosted): Promise<LoadedInfo> {
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
        await this.restoring.get(hostOf());
        const why = this.quarantined.get(name);
        if (why !== undefined) throw new QuarantinedError(name, why);
        if (this.closed) throw new Error("plugin hosts closed");
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
    const info = await this.loadOn(hostId, name, hosted);
    this.attribution.cleared(name);
    return info;
  }

  private async loadOn(hostId: number, name: string, hosted: Hosted, restore = false): Promise<LoadedInfo> {
    const host = await this.host(hostId);
    const sets = restore ? this.restoreLoading : this.loading;
    const set = sets.get(hostId) ?? new Set<string>();
    sets.set(hostId, set);
    set.add(name);
    // A shared plugin's load runs on the host's main thread: one stuck in a loop stalls the whole host, and only
    // the host's death (a load-time death: attributed exactly, see onHostExit) gets it back.
    const stuck =
      hosted.kind === "shared"
        ? setTimeout(
            () => host.kill("SIGKILL"),
            (hosted.spec.loadTimeoutMs ?? this.o.runtime?.loadTimeoutMs ?? 15_000) + 5000,
          )
        : undefined;
    try {
      const info = await host.request<LoadedInfo>({ t: "load", hosted });
      this.placed.set(name, { hosted, hostId });
      if (hostId !== MAIN) await this.mountRemote(name, hostId, hosted);
      return info;
    } finally {
      clearTimeout(stuck);
      set.delete(name);
    }
  }

  /** The main host proxies an isolated plugin's routes to its host. */
  private async mountRemote(name: string, hostId: number, hosted: Hosted): Promise<void> {
    const main = await this.host(MAIN);
    const remote: HostedSpec = {
      kind: "remote",
      name,
      socketPath: this.socketOf(hostId),
      staticDir: staticDirOf(hosted),
    };
    await main.request({ t: "load", hosted: remote });
  }

  async unload(name: string, deadlineMs?: number): Promise<boolean> {
    await this.afterRecycle();
    return this.track(this.unloadNow(name, deadlineMs));
  }

  private async unloadNow(name: string, deadlineMs?: number): Promise<boolean> {
    const p = this.placed.get(name);
    if (!p) return false;
    this.placed.delete(name);
    const host = this.hosts.get(p.hostId);
    let done = false;
    if (host?.alive) done = await host.request<boolean>({ t: "unload", name, deadlineMs }).catch(() => false);
    if (p.hostId !== MAIN) {
      this.isolatedIn.delete(name);
      await this.hosts
        .get(MAIN)
        ?.request({ t: "unload", name })
        .catch(() => false);
      await this.retireIfEmpty(p.hostId);
    }
    return done;
  }

  /**
   * New settings for a loaded worker plugin's `onSettingsChanged`, in whichever host runs it. When applied, a host
   * restart loads it with them. Container plugins (and plugins without the callback) answer otherwise: the caller
   * swaps them.
   */
  async applySettings(name: string, settings: Record<string, unknown>): Promise<SettingsOutcome> {
    await this.afterRecycle();
    return this.track(this.applySettingsNow(name, settings));
  }

  private async applySettingsNow(name: string, settings: Record<string, unknown>): Promise<SettingsOutcome> {
    const p = this.placed.get(name);
    if (!inProcess(p?.hosted)) return "not_loaded";
    const host = this.hosts.get(p.hostId);
    if (!host?.alive) return "not_loaded";
    const r = await host
      .request<SettingsOutcome>({ t: "settings", name, settings })
      .catch((): SettingsOutcome => "failed");
    if (r === "applied" && this.placed.get(name) === p) {
      const spec = p.hosted.spec;
      this.placed.set(name, {
        ...p,
        hosted: { kind: p.hosted.kind, spec: { ...spec, config: { ...spec.config, settings } } },
      });
    }
    return r;
  }

  /** Boot: container plugins of the previous run adopted (or started, or removed) in one pass. */
  async reconcileContainers(specs: ContainerPluginSpec[]): Promise<ReconcileOutcome> {
    this.containersReconciled = true;
    const main = await this.host(MAIN);
    const r = await main.request<ReconcileOutcome>({ t: "reconcile", specs });
    for (const l of r.loaded) {
      const spec = specs.find((s) => s.name === l.name);
      if (spec) this.placed.set(l.name, { hosted: { kind: "container", spec }, hostId: MAIN });
    }
    return r;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.queue.splice(0)) s.destroy();
    await Promise.all([...this.hosts.values(), ...this.retiring].map((h) => h.close()));
    this.hosts.clear();
    rmSync(this.hostsDir, { recursive: true, force: true });
  }

  // ---- hosts ----

  private socketOf(hostId: number): string {
    return join(this.hostsDir, `host-${hostId}.sock`);
  }

  private pidFileOf(hostId: number): string {
    return join(this.hostsDir, `host-${hostId}.pid`);
  }

  /** The running host `hostId`, started (or restarted) when needed. */
  private host(hostId: number): Promise<HostProcess> {
    const h = this.hosts.get(hostId);
    if (h?.alive && !this.starting.has(hostId)) return Promise.resolve(h);
    const pending = this.starting.get(hostId);
    if (pending) return pending;
    const started = this.spawn(hostId).finally(() => this.starting.delete(hostId));
    this.starting.set(hostId, started);
    return started;
  }

  private async spawn(hostId: number): Promise<HostProcess> {
    for (;;) {
      if (this.closed) throw new Error("plugin hosts closed");
      const proc = this.newHost(hostId);
      if (hostId === MAIN) proc.on("orphans", (sockets: Socket[]) => this.queue.push(...sockets));
      this.hosts.set(hostId, proc);
      try {
        await proc.start();
        proc.once("exit", (exit: HostExit, expected: boolean) => this.onHostExit(proc, exit, expected));
        this.consecutiveFailures = 0;
        writeFileSync(this.pidFileOf(hostId), `${proc.pid}\n`);
        if (hostId === MAIN && this.mainServing) this.flushQueue(proc);
        return proc;
      } catch (err) {
        // Never give up (the daemon must not crash-loop with its host), but back off.
        this.consecutiveFailures++;
        this.emit("log", {
          plugin: "-",
          level: "error",
          msg: `plugin host ${hostId} failed to start: ${(err as Error).message}`,
        });
        await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** this.consecutiveFailures)));
      }
    }
  }

  private newHost(hostId: number): HostProcess {
    const proc = new HostProcess({
      home: this.o.home,
      hostId,
      listenPath: hostId === MAIN ? undefined : this.socketOf(hostId),
      containers: hostId === MAIN && this.o.containers,
      runtime: this.o.runtime,
      activityIntervalMs: this.o.activityIntervalMs,
      ready: this.ready,
      inactive: hostId === MAIN ? this.inactive : undefined,
      adminSocketPath: hostId === MAIN ? this.adminSocketPath : undefined,
      allowedHosts: this.o.allowedHosts,
      limits: this.o.limits,
      containerPolicy: this.o.containerPolicy,
      metrics: this.o.metrics,
    });
    proc.on("event", (e) => {
      if (this.hosts.get(hostId) === proc) this.onHostEvent(hostId, e);
      else if (e.t === "log" || e.t === "crashed" || e.t === "disabled") this.onHostEvent(hostId, e); // a draining host
    });
    return proc;
  }

  // ---- recycle ----

  /**
   * Replaces the main host with zero downtime: a new host process loads the main host's whole set (worker and shared
   * plugins, container plugins adopted, isolated plugins' proxies), then receives every new connection; the old one
   * answers what its clients still send with `Connection: close`, drains, unloads and exits. Shared plugins' old
   * generations (ESM cannot be unloaded) go with it. If the new host cannot load the set, it is stopped and the old
   * one keeps serving (this rejects). One recycle at a time; loads and unloads wait for it.
   */
  recycle(reason = "requested"): Promise<RecycleResult> {
    this.recycling ??= this.recycleNow(reason).finally(() => {
      this.recycling = undefined;
    });
    return this.recycling;
  }

  /** Waits for a recycle in progress (its outcome is its caller's business). */
  private async afterRecycle(): Promise<void> {
    await this.recycling?.catch(() => {});
  }

  /** A load / unload / settings change in progress: a recycle starts once they are done (it copies their result). */
  private track<T>(op: Promise<T>): Promise<T> {
    this.ops.add(op);
    void op.then(
      () => this.ops.delete(op),
      () => this.ops.delete(op),
    );
    return op;
  }

  private async recycleNow(reason: string): Promise<RecycleResult> {
    const t0 = Date.now();
    if (this.closed) throw new Error("plugin hosts closed");
    await Promise.allSettled([...this.ops]); // new ones wait for this recycle
    await this.restoring.get(MAIN);
    const old = await this.host(MAIN);
    const fresh = this.newHost(MAIN);
    const plugins = [...this.placed].filter(([, p]) => p.hostId === MAIN);
    const containers = plugins.flatMap(([, p]) => (p.hosted.kind === "container" ? [p.hosted.spec] : []));
    const loads: Parameters<typeof populateHost>[2] = plugins.flatMap(([, p]) =>
      inProcess(p.hosted) ? [p.hosted] : [],
    );
    for (const [name, p] of this.placed)
      if (p.hostId !== MAIN)
        loads.push({ kind: "remote", name, socketPath: this.socketOf(p.hostId), staticDir: staticDirOf(p.hosted) });
    try {
      await fresh.start();
      await populateHost(fresh, containers, loads);
      if (this.hosts.get(MAIN) !== old || !old.alive || !this.mainServing || this.closed)
        throw new Error("the main plugin host restarted meanwhile");
    } catch (err) {
      await fresh.close(5000).catch(() => {});
      throw new Error(`recycle aborted, the current host keeps serving: ${(err as Error).message}`);
    }
    // What changed while it loaded (its boot had the state of then).
    await fresh.request({ t: "set-ready", ready: this.ready }).catch(() => {});
    await fresh.request({ t: "set-inactive", plugins: this.inactive }).catch(() => {});
    // The switch: from here on every accepted connection goes to the new host.
    this.hosts.set(MAIN, fresh);
    fresh.once("exit", (exit: HostExit, expected: boolean) => this.onHostExit(fresh, exit, expected));
    fresh.on("orphans", (sockets: Socket[]) => this.queue.push(...sockets));
    writeFileSync(this.pidFileOf(MAIN), `${fresh.pid}\n`);
    this.attribution.forgetHost(MAIN);
    this.flushQueue(fresh);
    const switchMs = Date.now() - t0;
    this.retiring.add(old);
    // Connections handed to the old host but never taken (it exited first) go to the new one.
    old.removeAllListeners("orphans");
    old.on("orphans", (sockets: Socket[]) => {
      for (const s of sockets) this.adopt(s);
    });
    const drained = await retireHost(old, this.o.recycleDrainMs, this.o.recycleIdleGraceMs);
    this.retiring.delete(old);
    const result: RecycleResult = {
      reason,
      oldPid: old.pid,
      newPid: fresh.pid,
      switchMs,
      ms: Date.now() - t0,
      drained,
      plugins: plugins.length,
    };
    this.emit("host-recycled", result);
    return result;
  }

  /** Connections that waited for the main host (a client that gave up meanwhile is handed over all the same). */
  private flushQueue(main: HostProcess): void {
    for (const s of this.queue.splice(0)) if (!s.destroyed && !main.adopt(s)) s.destroy();
  }

  private onHostEvent(hostId: number, e: HostEvent): void {
    switch (e.t) {
      case "active":
        this.attribution.active(hostId, e.plugins);
        return;
      case "log":
        this.emit("log", { plugin: e.plugin, level: e.level, msg: e.msg, fields: e.fields });
        return;
      case "crashed":
      case "disabled":
        this.emit(e.t, e.plugin, e.reason);
        return;
      case "restarted":
        this.emit("restarted", e.plugin);
        return;
      case "shared-leak": {
        // Only the main host is recycled (an isolated host lives until its plugin is found or the daemon restarts).
        const why = hostId === MAIN ? leakPastThreshold(e, this.sharedPolicy) : undefined;
        if (why && !this.recycling && !this.closed)
          this.recycle(why).catch((err) =>
            this.emit("log", { plugin: "-", level: "error", msg: `plugin host recycle: ${String(err)}` }),
          );
        return;
      }
      default:
        return;
    }
  }

  private onHostExit(proc: HostProcess, exit: HostExit, expected: boolean): void {
    const hostId = proc.id;
    if (this.hosts.get(hostId) !== proc) return;
    if (expected || this.closed) return;
    const diedAt = Date.now();
    if (hostId === MAIN) this.mainServing = false; // connections wait until the plugins are back
    const loaded = [...this.placed].filter(([, p]) => p.hostId === hostId).map(([n]) => n);
    let loading = [...(this.loading.get(hostId) ?? [])];
    if (!loading.length) loading = [...(this.restoreLoading.get(hostId) ?? [])];
    this.loading.delete(hostId);
    this.restoreLoading.delete(hostId);
    const verdict = this.attribution.died(
      hostId,
      hostId === MAIN,
      diedAt,
      `the plugin host died (${describeExit(exit)})`,
      loading,
      loaded,
      (n) => this.placed.has(n),
      (n) => inProcess(this.placed.get(n)?.hosted),
    );
    this.emit("host-crashed", {
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
      const p = this.placed.get(n);
      if (!p || !inProcess(p.hosted)) continue;
      this.isolatedIn.set(n, hostId);
      p.hostId = hostId;
    }
    this.emit("log", {
      plugin: "-",
      level: "warn",
      msg: `plugins ${names.join(", ")} moved into isolated host ${hostId}`,
    });
    void this.restore(hostId, Date.now());
  }

  private quarantine(name: string, reason: string): void {
    if (this.quarantined.has(name)) return;
    this.quarantined.set(name, reason);
    const p = this.placed.get(name);
    this.placed.delete(name);
    this.isolatedIn.delete(name);
    this.attribution.cleared(name);
    this.emit("quarantined", name, reason);
    if (p && p.hostId !== MAIN) {
      void this.hosts
        .get(MAIN)
        ?.request({ t: "unload", name })
        .catch(() => {});
      void this.retireIfEmpty(p.hostId);
    }
  }

  private async retireIfEmpty(hostId: number): Promise<void> {
    if (hostId === MAIN || [...this.placed.values()].some((p) => p.hostId === hostId)) return;
    const h = this.hosts.get(hostId);
    this.hosts.delete(hostId);
    await h?.close().catch(() => {});
    rmSync(this.socketOf(hostId), { force: true });
    rmSync(this.pidFileOf(hostId), { force: true });
  }

  /** Restarts a dead host and loads its placed plugins again (for the main host: remote mounts too). */
  private restore(hostId: number, diedAt: number): Promise<void> {
    const previous = this.restoring.get(hostId) ?? Promise.resolve();
    const next = previous.then(() => this.restoreNow(hostId, diedAt));
    this.restoring.set(hostId, next);
    void next.finally(() => {
      if (this.restoring.get(hostId) === next) this.restoring.delete(hostId);
    });
    return next;
  }

  private async restoreNow(hostId: number, diedAt: number): Promise<void> {
    if (this.closed) return;
    const wanted = () => [...this.placed].filter(([, p]) => p.hostId === hostId);
    if (hostId !== MAIN && wanted().length === 0) return void this.retireIfEmpty(hostId);
    let host: HostProcess;
    try {
      host = await this.host(hostId);
    } catch {
      return; // closed meanwhile
    }
    const placements = wanted();
    const containers = placements.filter(([, p]) => p.hosted.kind === "container");
    const workers = placements.filter(([, p]) => inProcess(p.hosted));
    const reload = async (name: string, hosted: Hosted) => {
      try {
        await this.loadOn(hostId, name, hosted, true);
      } catch (err) {
        if (err instanceof HostDiedError) return; // the next restore takes over
        this.placed.delete(name);
        this.emit("disabled", name, `reload after a plugin host restart failed: ${(err as Error).message}`);
      }
    };
    try {
      if (containers.length) {
        const specs = containers.map(([, p]) => p.hosted.spec as ContainerPluginSpec);
        const r = await host.request<ReconcileOutcome>({ t: "reconcile", specs });
        for (const f of r.failed) {
          this.placed.delete(f.name);
          this.emit("disabled", f.name, `reload after a plugin host restart failed: ${f.error.message}`);
        }
      }
      const queue = [...workers];
      const lane = async () => {
        for (let next = queue.shift(); next; next = queue.shift()) await reload(next[0], next[1].hosted);
      };
      await Promise.all(Array.from({ length: Math.min(4, queue.length) }, lane));
      if (hostId === MAIN)
        for (const [name, p] of [...this.placed].filter(([, q]) => q.hostId !== MAIN)) {
          // An isolated host restarting too (a plugin is isolated when the main host dies) serves only once restored:
          // until then its plugins' connections wait here, as everyone's do, instead of meeting a socket not yet
          // bound (502). Bounded, so one slow isolated host never holds every other plugin back.
          const pending = this.restoring.get(p.hostId);
          if (pending) await answerWithin(pending, ISOLATED_RESTORE_WAIT_MS, undefined);
          await this.mountRemote(name, p.hostId, p.hosted).catch(() => {});
        }
      else for (const [name, p] of wanted()) await this.mountRemote(name, hostId, p.hosted).catch(() => {});
    } catch (err) {
      if (err instanceof HostDiedError) return; // its own death restores it again
      this.emit("log", { plugin: "-", level: "error", msg: `restoring plugin host ${hostId}: ${String(err)}` });
    }
    if (!host.alive) return;
    if (hostId === MAIN) {
      this.mainServing = true;
      this.flushQueue(host);
    }
    this.emit("host-restarted", hostId, Date.now() - diedAt);
  }
}

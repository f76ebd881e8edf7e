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
 *
 * PluginHosts is the façade over the parts that do it, which share a HostsState (hosts-state.ts) and narrow handles
 * on each other: host-pool.ts (the host processes), waiting-connections.ts (connections waiting for the main host),
 * host-loads.ts (a load into a host, and the loads running in each), host-restore.ts (a host's death: verdict,
 * isolation, quarantine, restore, retried loads) and host-recycle.ts (the main host's zero-downtime recycle).
 */
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import type { PluginHealth } from "@hecate/sdk";
import type { MetricJson } from "@hecate/sdk/metrics";
import type { ContainerPluginSpec } from "../container/container-plugins.js";
import type { HostWorkerOptions, SettingsOutcome } from "../host/plugin-host.js";
import type { ContainerPolicy, HostEvent, LoadedInfo, ReconcileOutcome } from "../host/protocol.js";
import type { ConnectionLimits } from "../http/conn-limits.js";
import { answerWithin } from "../util/answer-within.js";
import { HostLoads } from "./host-loads.js";
import { HostPool } from "./host-pool.js";
import { type RecycleResult, Recycler } from "./host-recycle.js";
import { HostRestore } from "./host-restore.js";
import { type Emit, type Hosted, type HostsState, inProcess, logSupervisor, MAIN } from "./hosts-state.js";
import {
  DEFAULT_SHARED_POLICY,
  leakPastThreshold,
  type SharedPolicyOptions,
  SharedRefusedError,
} from "./shared-policy.js";
import { WaitingConnections } from "./waiting-connections.js";

export type { RecycleResult } from "./host-recycle.js";
export { type HostCrash, QuarantinedError } from "./host-restore.js";
export type { Hosted } from "./hosts-state.js";

export interface PluginHostsOptions {
  home: string;
  containers: boolean;
  runtime?: HostWorkerOptions;
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

/** A host's answer to a metrics scrape (it asks its workers within 1 s). */
const HOST_SCRAPE_TIMEOUT_MS = 3000;

/**
 * Events: `log` (entry), `crashed` / `disabled` (plugin, reason: a plugin's own crash inside a host),
 * `restarted` (plugin), `host-crashed` (HostCrash), `host-restarted` (hostId, ms from death to serving),
 * `quarantined` (plugin, reason), `host-recycled` (RecycleResult).
 */
export class PluginHosts extends EventEmitter {
  private readonly state: HostsState = { placed: new Map(), closed: false, ready: false, inactive: {} };
  private readonly waiting: WaitingConnections;
  private readonly pool: HostPool;
  private readonly restore: HostRestore;
  private readonly recycler: Recycler;
  private readonly sharedPolicy: Required<SharedPolicyOptions>;
  /** How the parts emit this object's events. */
  private readonly relay: Emit = (event, ...args) => void this.emit(event, ...args);
  /** True once container plugins were reconciled (boot): their leftovers of a previous run are gone. */
  containersReconciled = false;

  constructor(options: PluginHostsOptions) {
    super();
    const o = {
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
    const { state, relay: emit } = this;
    const waiting = new WaitingConnections(o.maxQueuedConnections);
    const pool = new HostPool(o, state, waiting, {
      event: (hostId, e) => this.onHostEvent(hostId, e),
      exit: (proc, exit, expected) => this.restore.died(proc, exit, expected),
      emit,
    });
    const loads = new HostLoads(state, pool, o.runtime);
    this.restore = new HostRestore({ state, pool, loads, waiting, emit }, o);
    this.recycler = new Recycler(
      { state, pool, loads, restore: this.restore, waiting, adopt: (s) => this.adopt(s), emit },
      { drainMs: o.recycleDrainMs, idleGraceMs: o.recycleIdleGraceMs },
    );
    this.waiting = waiting;
    this.pool = pool;
  }

  /** Starts the main host; `adminSocketPath` when the admin shares the plugin port (proxied by the main host). */
  async start(options: { adminSocketPath?: string } = {}): Promise<void> {
    this.pool.adminSocketPath = options.adminSocketPath;
    await this.pool.host(MAIN);
  }

  /** `/ready` on the plugin listener (also for every main host started later). */
  async setReady(ready: boolean): Promise<void> {
    this.state.ready = ready;
    await this.pool
      .get(MAIN)
      ?.request({ t: "set-ready", ready })
      .catch(() => {});
  }

  /**
   * The installed plugins that are not loaded, each with what a request to its URLs is told (503); also given to
   * every main host started later. Sent only when it changed.
   */
  async setInactive(plugins: Record<string, string>): Promise<void> {
    if (JSON.stringify(plugins) === JSON.stringify(this.state.inactive)) return;
    this.state.inactive = plugins;
    await this.pool
      .get(MAIN)
      ?.request({ t: "set-inactive", plugins })
      .catch(() => {});
  }

  /** Every plugin's health, as the main host's `/health` lists it (isolated plugins through their host). */
  async health(timeoutMs: number): Promise<Record<string, PluginHealth>> {
    const main = this.pool.get(MAIN);
    if (!main?.alive) return {};
    // The host bounds each plugin's answer; this bounds a host too busy to answer at all.
    return answerWithin(main.request<Record<string, PluginHealth>>({ t: "health", timeoutMs }), timeoutMs + 1000, {});
  }

  /** Each live host's metrics (prom-client JSON); a host that dies meanwhile is left out of this scrape. */
  async metrics(): Promise<MetricJson[][]> {
    const answers = await Promise.all(
      this.pool
        .all()
        .filter((h) => h.alive)
        .map((h) => answerWithin(h.request<MetricJson[]>({ t: "metrics" }), HOST_SCRAPE_TIMEOUT_MS, [])),
    );
    return answers;
  }

  /** Pids of the running host processes (also in `run/hosts/host-{id}.pid`). */
  pids(): Record<number, number | undefined> {
    return this.pool.pids();
  }

  /** Every host process that runs plugin code, draining ones included (never trusted on the admin socket). */
  untrustedPids(): number[] {
    return [...this.pool.all(), ...this.recycler.draining()]
      .map((h) => h.pid)
      .filter((p): p is number => p !== undefined);
  }

  has(name: string): boolean {
    return this.state.placed.has(name);
  }

  /** A client connection accepted on the plugin listener. */
  adopt(socket: Socket): void {
    const main = this.pool.get(MAIN);
    if (main?.alive && this.waiting.serving && !this.pool.isStarting(MAIN) && main.adopt(socket)) return;
    if (this.state.closed || !this.waiting.hold(socket)) socket.destroy();
  }

  /** Loads (or swaps in, when loaded) a plugin; retried after a host death unless the plugin is quarantined. */
  async load(name: string, hosted: Hosted): Promise<LoadedInfo> {
    if (hosted.kind === "shared" && !this.sharedPolicy.allow) throw new SharedRefusedError(name);
    return this.recycler.run(() => this.restore.load(name, hosted));
  }

  async unload(name: string, deadlineMs?: number): Promise<boolean> {
    return this.recycler.run(() => this.unloadNow(name, deadlineMs));
  }

  private async unloadNow(name: string, deadlineMs?: number): Promise<boolean> {
    const p = this.state.placed.get(name);
    if (!p) return false;
    this.state.placed.delete(name);
    const host = this.pool.get(p.hostId);
    let done = false;
    if (host?.alive) done = await host.request<boolean>({ t: "unload", name, deadlineMs }).catch(() => false);
    if (p.hostId !== MAIN) {
      this.restore.unisolate(name);
      await this.pool
        .get(MAIN)
        ?.request({ t: "unload", name })
        .catch(() => false);
      await this.pool.retireIfEmpty(p.hostId);
    }
    return done;
  }

  /**
   * New settings for a loaded worker plugin's `onSettingsChanged`, in whichever host runs it. When applied, a host
   * restart loads it with them. Container plugins (and plugins without the callback) answer otherwise: the caller
   * swaps them.
   */
  async applySettings(name: string, settings: Record<string, unknown>): Promise<SettingsOutcome> {
    return this.recycler.run(() => this.applySettingsNow(name, settings));
  }

  private async applySettingsNow(name: string, settings: Record<string, unknown>): Promise<SettingsOutcome> {
    const { placed } = this.state;
    const p = placed.get(name);
    if (!inProcess(p?.hosted)) return "not_loaded";
    const host = this.pool.get(p.hostId);
    if (!host?.alive) return "not_loaded";
    const r = await host
      .request<SettingsOutcome>({ t: "settings", name, settings })
      .catch((): SettingsOutcome => "failed");
    if (r === "applied" && placed.get(name) === p) {
      const spec = p.hosted.spec;
      placed.set(name, {
        ...p,
        hosted: { kind: p.hosted.kind, spec: { ...spec, config: { ...spec.config, settings } } },
      });
    }
    return r;
  }

  /** Boot: container plugins of the previous run adopted (or started, or removed) in one pass. */
  async reconcileContainers(specs: ContainerPluginSpec[]): Promise<ReconcileOutcome> {
    this.containersReconciled = true;
    const main = await this.pool.host(MAIN);
    const r = await main.request<ReconcileOutcome>({ t: "reconcile", specs });
    for (const l of r.loaded) {
      const spec = specs.find((s) => s.name === l.name);
      if (spec) this.state.placed.set(l.name, { hosted: { kind: "container", spec }, hostId: MAIN });
    }
    return r;
  }

  /**
   * Replaces the main host with zero downtime (host-recycle.ts): if the new host cannot load the set, it is stopped
   * and the old one keeps serving (this rejects). One recycle at a time; loads and unloads wait for it.
   */
  recycle(reason = "requested"): Promise<RecycleResult> {
    return this.recycler.recycle(reason);
  }

  async close(): Promise<void> {
    this.state.closed = true;
    this.waiting.destroyAll();
    await this.pool.close(this.recycler.draining());
  }

  private onHostEvent(hostId: number, e: HostEvent): void {
    switch (e.t) {
      case "active":
        this.restore.active(hostId, e.plugins);
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
        if (why && !this.recycler.busy && !this.state.closed)
          this.recycle(why).catch((err) => logSupervisor(this.relay, "error", `plugin host recycle: ${String(err)}`));
        return;
      }
      default:
        return;
    }
  }
}

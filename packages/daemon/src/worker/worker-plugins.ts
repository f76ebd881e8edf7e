/**
 * In-process plugins (WorkerPlugins): one worker thread per plugin, mounted on the router.
 * The lifecycle calls load / unload / swap and listens to `crashed` / `disabled` to append its events.
 *
 * Containment: a crash (uncaught error, process.exit, heap limit, watchdog kill of a stuck loop) fails only that
 * plugin's in-flight requests (502) and ws connections (1011); the plugin is restarted within a restart budget
 * (default 3 restarts per 5 min), then disabled (routes removed, `disabled` emitted).
 */
import { EventEmitter } from "node:events";
import type { ResourceLimits } from "node:worker_threads";
import type { PluginHealth, PluginManifest, StoreConfig } from "@hecate/sdk";
import { DEFAULT_WS_MAX_PAYLOAD } from "@hecate/sdk/contract";
import type { MetricJson } from "@hecate/sdk/metrics";
import { DEFAULT_MAX_REPLY_BYTES, type RouteAnnouncement } from "@hecate/sdk/protocol";
import { wsServersByLimit } from "@hecate/sdk/runtime/ws-servers";
import type { WebSocketServer } from "ws";
import { type PluginMount, RouteError, type Router } from "../http/router.js";
import { KeyedSerial } from "../util/keyed-serial.js";
import { ChildReaper } from "./child-reaper.js";
import { ensureEsmScope } from "./esm-scope.js";
import { PluginLoadError, type PluginSpec, PluginWorker } from "./plugin-worker.js";
import { ensureSdkLink } from "./sdk-link.js";

export { PluginLoadError, type PluginSpec } from "./plugin-worker.js";

/** One worker's answer to a metrics scrape. */
export interface PluginMetrics {
  plugin: string;
  metrics: MetricJson[];
  heap: { used: number; total: number };
}

export type PluginStatus = "running" | "restarting" | "disabled";

export interface LoadedPlugin {
  name: string;
  version: string;
  manifest: PluginManifest;
  storeConfig: StoreConfig | null;
  routes: RouteAnnouncement[];
  status: PluginStatus;
  /** Worker thread id (changes at restart and swap). */
  threadId: number;
  /** ms from worker start to `ready`. */
  loadMs: number;
  loadedAt: number;
  restarts: number;
  inFlight: number;
  wsConnections: number;
}

export interface WorkerPluginsOptions {
  router: Router;
  /** `$HECATE_HOME`: WorkerPlugins links `node_modules/@hecate/sdk` there (see sdk-link.ts). */
  home: string;
  /** Default worker limits; default old gen 128 MiB, young gen 16 MiB, stack 4 MiB. */
  resourceLimits?: ResourceLimits;
  loadTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  /** A worker not answering a ping for this long is terminated (default 2000 ms). */
  heartbeatTimeoutMs?: number;
  /** At most `maxRestarts` crash restarts within `windowMs`; the next crash disables the plugin. */
  restartBudget?: { maxRestarts: number; windowMs: number };
  /** Default unload/swap drain+terminate deadline (ms). */
  unloadDeadlineMs?: number;
  /** Deadline (ms) of an HTTP route that sets no `timeoutMs`, default 30 000; 0 = none. */
  handlerTimeoutMs?: number;
  /** The operator's cap on every route's deadline (ms), a route's `0` included; default 0 = no cap. */
  maxHandlerTimeoutMs?: number;
  /** Largest non-streamed reply body (bytes), default 64 MiB: above it a 502 `reply_too_large`; larger must stream. */
  maxReplyBytes?: number;
  /** Largest ws message accepted from a client (bytes), default 1 MiB. */
  wsMaxPayload?: number;
  /** A dead worker's child process groups get SIGTERM, then SIGKILL after this long (default 2000 ms). */
  childGraceMs?: number;
  onCrashed?: (name: string, reason: string) => void;
  onDisabled?: (name: string, reason: string) => void;
}

/** The request limits of WorkerPluginsOptions that an operator sets (env in main.ts), checked before anything starts. */
export function checkRequestLimits(
  o: Pick<WorkerPluginsOptions, "handlerTimeoutMs" | "maxHandlerTimeoutMs" | "maxReplyBytes">,
): void {
  for (const key of ["handlerTimeoutMs", "maxHandlerTimeoutMs", "maxReplyBytes"] as const) {
    const v = o[key];
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= (key === "maxReplyBytes" ? 1 : 0)))
      throw new Error(`${key} must be a ${key === "maxReplyBytes" ? "positive" : "non-negative"} integer, got ${v}`);
  }
}

interface Entry {
  spec: PluginSpec;
  worker: PluginWorker | undefined;
  status: PluginStatus;
  crashes: number[];
  restarts: number;
  loadedAt: number;
}

/**
 * Events: `crashed` (name, reason), `restarted` (name, LoadedPlugin), `disabled` (name, reason),
 * `swapped` (name, LoadedPlugin: the new version is mounted; the old one is still draining),
 * `log` ({plugin, level, msg, fields}).
 */
export class WorkerPlugins extends EventEmitter {
  private readonly entries = new Map<string, Entry>();
  private readonly locks = new KeyedSerial();
  /** One ws server per message limit in use (the daemon's default, and routes' own `maxPayload`). */
  private readonly wsServers = wsServersByLimit();
  private readonly router: Router;
  private readonly o: Required<
    Omit<WorkerPluginsOptions, "router" | "home" | "onCrashed" | "onDisabled" | "childGraceMs">
  >;
  /** Kills the process groups a plugin started when its worker ends (see child-guard.ts / child-reaper.ts). */
  private readonly reaper: ChildReaper;

  constructor(options: WorkerPluginsOptions) {
    super();
    this.router = options.router;
    checkRequestLimits(options);
    ensureSdkLink(options.home);
    this.o = {
      resourceLimits: options.resourceLimits ?? {
        maxOldGenerationSizeMb: 128,
        maxYoungGenerationSizeMb: 16,
        stackSizeMb: 4,
      },
      loadTimeoutMs: options.loadTimeoutMs ?? 15_000,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 500,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 2000,
      restartBudget: options.restartBudget ?? { maxRestarts: 3, windowMs: 5 * 60_000 },
      unloadDeadlineMs: options.unloadDeadlineMs ?? 5000,
      wsMaxPayload: options.wsMaxPayload ?? DEFAULT_WS_MAX_PAYLOAD,
      handlerTimeoutMs: options.handlerTimeoutMs ?? 30_000,
      maxHandlerTimeoutMs: options.maxHandlerTimeoutMs ?? 0,
      maxReplyBytes: options.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES,
    };
    this.reaper = new ChildReaper(options.childGraceMs ?? 2000);
    if (options.onCrashed) this.on("crashed", options.onCrashed);
    if (options.onDisabled) this.on("disabled", options.onDisabled);
  }

  /** Starts the plugin's worker and mounts it. Rejects with PluginLoadError; nothing stays mounted then. */
  load(spec: PluginSpec): Promise<LoadedPlugin> {
    return this.serial(spec.name, async () => {
      const existing = this.entries.get(spec.name);
      if (existing && existing.status !== "disabled")
        throw new PluginLoadError(spec.name, "mount", "already loaded (unload it or use swap)");
      this.entries.delete(spec.name); // a disabled plugin may be loaded again (fresh restart budget)
      const worker = await this.startWorker(spec);
      const entry: Entry = { spec, worker, status: "running", crashes: [], restarts: 0, loadedAt: Date.now() };
      this.entries.set(spec.name, entry);
      this.watch(entry, worker);
      return this.info(entry)!;
    });
  }

  /**
   * Removes the routes (one swap), drains in-flight requests, runs the plugin's terminate() and terminates the
   * worker, all within `deadlineMs`. Resolves false when the plugin was not loaded.
   */
  unload(name: string, options: { deadlineMs?: number; keepMount?: boolean } = {}): Promise<boolean> {
    return this.serial(name, async () => {
      const entry = this.entries.get(name);
      if (!entry) return false;
      this.entries.delete(name);
      if (!options.keepMount) this.router.removePlugin(name); // keepMount: another host kind has just mounted it
      await this.stopWorker(entry.worker, options.deadlineMs);
      return true;
    });
  }

  /**
   * Zero-downtime upgrade: warm a worker for `spec`, swap the routing table in one step, then drain and stop the
   * old worker. If the new version fails to load, the old one keeps serving and this rejects.
   */
  swap(name: string, spec: PluginSpec, options: { deadlineMs?: number } = {}): Promise<LoadedPlugin> {
    return this.serial(name, async () => {
      const entry = this.entries.get(name);
      if (!entry) throw new PluginLoadError(name, "mount", "not loaded (use load)");
      if (spec.name !== name) throw new PluginLoadError(name, "mount", `spec is for ${spec.name}`);
      const fresh = await this.startWorker(spec);
      const old = entry.worker;
      entry.worker = fresh;
      entry.spec = spec;
      entry.status = "running";
      entry.loadedAt = Date.now();
      entry.crashes = [];
      this.watch(entry, fresh);
      this.emit("swapped", name, this.info(entry));
      // The new version serves from here on; the old worker finishes its in-flight requests, then goes.
      await this.stopWorker(old, options.deadlineMs);
      return this.info(entry)!;
    });
  }

  /**
   * Hands new settings to the running plugin's `onSettingsChanged` (see PluginWorker.applySettings). When applied,
   * a crash restart gets them too. "unsupported" / "failed" / "not_loaded": the caller swaps (or loads) instead.
   */
  applySettings(
    name: string,
    settings: Record<string, unknown>,
  ): Promise<"applied" | "unsupported" | "failed" | "not_loaded"> {
    return this.serial(name, async () => {
      const entry = this.entries.get(name);
      if (!entry?.worker || entry.status !== "running") return "not_loaded";
      const r = await entry.worker.applySettings(settings);
      if (r === "applied") entry.spec = { ...entry.spec, config: { ...entry.spec.config, settings } };
      return r;
    });
  }

  get(name: string): LoadedPlugin | undefined {
    const e = this.entries.get(name);
    return e ? this.info(e) : undefined;
  }

  private readonly wssFor = (maxPayload: number | undefined): WebSocketServer =>
    this.wsServers.forLimit(maxPayload ?? this.o.wsMaxPayload);

  /** A loaded plugin's health: its worker's `health()`, `degraded` while it restarts, `down` once disabled. */
  async health(name: string, timeoutMs: number): Promise<PluginHealth | undefined> {
    const e = this.entries.get(name);
    if (!e) return undefined;
    if (e.status === "restarting") return { status: "degraded", detail: "restarting after a crash" };
    if (e.status === "disabled" || !e.worker) return { status: "down", detail: "disabled after repeated crashes" };
    return e.worker.health(timeoutMs);
  }

  /** The plugin workers' own metrics and heaps (the ones that answer within `timeoutMs`). */
  async metrics(timeoutMs: number): Promise<PluginMetrics[]> {
    const out = await Promise.all(
      [...this.entries.values()].map(async (e) => {
        const m = await e.worker?.metrics(timeoutMs);
        return m && { plugin: e.spec.name, ...m };
      }),
    );
    return out.filter((m): m is PluginMetrics => m !== undefined);
  }

  list(): LoadedPlugin[] {
    return [...this.entries.values()].map((e) => this.info(e)!);
  }

  /** Unloads everything (daemon shutdown). */
  async close(deadlineMs = this.o.unloadDeadlineMs): Promise<void> {
    await Promise.all([...this.entries.keys()].map((n) => this.unload(n, { deadlineMs })));
    this.wsServers.close();
  }

  private info(e: Entry): LoadedPlugin | undefined {
    const w = e.worker;
    return {
      name: e.spec.name,
      version: e.spec.version,
      manifest: w?.manifest ?? { name: e.spec.name, version: e.spec.version },
      storeConfig: w?.storeConfig ?? null,
      routes: w?.routes ?? [],
      status: e.status,
      threadId: w?.threadId ?? -1,
      loadMs: w?.loadMs ?? 0,
      loadedAt: e.loadedAt,
      restarts: e.restarts,
      inFlight: w?.inFlight ?? 0,
      wsConnections: w?.wsCount ?? 0,
    };
  }

  /** Graceful stop (drain, terminate()) of a worker, resolved once the processes it started are stopped too. */
  private async stopWorker(worker: PluginWorker | undefined, deadlineMs = this.o.unloadDeadlineMs): Promise<void> {
    if (!worker) return;
    await worker.stop(deadlineMs);
    await this.reaper.reaped(worker.worker);
  }

  /** Starts a worker, waits for ready and mounts it; the old mount (if any) is replaced in one swap. */
  private async startWorker(spec: PluginSpec): Promise<PluginWorker> {
    ensureEsmScope(spec.root);
    const worker = new PluginWorker(spec, {
      resourceLimits: this.o.resourceLimits,
      loadTimeoutMs: spec.loadTimeoutMs ?? this.o.loadTimeoutMs,
      heartbeatIntervalMs: this.o.heartbeatIntervalMs,
      heartbeatTimeoutMs: this.o.heartbeatTimeoutMs,
      wssFor: this.wssFor,
      handlerTimeoutMs: this.o.handlerTimeoutMs,
      maxHandlerTimeoutMs: this.o.maxHandlerTimeoutMs,
      maxReplyBytes: this.o.maxReplyBytes,
    });
    this.reaper.track(worker.worker);
    // Plugin logs (handler errors, unhandled rejections...) go to the daemon's logger when one listens, else stderr.
    worker.on("log", (entry: { plugin: string; level: string; msg: string }) => {
      if (this.listenerCount("log") > 0) this.emit("log", entry);
      else process.stderr.write(`[plugin ${entry.plugin}] ${entry.level}: ${entry.msg}\n`);
    });
    await worker.start();
    try {
      this.router.setPlugin(spec.name, mountFor(worker));
    } catch (err) {
      await worker.kill("mount failed");
      const msg = err instanceof RouteError ? err.message : String(err);
      throw new PluginLoadError(spec.name, "routes", msg);
    }
    return worker;
  }

  private watch(entry: Entry, worker: PluginWorker): void {
    const onDead = (reason: string, expected: boolean) => {
      if (expected || entry.worker !== worker || this.entries.get(entry.spec.name) !== entry) return;
      void this.onCrash(entry, worker, reason);
    };
    // It may have died between `ready` and now (e.g. a timer throwing right after init).
    if (worker.state === "dead") queueMicrotask(() => onDead(worker.deathReason ?? "worker exited", false));
    else worker.on("dead", onDead);
  }

  private async onCrash(entry: Entry, worker: PluginWorker, reason: string): Promise<void> {
    const name = entry.spec.name;
    this.emit("crashed", name, reason);
    const now = Date.now();
    const { maxRestarts, windowMs } = this.o.restartBudget;
    entry.crashes = entry.crashes.filter((t) => now - t < windowMs);
    entry.crashes.push(now);
    if (entry.crashes.length > maxRestarts) {
      this.disable(entry, `crashed ${entry.crashes.length} times within ${windowMs} ms; last: ${reason}`);
      return;
    }
    entry.status = "restarting";
    await this.serial(name, async () => {
      if (this.entries.get(name) !== entry || entry.worker !== worker) return; // unloaded or swapped meanwhile
      try {
        const fresh = await this.startWorker(entry.spec);
        entry.worker = fresh;
        entry.status = "running";
        entry.restarts++;
        this.watch(entry, fresh);
        this.emit("restarted", name, this.info(entry));
      } catch (err) {
        this.disable(entry, `restart failed: ${(err as Error).message}`);
      }
    }).catch(() => {});
  }

  private disable(entry: Entry, reason: string): void {
    entry.status = "disabled";
    entry.worker = undefined;
    this.router.removePlugin(entry.spec.name);
    this.emit("disabled", entry.spec.name, reason);
  }

  /** One lifecycle operation per plugin at a time. */
  private serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(name, fn);
  }
}

/** What a mount needs of a running plugin: a worker, or a shared plugin (host/shared/shared-plugin.ts). */
export type Mountable = Pick<PluginWorker, "spec" | "manifest" | "routes" | "dispatch" | "upgrade">;

/** The router mount of one worker: every route closure is bound to THIS worker (old requests finish on the old). */
export function mountFor(worker: Mountable): PluginMount {
  const http = worker.routes.filter((r) => r.kind === "http");
  const ws = worker.routes.filter((r) => r.kind === "ws");
  return {
    staticDir: worker.spec.staticDir,
    manifest: worker.spec.manifest ?? worker.manifest,
    routes: http.map((r) => ({
      method: r.methods,
      path: r.path,
      cors: r.cors,
      multipart: r.multipart,
      handler: (req, res, params, ctx) => worker.dispatch(r, req, res, params, ctx),
    })),
    ws: ws.map((r) => ({
      path: r.path,
      allowedOrigins: r.allowedOrigins,
      handler: (req, socket, head, params, ctx) => worker.upgrade(r, req, socket, head, params, ctx),
    })),
  };
}

/**
 * Main-thread side of one plugin worker: starts the worker host, relays HTTP requests (through the SDK's
 * HttpExchanges, the one host side of the protocol: framing, flow control, deadlines, reply cap) and ws connections
 * over the protocol of `@hecate/sdk/protocol`, runs the heartbeat watchdog and fails every in-flight request (502) /
 * connection (1011) the moment the worker dies, so nothing ever hangs on a dead plugin.
 */
import { EventEmitter } from "node:events";
import { realpathSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { type ResourceLimits, Worker } from "node:worker_threads";
import type { PluginConfig, PluginHealth, PluginManifest, StoreConfig } from "@hecate/sdk";
import type { MainToWorker, RouteAnnouncement, WorkerToMain } from "@hecate/sdk/protocol";
import { HttpExchanges } from "@hecate/sdk/runtime/http-exchanges";
import { WsConnections } from "@hecate/sdk/runtime/ws-connections";
import type { WebSocketServer } from "ws";
import type { RouteContext } from "../http/router.js";
import { sendFile } from "../http/static.js";
import { MessageBatcher, unbatch } from "./message-batch.js";
import { dispatchRequest, openUpgrade } from "./route-entry.js";
import type { HostBoot, SdkUrls } from "./worker-host.js";

export interface PluginSpec {
  name: string;
  version: string;
  /** The plugin's root dir (`paths.root`): `file` replies must lie inside it. */
  root: string;
  /** Absolute path of the callback module. */
  entry: string;
  /** Served at `/plugin/{name}/`, usually `paths.static`. */
  staticDir?: string;
  config: PluginConfig;
  /** The installed package's manifest, served at `/plugin/{name}/api/manifest` (else what `manifest()` returns). */
  manifest?: PluginManifest;
  /** Overrides WorkerPlugins' default worker limits. */
  resourceLimits?: ResourceLimits;
  /** Overrides WorkerPlugins' load timeout (ms). */
  loadTimeoutMs?: number;
}

export type LoadStage = "import" | "manifest" | "store" | "init" | "routes" | "crash" | "timeout" | "mount";

export class PluginLoadError extends Error {
  constructor(
    readonly plugin: string,
    readonly stage: LoadStage,
    message: string,
    readonly workerStack?: string,
  ) {
    super(`plugin ${plugin} failed to load (${stage}): ${message}`);
    this.name = "PluginLoadError";
  }
}

export interface WorkerOptions {
  resourceLimits: ResourceLimits;
  /** Deadline of a route that sets no `timeoutMs` (ms, 0 = none). */
  handlerTimeoutMs: number;
  /** The operator's cap on every route's deadline, `0` (none) included; 0 = no cap. */
  maxHandlerTimeoutMs: number;
  /** Largest non-streamed reply body (bytes): checked by the worker's dispatcher before encoding, and here. */
  maxReplyBytes: number;
  loadTimeoutMs: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  /** The ws server for a route's message limit (`RouteAnnouncement.maxPayload`; undefined: the daemon's default). */
  wssFor: (maxPayload: number | undefined) => WebSocketServer;
}

export type ReadyInfo = Extract<WorkerToMain, { t: "ready" }>;

const WORKER_HOST = new URL("./worker-host.js", import.meta.url);
/** Resolved once here, imported by URL in every worker (see SdkUrls in worker-host.ts). */
const SDK_URLS: SdkUrls = {
  config: import.meta.resolve("@hecate/sdk/config"),
  dispatcher: import.meta.resolve("@hecate/sdk/runtime/dispatcher"),
};

/** Events: `dead` (reason: string, expected: boolean), `log` (entry). */
export class PluginWorker extends EventEmitter {
  readonly worker: Worker;
  state: "starting" | "ready" | "stopping" | "dead" = "starting";
  manifest?: PluginManifest;
  storeConfig: StoreConfig | null = null;
  routes: RouteAnnouncement[] = [];
  readonly startedAt = Date.now();
  loadMs = 0;
  private readonly realRoot: string;
  private readonly http: HttpExchanges;
  private readonly ws: WsConnections;
  deathReason: string | undefined;
  private expectedExit = false;
  private watchdog: NodeJS.Timeout | undefined;
  private pingN = 0;
  private settingsN = 0;
  private readonly settingsWaiters = new Map<number, (m: Extract<WorkerToMain, { t: "settings-applied" }>) => void>();
  private pingSentAt = 0;
  /** Kills the worker when the current ping is not answered within heartbeatTimeoutMs. */
  private pingDeadline: NodeJS.Timeout | undefined;
  private terminatedWaiter: (() => void) | undefined;
  /** Pending `health` / `metrics` questions by number (see ask()). */
  private readonly asks = new Map<number, (m: WorkerToMain) => void>();
  private askN = 0;
  /** Sees every message while start() waits for `ready` / `load-failed`. */
  private loadWaiter: ((m: WorkerToMain) => void) | undefined;
  /** Requests to the worker, batched per turn (a batch open 200 µs goes at the next post, see message-batch.ts). */
  private readonly batch = new MessageBatcher<MainToWorker>((msgs, transfer) => {
    if (this.state !== "dead") this.worker.postMessage(msgs, transfer);
  }, 0.2);

  constructor(
    readonly spec: PluginSpec,
    private readonly opts: WorkerOptions,
  ) {
    super();
    this.realRoot = realpathSync(spec.root);
    this.http = new HttpExchanges({
      plugin: spec.name,
      post: (msg, transfer) => this.post(msg, transfer),
      serveFile: (req, res, file) =>
        sendFile(req, res, file.path, this.realRoot, {
          downloadName: file.downloadName,
          contentType: file.contentType,
        }),
      log: (msg) => this.emit("log", { plugin: spec.name, level: "warn", msg }),
      maxReplyBytes: opts.maxReplyBytes,
      transfer: true,
    });
    this.ws = new WsConnections({
      post: (msg, transfer) => this.post(msg, transfer),
      serverFor: opts.wssFor,
      transfer: true,
    });
    const boot: HostBoot = {
      pluginName: spec.name,
      entry: spec.entry,
      config: spec.config,
      maxReplyBytes: opts.maxReplyBytes,
      sdk: SDK_URLS,
    };
    this.worker = new Worker(WORKER_HOST, {
      workerData: boot,
      resourceLimits: spec.resourceLimits ?? opts.resourceLimits,
      execArgv: [],
      name: `plugin:${spec.name}`,
    });
    const onMessage = (m: WorkerToMain) => this.onMessage(m);
    this.worker.on("message", (data: WorkerToMain | WorkerToMain[]) => unbatch(data, onMessage));
    this.worker.on("error", (err) => {
      this.deathReason ??= `worker error: ${err.message}`;
    });
    this.worker.on("exit", (code) => this.onExit(code));
  }

  /** Resolves once the plugin is `ready`; rejects with PluginLoadError (load-failed, crash, timeout). */
  start(): Promise<ReadyInfo> {
    return new Promise<ReadyInfo>((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        this.kill("load timeout");
        reject(new PluginLoadError(this.spec.name, "timeout", `not ready within ${this.opts.loadTimeoutMs} ms`));
      }, this.opts.loadTimeoutMs);
      const onMsg = (m: WorkerToMain) => {
        if (m.t === "ready") {
          cleanup();
          this.manifest = m.manifest;
          this.storeConfig = m.storeConfig;
          this.routes = m.routes;
          this.state = "ready";
          this.loadMs = Date.now() - this.startedAt;
          this.startWatchdog();
          this.http.setRoutes(m.routes, this.opts);
          resolve(m);
        } else if (m.t === "load-failed") {
          cleanup();
          this.kill(`load failed: ${m.message}`);
          reject(new PluginLoadError(this.spec.name, m.stage, m.message, m.stack));
        }
      };
      const onDead = (reason: string) => {
        cleanup();
        reject(new PluginLoadError(this.spec.name, "crash", reason));
      };
      const cleanup = () => {
        clearTimeout(timer);
        this.loadWaiter = undefined;
        this.off("dead", onDead);
      };
      this.loadWaiter = onMsg;
      this.on("dead", onDead);
    });
  }

  get inFlight(): number {
    return this.http.size;
  }

  get wsCount(): number {
    return this.ws.size;
  }

  get threadId(): number {
    return this.worker.threadId;
  }

  private post(msg: MainToWorker, transfer?: ArrayBuffer[]): void {
    if (this.state === "dead") return;
    this.batch.post(msg, transfer);
  }

  // ---- HTTP ----

  dispatch(
    route: RouteAnnouncement,
    req: IncomingMessage,
    res: ServerResponse,
    params: Record<string, string>,
    ctx: RouteContext,
  ): void {
    const serving = this.state === "ready" || this.state === "stopping";
    dispatchRequest(this.http, this.spec.name, serving, route, req, res, params, ctx);
  }

  // ---- WebSocket ----

  upgrade(
    route: RouteAnnouncement,
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    params: Record<string, string>,
    ctx: RouteContext,
  ): void {
    openUpgrade(this.ws, this.state === "ready", route, req, socket, head, params, ctx);
  }

  // ---- messages, watchdog, lifecycle ----

  private onMessage(m: WorkerToMain): void {
    this.loadWaiter?.(m);
    if (this.http.handle(m) || this.ws.handle(m)) return;
    switch (m.t) {
      case "pong":
        if (m.n === this.pingN) {
          this.pingSentAt = 0;
          clearTimeout(this.pingDeadline);
        }
        return;
      case "log":
        this.emit("log", { plugin: this.spec.name, level: m.level, msg: m.msg, fields: m.fields });
        return;
      case "terminated":
        this.terminatedWaiter?.();
        return;
      case "settings-applied":
        this.settingsWaiters.get(m.id)?.(m);
        return;
      case "health":
      case "metrics":
        this.asks.get(m.n)?.(m);
        return;
      default:
        return;
    }
  }

  /** The plugin's `health()`; `down` when it does not answer within `timeoutMs` or the worker is not serving. */
  async health(timeoutMs: number): Promise<PluginHealth> {
    if (this.state !== "ready") return { status: "down", detail: `worker ${this.state}` };
    const m = await this.ask("health", timeoutMs);
    if (!m) return { status: "down", detail: `no answer to the health check within ${timeoutMs} ms` };
    const { t: _t, n: _n, ...health } = m;
    return health;
  }

  /** The plugin's own metrics and its heap, or undefined when it does not answer within `timeoutMs`. */
  async metrics(timeoutMs: number): Promise<Omit<Extract<WorkerToMain, { t: "metrics" }>, "t" | "n"> | undefined> {
    if (this.state !== "ready" && this.state !== "stopping") return undefined;
    const m = await this.ask("metrics", timeoutMs);
    return m && { metrics: m.metrics, heap: m.heap };
  }

  /** Posts a `health` / `metrics` question and waits for its answer (undefined past the deadline or at death). */
  private ask<T extends "health" | "metrics">(
    t: T,
    timeoutMs: number,
  ): Promise<Extract<WorkerToMain, { t: T }> | undefined> {
    const n = ++this.askN;
    return new Promise((resolve) => {
      const done = (m: WorkerToMain | undefined) => {
        clearTimeout(timer);
        this.asks.delete(n);
        this.off("dead", onDead);
        resolve(m as Extract<WorkerToMain, { t: T }> | undefined);
      };
      const onDead = () => done(undefined);
      const timer = setTimeout(onDead, timeoutMs);
      this.asks.set(n, done);
      this.on("dead", onDead);
      this.post({ t, n });
    });
  }

  private startWatchdog(): void {
    const { heartbeatIntervalMs, heartbeatTimeoutMs } = this.opts;
    // The deadline is a timer of its own armed with each ping: checking it on the next interval tick instead let a
    // stuck worker live up to timeout + interval (a 3 s busy loop outlived the default 2 s timeout).
    this.watchdog = setInterval(() => {
      if (this.state === "dead" || this.pingSentAt) return;
      this.pingN++;
      this.pingSentAt = Date.now();
      this.post({ t: "ping", n: this.pingN });
      this.pingDeadline = setTimeout(() => {
        if (this.pingSentAt && this.state !== "dead")
          this.kill(`watchdog: no heartbeat for ${heartbeatTimeoutMs} ms (stuck event loop?)`);
      }, heartbeatTimeoutMs);
      this.pingDeadline.unref();
    }, heartbeatIntervalMs);
    this.watchdog.unref();
  }

  /**
   * Hands new settings to the plugin's `onSettingsChanged`: "applied", "unsupported" (no callback: nothing changed)
   * or "failed" (it threw, or the worker died or did not answer within `timeoutMs`): the caller swaps the plugin then.
   */
  applySettings(settings: Record<string, unknown>, timeoutMs = 10_000): Promise<"applied" | "unsupported" | "failed"> {
    if (this.state !== "ready") return Promise.resolve("failed");
    const id = ++this.settingsN;
    return new Promise((resolve) => {
      const done = (r: "applied" | "unsupported" | "failed") => {
        clearTimeout(timer);
        this.settingsWaiters.delete(id);
        this.off("dead", onDead);
        resolve(r);
      };
      const onDead = () => done("failed");
      const timer = setTimeout(() => done("failed"), timeoutMs);
      this.settingsWaiters.set(id, (m) => done(!m.supported ? "unsupported" : m.error ? "failed" : "applied"));
      this.on("dead", onDead);
      this.post({ t: "settings", id, settings });
    });
  }

  /** Waits until no HTTP request is in flight (true) or the deadline passes (false). */
  drain(deadlineMs: number): Promise<boolean> {
    return this.http.idle(deadlineMs);
  }

  /**
   * Graceful stop: drain in-flight requests, run the plugin's `terminate()` (it closes ws connections), then
   * `worker.terminate()`, which frees the plugin's code and heap. The whole thing stays within ~deadlineMs.
   */
  async stop(deadlineMs: number): Promise<void> {
    if (this.state === "dead") return;
    this.expectedExit = true;
    this.state = "stopping";
    const until = Date.now() + deadlineMs;
    await this.drain(deadlineMs);
    const left = Math.max(50, until - Date.now());
    if ((this.state as string) !== "dead") {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.terminatedWaiter = () => {
          clearTimeout(t);
          resolve();
        };
        this.post({ t: "terminate", deadlineMs: left });
      });
    }
    await this.kill("unloaded");
  }

  /** Hard stop (crash handling, watchdog). */
  async kill(reason: string): Promise<void> {
    this.deathReason ??= reason;
    if (this.state === "dead") return;
    await this.worker.terminate();
  }

  private onExit(code: number): void {
    if (this.state === "dead") return;
    const wasStarting = this.state === "starting";
    this.state = "dead";
    clearInterval(this.watchdog);
    clearTimeout(this.pingDeadline);
    const reason = this.deathReason ?? `worker exited with code ${code}`;
    this.http.failAll("plugin_crashed", `plugin ${this.spec.name}: ${reason}`);
    if (this.expectedExit) this.ws.closeAll(1001, "plugin unloaded");
    else this.ws.closeAll(1011, "plugin crashed");
    this.terminatedWaiter?.();
    this.emit("dead", reason, this.expectedExit && !wasStarting);
  }
}

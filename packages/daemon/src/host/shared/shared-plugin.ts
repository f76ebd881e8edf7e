/**
 * One generation of a shared plugin: its code runs on the plugin host's main thread and a request is a direct
 * function call. It is the PluginWorker of the shared model, with the same two halves, minus the thread: the SDK's
 * HttpExchanges / WsConnections (the host side: framing, deadlines, reply cap, reply-header rules, ws flow control)
 * talk straight to the SDK's Dispatcher (the plugin side: request objects, route handlers, reply normalisation),
 * each calling the other's `handle` synchronously. No worker, no MessageChannel, no structured clone: a plugin
 * behaves exactly as it does in a worker, because it is the very same code on both sides.
 *
 * The Dispatcher is this generation's own instance of `@hecate/sdk` (imported in the plugin's scope, see
 * scope-hooks.ts), so its module-level state (config, log sink, supervisors, terminate hooks, store) is the
 * plugin's alone. What a thread gave and this does not (the trade-off of `isolation: "shared"`): a crash
 * (uncaught exception, process.exit, heap exhaustion) takes the whole host down, a stuck loop stalls every plugin
 * of the host, nothing bounds its heap, and its code stays in memory after an unload (ESM cannot be unloaded).
 */
import { realpathSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { pathToFileURL } from "node:url";
import { getHeapStatistics } from "node:v8";
import type { PluginHealth, PluginManifest, StoreConfig } from "@hecate/sdk";
import type { MetricJson } from "@hecate/sdk/metrics";
import type { MainToWorker, RouteAnnouncement, WorkerToMain } from "@hecate/sdk/protocol";
import type { Dispatcher, LoadResult } from "@hecate/sdk/runtime/dispatcher";
import { HttpExchanges } from "@hecate/sdk/runtime/http-exchanges";
import { WsConnections } from "@hecate/sdk/runtime/ws-connections";
import type { WebSocketServer } from "ws";
import type { RouteContext } from "../../http/router.js";
import { sendFile } from "../../http/static.js";
import { answerWithin } from "../../util/answer-within.js";
import { PluginLoadError, type PluginSpec } from "../../worker/plugin-worker.js";
import { dispatchRequest, openUpgrade } from "../../worker/route-entry.js";
import { scopedUrl } from "./scoped-import.js";

const DISPATCHER_URL = import.meta.resolve("@hecate/sdk/runtime/dispatcher");
const CONFIG_URL = import.meta.resolve("@hecate/sdk/config");

export interface SharedPluginOptions {
  handlerTimeoutMs: number;
  maxHandlerTimeoutMs: number;
  maxReplyBytes: number;
  loadTimeoutMs: number;
  wssFor: (maxPayload: number | undefined) => WebSocketServer;
  log: (entry: { plugin: string; level: string; msg: string; fields?: Record<string, unknown> }) => void;
}

export class SharedPlugin {
  state: "starting" | "ready" | "stopping" | "dead" = "starting";
  manifest?: PluginManifest;
  storeConfig: StoreConfig | null = null;
  routes: RouteAnnouncement[] = [];
  readonly startedAt = Date.now();
  loadMs = 0;
  /**
   * V8 heap growth across the load: what the generation leaves behind once unloaded, over-estimated (the load's own
   * garbage is counted too; measured for a small plugin importing the SDK: ~1.9 MiB counted, ~0.64 MiB retained).
   */
  heapBytes = 0;
  private dispatcher: Dispatcher | undefined;
  private readonly http: HttpExchanges;
  private readonly realRoot: string;
  private readonly ws: WsConnections;
  private readonly metricWaiters = new Map<number, (m: Extract<WorkerToMain, { t: "metrics" }>) => void>();
  private metricN = 0;

  constructor(
    readonly spec: PluginSpec,
    /** `{name}.{n}`: the module scope of this generation. */
    readonly scope: string,
    private readonly o: SharedPluginOptions,
  ) {
    this.realRoot = realpathSync(spec.root);
    const post = (msg: MainToWorker) => this.dispatcher?.handle(msg);
    this.http = new HttpExchanges({
      plugin: spec.name,
      post,
      serveFile: (req, res, file) =>
        sendFile(req, res, file.path, this.realRoot, {
          downloadName: file.downloadName,
          contentType: file.contentType,
        }),
      log: (msg) => o.log({ plugin: spec.name, level: "warn", msg }),
      maxReplyBytes: o.maxReplyBytes,
      transfer: false,
    });
    this.ws = new WsConnections({ post, serverFor: o.wssFor, transfer: false });
  }

  /** Imports the plugin in its own scope and runs the SDK's load (manifest, store, init, routes). */
  async start(): Promise<void> {
    const [{ Dispatcher: ScopedDispatcher }, config] = await Promise.all([
      import(scopedUrl(DISPATCHER_URL, this.scope)) as Promise<typeof import("@hecate/sdk/runtime/dispatcher")>,
      import(scopedUrl(CONFIG_URL, this.scope)) as Promise<typeof import("@hecate/sdk/config")>,
    ]);
    config.sealConfigOnNextSet(); // as in a worker: the config the host sets before init is final
    const dispatcher = new ScopedDispatcher(
      { post: (m: WorkerToMain) => this.onMessage(m) },
      { maxReplyBytes: this.o.maxReplyBytes },
    );
    this.dispatcher = dispatcher;
    const entry = scopedUrl(pathToFileURL(this.spec.entry).href, this.scope);
    const heapBefore = getHeapStatistics().used_heap_size;
    const timeoutMs = this.spec.loadTimeoutMs ?? this.o.loadTimeoutMs;
    // A load that never ends cannot be stopped here (no thread to terminate): it is abandoned after the timeout.
    const r = await answerWithin<LoadResult | undefined>(
      dispatcher.load(() => import(entry), this.spec.config),
      timeoutMs,
      undefined,
    );
    if (!r) {
      this.state = "dead";
      throw new PluginLoadError(this.spec.name, "timeout", `not ready within ${timeoutMs} ms`);
    }
    if (r.t === "load-failed") {
      this.state = "dead";
      throw new PluginLoadError(this.spec.name, r.stage, r.message, r.stack);
    }
    this.heapBytes = Math.max(0, getHeapStatistics().used_heap_size - heapBefore);
    this.manifest = r.manifest;
    this.storeConfig = r.storeConfig;
    this.routes = r.routes;
    this.http.setRoutes(r.routes, this.o);
    this.loadMs = Date.now() - this.startedAt;
    this.state = "ready";
  }

  get inFlight(): number {
    return this.http.size;
  }

  get wsCount(): number {
    return this.ws.size;
  }

  private onMessage(m: WorkerToMain): void {
    if (this.http.handle(m) || this.ws.handle(m)) return;
    if (m.t === "log") this.o.log({ plugin: this.spec.name, level: m.level, msg: m.msg, fields: m.fields });
    else if (m.t === "metrics") this.metricWaiters.get(m.n)?.(m);
  }

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

  /** The plugin's `health()`, `down` when it does not answer within `timeoutMs`. */
  async health(timeoutMs: number): Promise<PluginHealth> {
    if (this.state !== "ready" || !this.dispatcher) return { status: "down", detail: `plugin ${this.state}` };
    return answerWithin(this.dispatcher.health(), timeoutMs, {
      status: "down",
      detail: `no answer to the health check within ${timeoutMs} ms`,
    });
  }

  /** The plugin's own metrics (its heap is the host's: not its own). */
  metrics(): MetricJson[] {
    const n = ++this.metricN;
    let out: MetricJson[] = [];
    this.metricWaiters.set(n, (m) => {
      out = m.metrics;
    });
    this.dispatcher?.handle({ t: "metrics", n }); // answered synchronously
    this.metricWaiters.delete(n);
    return out;
  }

  applySettings(settings: Record<string, unknown>): Promise<"applied" | "unsupported" | "failed"> {
    if (this.state !== "ready" || !this.dispatcher) return Promise.resolve("failed");
    return this.dispatcher
      .applySettings(settings)
      .then((r) => (!r.supported ? "unsupported" : r.error ? "failed" : "applied"));
  }

  /**
   * Graceful stop: in-flight requests drained, the plugin's `terminate()` run (its supervisors, scheduler jobs and
   * store closed, its ws connections closed with 1001), all within ~deadlineMs. What is still open then fails (502).
   */
  async stop(deadlineMs: number): Promise<void> {
    if (this.state === "dead") return;
    this.state = "stopping";
    const until = Date.now() + deadlineMs;
    await this.http.idle(deadlineMs);
    await this.dispatcher?.terminate(Math.max(50, until - Date.now()));
    this.state = "dead";
    this.http.failAll("plugin_unloaded", `plugin ${this.spec.name} was unloaded`);
    this.ws.closeAll(1001, "plugin unloaded");
  }
}

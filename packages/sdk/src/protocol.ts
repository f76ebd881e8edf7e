/**
 * Messages between the daemon's main thread and a plugin's worker thread, over the plugin's MessagePort.
 * Bodies travel as Uint8Array chunks whose ArrayBuffers are transferred, not copied.
 * Every request/connection id is allocated by the main thread and unique per worker.
 */
import type { CorsPolicy, HttpMethod, PluginConfig, PluginHealth, PluginManifest, StoreConfig } from "./contract.js";
import type { MetricJson } from "./metrics.js";

/** Default cap of a non-streamed reply body: 64 MiB (larger answers must stream). */
export const DEFAULT_MAX_REPLY_BYTES = 64 * 1024 * 1024;

/** `workerData` given to the worker host. */
export interface WorkerBoot {
  pluginName: string;
  /** Absolute path of the callback module. */
  entry: string;
  config: PluginConfig;
  /** Largest non-streamed reply body (bytes), default DEFAULT_MAX_REPLY_BYTES (see DispatcherOptions). */
  maxReplyBytes?: number;
}

/** A route as announced by the worker after `init`. `id` is what requests refer to. */
export interface RouteAnnouncement {
  id: number;
  kind: "http" | "ws";
  methods: HttpMethod[];
  path: string;
  /** ws routes only: origins allowed besides the daemon's host (see WsRouteDefinition). */
  allowedOrigins?: string[] | "*";
  /** http routes only: cross-origin policy the daemon enforces (see HttpRouteDefinition.cors). */
  cors?: CorsPolicy;
  /** http routes only: `multipart/form-data` bodies accepted (see HttpRouteDefinition.multipart). */
  multipart?: boolean;
  /** ws routes only: the route's `maxPayload` when it set one. */
  maxPayload?: number;
  /** http routes only: the plugin's handler deadline (ms, 0 = none; see HttpRouteDefinition.timeoutMs). */
  timeoutMs?: number;
}

// ---- main -> worker ----
export type MainToWorker =
  | {
      t: "req";
      id: number;
      routeId: number;
      method: HttpMethod;
      /** Path relative to the API prefix. */
      path: string;
      params: Record<string, string>;
      query: Record<string, string | string[]>;
      headers: Record<string, string | string[] | undefined>;
      remoteAddress?: string;
      /** Whole body when small and already complete; otherwise `body` chunks follow, then `end`. */
      body?: Uint8Array;
      /** True when the body is complete with this message (no `body` / `end` messages follow). */
      complete: boolean;
    }
  | { t: "body"; id: number; chunk: Uint8Array }
  | { t: "end"; id: number }
  /**
   * Abort the handler's signal: the client went away, or (`timeoutMs` set) the route's deadline passed and the host
   * already answered 504.
   */
  | { t: "abort"; id: number; timeoutMs?: number }
  /** Flow control: the main thread has written `bytes` more of response `id` to the socket. */
  | { t: "res-ack"; id: number }
  | {
      t: "ws-open";
      connId: number;
      routeId: number;
      path: string;
      params: Record<string, string>;
      query: Record<string, string | string[]>;
      headers: Record<string, string | string[] | undefined>;
      remoteAddress?: string;
    }
  | { t: "ws-msg"; connId: number; data: string | Uint8Array }
  | { t: "ws-closed"; connId: number; code: number; reason: string }
  /** A `ws-send` of this seq has been handed to the socket. */
  | { t: "ws-sent"; connId: number; seq: number }
  | { t: "ping"; n: number }
  /** New settings for the plugin's `onSettingsChanged`; answered by `settings-applied` with the same id. */
  | { t: "settings"; id: number; settings: Record<string, unknown> }
  /** Ask the plugin's `health()` (answered `health` with the same `n`). */
  | { t: "health"; n: number }
  /** Ask the plugin's metrics and its heap (answered `metrics` with the same `n`). */
  | { t: "metrics"; n: number }
  /** Run the plugin's `terminate()` within `deadlineMs`, close ws connections, stop jobs, then answer `terminated`. */
  | { t: "terminate"; deadlineMs: number };

// ---- worker -> main ----
export type WorkerToMain =
  | { t: "ready"; manifest: PluginManifest; storeConfig: StoreConfig | null; routes: RouteAnnouncement[] }
  /** Loading failed (import, manifest, init, routes): the reason is shown to the user. */
  | { t: "load-failed"; stage: "import" | "manifest" | "store" | "init" | "routes"; message: string; stack?: string }
  | {
      t: "res";
      id: number;
      status: number;
      headers: Record<string, string | string[]>;
      /** The whole body. When absent and `streaming` is true, `res-chunk`s follow, then `res-end`. */
      body?: Uint8Array;
      /**
       * The whole body as text, sent UTF-8 encoded (instead of `body`): a string or JSON reply is never encoded in
       * the plugin only to be turned back into a string for node:http (one allocation and two copies fewer).
       */
      text?: string;
      streaming?: boolean;
      /** Main thread serves this file (path checked to lie inside the plugin root), with ETag/Range. */
      file?: { path: string; downloadName?: string; contentType?: string };
    }
  /**
   * Flow control of a streamed request body: the plugin consumed `bytes` more of request `id`. The main thread
   * stops reading the client past a window of unacknowledged bytes, so a slow plugin slows the upload instead of
   * buffering it in the worker's heap.
   */
  | { t: "body-ack"; id: number; bytes: number }
  /** Each chunk is acknowledged with `res-ack` once written, so a slow client slows the plugin (backpressure). */
  | { t: "res-chunk"; id: number; chunk: Uint8Array }
  | { t: "res-end"; id: number; error?: string }
  /**
   * Flow control of inbound ws messages: the plugin's onMessage for `bytes` more of connection `connId` returned (or
   * its promise settled). The main thread stops reading that client past a window of unacknowledged bytes, so a
   * flooding client cannot make the daemon queue messages for a slow plugin.
   */
  | { t: "ws-ack"; connId: number; bytes: number }
  | { t: "ws-accept"; connId: number }
  | { t: "ws-reject"; connId: number; status: number }
  | { t: "ws-send"; connId: number; seq: number; data: string | Uint8Array }
  | { t: "ws-close"; connId: number; code: number; reason: string }
  | { t: "pong"; n: number }
  /**
   * Outcome of `settings` `id`: `supported` false when the plugin has no `onSettingsChanged` (nothing changed);
   * `error` when it threw (the host swaps the plugin then).
   */
  | { t: "settings-applied"; id: number; supported: boolean; error?: string }
  | ({ t: "health"; n: number } & PluginHealth)
  | { t: "metrics"; n: number; metrics: MetricJson[]; heap: { used: number; total: number } }
  | {
      t: "log";
      level: "trace" | "debug" | "info" | "warn" | "error" | "fatal";
      msg: string;
      fields?: Record<string, unknown>;
    }
  | { t: "terminated" };

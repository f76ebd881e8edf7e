/**
 * The typed IPC protocol between the supervisor and a plugin-host process (Node's `child_process` channel with
 * `serialization: "advanced"`). The supervisor sends requests (each with an id, answered by one `reply`) and, to the
 * main host, accepted client connections (`conn`, with the socket as the message's handle). The host sends replies
 * and events: plugin crashes/restarts/disables and log lines from its plugins, and `active` (a plugin got its first
 * request since the last report: what the supervisor needs to find a plugin that takes its host down).
 */
import type { ContainerPluginSpec } from "../container/container-plugins.js";
import type { ConnectionLimits } from "../http/conn-limits.js";
import type { PluginSpec } from "../worker/plugin-worker.js";
import type { WorkerPluginsOptions } from "../worker/worker-plugins.js";

/** Everything a host needs to start; the supervisor passes it as the first message. */
export interface HostBoot {
  t: "boot";
  home: string;
  /** Host number (1 = the main host that serves the plugin listener; others serve one socket each). */
  hostId: number;
  /** Isolated hosts serve HTTP on this Unix socket (the main host proxies their plugins' routes to it). */
  listenPath?: string;
  containers: boolean;
  runtime?: Partial<Omit<WorkerPluginsOptions, "router" | "home" | "onCrashed" | "onDisabled">>;
  /** Milliseconds between two `active` reports of the same plugin. */
  activityIntervalMs: number;
  /** `/ready` answers 200 (boot finished). */
  ready: boolean;
  /** Installed plugins that are not loaded: name -> the message of their URLs' 503 (see `set-inactive`). */
  inactive?: Record<string, string>;
  /** Admin shared with the plugin port: `/admin` is proxied to the supervisor's internal admin socket. */
  adminSocketPath?: string;
  /** The plugin listener's Host allow-list (main host) and connection caps. */
  allowedHosts: string[];
  limits?: ConnectionLimits;
  /** The operator's container sandbox policy (see DaemonOptions.containerPolicy). */
  containerPolicy?: ContainerPolicy;
  /** Count plugin requests for `/metrics` (default true; HECATE_METRICS=0 turns it off). */
  metrics?: boolean;
}

export interface ContainerPolicy {
  allowExecTmp?: boolean;
  maxDataQuotaMb?: number;
}

/** How a plugin is run by a host. */
export type HostedSpec =
  | { kind: "worker"; spec: PluginSpec }
  /** `isolation: "shared"`: on the host's main thread, routes are direct calls (host/shared/). */
  | { kind: "shared"; spec: PluginSpec }
  | { kind: "container"; spec: ContainerPluginSpec }
  /** Served by another (isolated) host on `socketPath`: mounted here as a proxy. */
  | { kind: "remote"; name: string; socketPath: string; staticDir?: string };

export interface LoadedInfo {
  name: string;
  version: string;
  kind: HostedSpec["kind"];
  routes: { method: string; path: string }[];
}

export type HostRequest =
  | { t: "load"; id: number; hosted: HostedSpec }
  | { t: "unload"; id: number; name: string; deadlineMs?: number }
  /** Boot reconciliation of container plugins (adopt the previous run's containers). */
  | { t: "reconcile"; id: number; specs: ContainerPluginSpec[] }
  /** New settings for a worker plugin's `onSettingsChanged`; answered with a SettingsOutcome. */
  | { t: "settings"; id: number; name: string; settings: Record<string, unknown> }
  | { t: "set-ready"; id: number; ready: boolean }
  /** The installed plugins that are not loaded (the whole set, replacing the last): name -> message for clients. */
  | { t: "set-inactive"; id: number; plugins: Record<string, string> }
  | { t: "close"; id: number }
  /**
   * Recycle: a new host serves the new connections; this one drains its own (each next response says
   * `Connection: close`, connections idle for `idleGraceMs` are closed) for at most `deadlineMs`, then unloads
   * everything (container plugins are left running for the new host, which adopts them) and exits.
   */
  | { t: "retire"; id: number; deadlineMs: number; idleGraceMs: number }
  /** Every plugin of this host with its health (answer: Record<name, PluginHealth>), each within `timeoutMs`. */
  | { t: "health"; id: number; timeoutMs: number }
  /** This host's metrics (answer: MetricJson[], prom-client's JSON shape; [] with metrics off). */
  | { t: "metrics"; id: number };

/** A client connection (the socket travels as the message's handle); the host answers `conn-ack`. */
export type SupervisorToHost = HostBoot | HostRequest | { t: "conn"; seq: number };

export interface HostErrorInfo {
  message: string;
  /** PluginLoadError stage or ContainerPluginError code. */
  stage?: string;
  code?: string;
}

export type HostEvent =
  | { t: "ready"; pid: number }
  | { t: "reply"; id: number; ok: true; value: unknown }
  | { t: "reply"; id: number; ok: false; error: HostErrorInfo }
  | { t: "crashed"; plugin: string; reason: string }
  | { t: "restarted"; plugin: string }
  | { t: "disabled"; plugin: string; reason: string }
  | { t: "log"; plugin: string; level: string; msg: string; fields?: Record<string, unknown> }
  | { t: "active"; plugins: string[] }
  /** Shared plugins' generations unloaded or replaced so far in this host, and the heap they took at load. */
  | { t: "shared-leak"; generations: number; bytes: number }
  /** The host holds connection `seq`: the supervisor closes its own copy of the socket. */
  | { t: "conn-ack"; seq: number };

export type HostToSupervisor = HostEvent;

/** Result of a `reconcile` request. */
export interface ReconcileOutcome {
  loaded: LoadedInfo[];
  failed: { name: string; error: HostErrorInfo }[];
}

/**
 * The public contract of ContainerPlugins (container-plugins.ts): what a caller hands in (spec, options), what it
 * gets back (LoadedContainer, events) and how a load fails (ContainerPluginError), plus the labels every container
 * of hecate carries and the default limits.
 */
import type { PluginManifest } from "@hecate/sdk";
import type { Router } from "../http/router.js";
import type { PodmanClient } from "./podman.js";

export const LABEL_INSTANCE = "hecate.instance";
export const LABEL_PLUGIN = "hecate.plugin";
export const LABEL_GENERATION = "hecate.generation";
export const LABEL_SPEC = "hecate.spec";

export const DEFAULT_LIMITS = { memory_mb: 128, cpus: 0.5, pids: 64 } as const;
/** `container.data_quota_mb` when the manifest sets none, and the operator's cap when ContainerPlugins is given none. */
export const DEFAULT_DATA_QUOTA_MB = 256;
export const DEFAULT_MAX_DATA_QUOTA_MB = 1024;

export type ContainerErrorCode =
  | "invalid_manifest"
  | "image_failed"
  | "create_failed"
  | "start_failed"
  | "unhealthy"
  | "not_loaded"
  | "already_loaded"
  | "route_failed"
  /** The plugin's socket path is not a socket it owns (symlink, hard link, other file type, other owner). */
  | "socket_untrusted"
  /** The manifest asks for something the operator's policy does not allow (e.g. `container.exec_tmp`). */
  | "not_allowed";

export class ContainerPluginError extends Error {
  constructor(
    readonly plugin: string,
    readonly code: ContainerErrorCode,
    message: string,
    readonly logs?: string,
  ) {
    super(`container plugin ${plugin}: ${message}`);
    this.name = "ContainerPluginError";
  }
}

export interface ContainerPluginSpec {
  name: string;
  /**
   * The plugin's root dir (`plugins/{name}`, layout of `pluginPaths`): its `package/` is mounted read-only at
   * /plugin; its `data/` is mounted writable at /data when the manifest sets `container.writable_data`.
   */
  dir: string;
  manifest: PluginManifest;
  settings?: Record<string, unknown>;
}

export type ContainerEvent =
  | { type: "crashed"; plugin: string; reason: "oom" | "exit" | "unhealthy"; exitCode?: number; restarts: number }
  | { type: "restarted"; plugin: string; restarts: number }
  | { type: "failed"; plugin: string; reason: "oom" | "exit" | "unhealthy"; message: string }
  /** A line the container printed: the SDK's JSON log lines keep their level and fields; other stdout lines are
   *  "info", other stderr lines "error". */
  | { type: "log"; plugin: string; level: string; msg: string; fields?: Record<string, unknown> };

export interface ContainerPluginsOptions {
  /** `$HECATE_HOME`. */
  home: string;
  podman: PodmanClient;
  /** Default: persistent id from `$HECATE_HOME/instance-id` (created once). */
  instanceId?: string;
  router?: Router;
  /** Crash / restart / failure reports (the lifecycle turns them into plugin_crashed_v1 / plugin_disabled_v1). */
  onEvent?: (e: ContainerEvent) => void;
  restartBudget?: { max: number; windowMs: number };
  /** Load: the health check must pass within this, default 20 s. */
  healthTimeoutMs?: number;
  /** Watch: probe interval, default 5 s; `failures` in a row -> crash (default 3). */
  healthIntervalMs?: number;
  healthFailures?: number;
  /** Unload: drain + stop deadline, default 5 s each. */
  drainMs?: number;
  stopTimeoutS?: number;
  /** First uid of the per-plugin uid range (each plugin runs as its own uid), default 200000; range size 50000. */
  uidBase?: number;
  /** Operator policy: may a manifest ask for an executable /tmp (`container.exec_tmp`)? Default false. */
  allowExecTmp?: boolean;
  /** Operator policy: the largest `container.data_quota_mb` a manifest may ask for, default 1024. */
  maxDataQuotaMb?: number;
  /**
   * The daemon's handler deadline and reply cap (as for in-process plugins): given to the container's SDK, which
   * enforces them per route (504 handler_timeout, 502 reply_too_large). A set cap also bounds the proxy's wait for
   * a reply head; without one the proxy waits as long as the route's own deadline allows.
   */
  replies?: ContainerReplyLimits;
}

export interface ContainerReplyLimits {
  handlerTimeoutMs?: number;
  maxHandlerTimeoutMs?: number;
  maxReplyBytes?: number;
}

export interface LoadedContainer {
  name: string;
  /** True when load found this plugin's container already running (left by an earlier run) and took it over. */
  adopted?: boolean;
  containerId: string;
  containerName: string;
  socketPath: string;
  uid: number;
  generation: number;
  image: string;
}

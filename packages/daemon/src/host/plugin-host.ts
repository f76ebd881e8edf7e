/**
 * One contract for every way a plugin-host process runs a plugin (the undici `Dispatcher` idea): load (or swap when
 * loaded), unload, has, close, and crashed / restarted / disabled / log events. Four implementations:
 * - worker: in-process plugins, one worker thread each (WorkerPlugins);
 * - shared: `isolation: "shared"` plugins on the host's main thread, routes as direct calls (shared/shared-host.ts);
 * - container: Podman plugins over a Unix socket (ContainerPlugins);
 * - remote: a plugin served by another (isolated) host process, mounted here as a proxy to that host's socket.
 * The host process looks hosts up by kind; nothing outside knows which one holds a plugin.
 */
import { existsSync } from "node:fs";
import type { PluginHealth } from "@hecate/sdk";
import type { RouteAnnouncement } from "@hecate/sdk/protocol";
import type { ContainerPluginSpec, ContainerPlugins, ContainerReplyLimits } from "../container/container-plugins.js";
import type { ContainerProxy } from "../container/proxy.js";
import type { Router } from "../http/router.js";
import type { PluginSpec } from "../worker/plugin-worker.js";
import { WorkerPlugins, type WorkerPluginsOptions } from "../worker/worker-plugins.js";
import type { ContainerPolicy, HostedSpec, LoadedInfo, ReconcileOutcome } from "./protocol.js";

export type PluginHostEvent =
  | { t: "crashed"; plugin: string; reason: string }
  | { t: "restarted"; plugin: string }
  | { t: "disabled"; plugin: string; reason: string }
  | { t: "log"; plugin: string; level: string; msg: string; fields?: Record<string, unknown> };

export interface PluginHost<Spec> {
  readonly kind: HostedSpec["kind"];
  /** Loads the plugin, or swaps the new spec in with zero downtime when it is loaded here already. */
  load(spec: Spec): Promise<LoadedInfo>;
  /** Routes removed at once, in-flight requests drained, code freed. False when it was not loaded here. */
  unload(name: string, deadlineMs?: number): Promise<boolean>;
  has(name: string): boolean;
  /** The plugins loaded here. */
  names(): string[];
  /** A plugin's health within `timeoutMs` (undefined when it is not loaded here). */
  health(name: string, timeoutMs: number): Promise<PluginHealth | undefined>;
  close(): Promise<void>;
}

type Emit = (e: PluginHostEvent) => void;

/** What a load reports of an in-process plugin: its routes as the lifecycle lists them (ws routes as method WS). */
export function loadedInfo(
  name: string,
  version: string,
  kind: LoadedInfo["kind"],
  routes: RouteAnnouncement[],
): LoadedInfo {
  const list = routes.flatMap((x) =>
    x.kind === "ws" ? [{ method: "WS", path: x.path }] : x.methods.map((m) => ({ method: m, path: x.path })),
  );
  return { name, version, kind, routes: list };
}

export class WorkerPluginHost implements PluginHost<PluginSpec> {
  readonly kind = "worker" as const;
  readonly plugins: WorkerPlugins;

  constructor(router: Router, home: string, options: HostWorkerOptions, emit: Emit) {
    this.plugins = new WorkerPlugins({ router, home, ...options });
    this.plugins.on("crashed", (plugin: string, reason: string) => emit({ t: "crashed", plugin, reason }));
    this.plugins.on("restarted", (plugin: string) => emit({ t: "restarted", plugin }));
    this.plugins.on("disabled", (plugin: string, reason: string) => emit({ t: "disabled", plugin, reason }));
    this.plugins.on("log", (e: { plugin: string; level: string; msg: string; fields?: Record<string, unknown> }) =>
      emit({ t: "log", ...e }),
    );
  }

  async load(spec: PluginSpec): Promise<LoadedInfo> {
    const r = this.plugins.get(spec.name) ? await this.plugins.swap(spec.name, spec) : await this.plugins.load(spec);
    return loadedInfo(r.name, r.version, this.kind, r.routes);
  }

  unload(name: string, deadlineMs?: number): Promise<boolean> {
    return this.plugins.unload(name, deadlineMs === undefined ? {} : { deadlineMs });
  }

  /** New settings for a running plugin's `onSettingsChanged` (WorkerPlugins.applySettings). */
  applySettings(name: string, settings: Record<string, unknown>): Promise<SettingsOutcome> {
    return this.plugins.applySettings(name, settings);
  }

  has(name: string): boolean {
    return this.plugins.get(name) !== undefined;
  }

  names(): string[] {
    return this.plugins.list().map((p) => p.name);
  }

  health(name: string, timeoutMs: number): Promise<PluginHealth | undefined> {
    return this.plugins.health(name, timeoutMs);
  }

  close(): Promise<void> {
    return this.plugins.close();
  }
}

/** How new settings reached a running plugin: live, or not (then the supervisor swaps it). */
export type SettingsOutcome = "applied" | "unsupported" | "failed" | "not_loaded";

export type HostWorkerOptions = Partial<Omit<WorkerPluginsOptions, "router" | "home" | "onCrashed" | "onDisabled">>;

export class ContainerPluginHost implements PluginHost<ContainerPluginSpec> {
  readonly kind = "container" as const;
  private starting: Promise<ContainerPlugins> | undefined;
  /** The ContainerPlugins once started: the one record of which container plugins are loaded (no side set). */
  private started: ContainerPlugins | undefined;
  private podman: import("../container/podman.js").PodmanClient | undefined;

  constructor(
    private readonly router: Router,
    private readonly home: string,
    private readonly emit: Emit,
    /** The operator's container policy, and the handler deadline and reply cap in-process plugins get too. */
    private readonly policy: ContainerPolicy & { replies?: ContainerReplyLimits } = {},
  ) {}

  /** Podman is only started for the first container plugin. */
  private containers(): Promise<ContainerPlugins> {
    this.starting ??= (async () => {
      // Imported on first use: a host without container plugins starts faster (it restarts on the hot path).
      const [{ PodmanClient }, { ContainerPlugins }] = await Promise.all([
        import("../container/podman.js"),
        import("../container/container-plugins.js"),
      ]);
      this.podman = new PodmanClient({ socketPath: `${this.home}/run/podman.sock` });
      const rt = new ContainerPlugins({
        home: this.home,
        podman: this.podman,
        router: this.router,
        ...this.policy,
        onEvent: (e) => {
          if (e.type === "crashed")
            this.emit({
              t: "crashed",
              plugin: e.plugin,
              reason: `${e.reason}${e.exitCode !== undefined ? ` (exit ${e.exitCode})` : ""}`,
            });
          else if (e.type === "failed")
            this.emit({ t: "disabled", plugin: e.plugin, reason: `${e.reason}: ${e.message}` });
          else if (e.type === "restarted") this.emit({ t: "restarted", plugin: e.plugin });
          else if (e.type === "log")
            this.emit({ t: "log", plugin: e.plugin, level: e.level, msg: e.msg, fields: e.fields });
        },
      });
      await rt.start();
      this.started = rt;
      return rt;
    })().catch((err) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  private info(spec: ContainerPluginSpec): LoadedInfo {
    return { name: spec.name, version: spec.manifest.version, kind: this.kind, routes: [{ method: "*", path: "/*" }] };
  }

  async load(spec: ContainerPluginSpec): Promise<LoadedInfo> {
    const rt = await this.containers();
    if (rt.get(spec.name)) await rt.swap(spec.name, spec);
    else await rt.load(spec);
    return this.info(spec);
  }

  /** Boot (and host restart): adopt the containers of the previous run, start the missing, remove the rest. */
  async reconcile(specs: ContainerPluginSpec[]): Promise<ReconcileOutcome> {
    const rt = await this.containers();
    const r = await rt.reconcile(specs);
    const failedNames = new Set(r.failed.map((f) => f.name));
    return {
      loaded: specs.filter((s) => !failedNames.has(s.name)).map((s) => this.info(s)),
      failed: r.failed.map((f) => ({
        name: f.name,
        error: { message: f.error.message, code: (f.error as { code?: string }).code },
      })),
    };
  }

  async unload(name: string): Promise<boolean> {
    return (await this.started?.unload(name)) ?? false;
  }

  has(name: string): boolean {
    return this.started?.get(name) !== undefined;
  }

  names(): string[] {
    return this.started?.list().map((c) => c.name) ?? [];
  }

  async health(name: string, timeoutMs: number): Promise<PluginHealth | undefined> {
    return this.started?.health(name, timeoutMs);
  }

  /** `handover` (host recycle): containers, their mounts and Podman's service stay for the next host to adopt. */
  async close(opts: { handover?: boolean } = {}): Promise<void> {
    if (this.starting) await (await this.starting.catch(() => null))?.close({ leaveRunning: opts.handover });
    if (this.podman) {
      if (!opts.handover) await this.podman.stopService().catch(() => {});
      await this.podman.close().catch(() => {});
    }
  }
}

type RemoteSpec = Extract<HostedSpec, { kind: "remote" }>;

/** Plugins moved into an isolated host process: this (main) host proxies their routes to that host's socket. */
export class RemotePluginHost implements PluginHost<RemoteSpec> {
  readonly kind = "remote" as const;
  private readonly proxies = new Map<string, ContainerProxy>();
  private readonly sockets = new Map<string, string>();

  constructor(private readonly router: Router) {}

  async load(spec: RemoteSpec): Promise<LoadedInfo> {
    const { ContainerProxy } = await import("../container/proxy.js");
    const proxy = new ContainerProxy({ plugin: spec.name, socketPath: spec.socketPath });
    // The isolated host routes full paths (`/plugin/{name}/api/...`), not the path relative to the API prefix.
    this.router.setPlugin(spec.name, {
      routes: [
        {
          method: "*",
          path: "/*",
          handler: (req, res, p, ctx) => proxy.handle(req, res, p, { ...ctx, path: ctx.pathname }),
        },
      ],
      observe: false, // the isolated host counts these requests, under their real route patterns
      upgrade: (req, socket, head, p, ctx) => proxy.upgrade(req, socket, head, p, { ...ctx, path: ctx.pathname }),
      upgradeAllowedOrigins: "*", // the isolated host applies the plugin's own Origin rules
      staticDir: spec.staticDir && existsSync(spec.staticDir) ? spec.staticDir : undefined,
    });
    const old = this.proxies.get(spec.name);
    this.proxies.set(spec.name, proxy);
    this.sockets.set(spec.name, spec.socketPath);
    await old?.drain();
    return { name: spec.name, version: "", kind: this.kind, routes: [{ method: "*", path: "/*" }] };
  }

  async unload(name: string, deadlineMs?: number): Promise<boolean> {
    const proxy = this.proxies.get(name);
    if (!proxy) return false;
    this.proxies.delete(name);
    this.sockets.delete(name);
    this.router.removePlugin(name);
    await proxy.drain(deadlineMs);
    return true;
  }

  /** Forgets a plugin without touching the router (another host kind has just mounted it here). */
  async release(name: string): Promise<void> {
    const proxy = this.proxies.get(name);
    this.proxies.delete(name);
    this.sockets.delete(name);
    await proxy?.drain();
  }

  has(name: string): boolean {
    return this.proxies.has(name);
  }

  names(): string[] {
    return [...this.proxies.keys()];
  }

  /** What the isolated host's own `/health` says of the plugin. */
  async health(name: string, timeoutMs: number): Promise<PluginHealth | undefined> {
    const socketPath = this.sockets.get(name);
    if (!socketPath || !this.proxies.has(name)) return undefined;
    const { remoteHealth } = await import("./remote-health.js");
    return remoteHealth(socketPath, name, timeoutMs);
  }

  async close(): Promise<void> {
    await Promise.all([...this.proxies.keys()].map((n) => this.unload(n, 1000)));
  }
}

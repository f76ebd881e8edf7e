/**
 * The plugin-host process: everything that runs plugin code, and nothing that holds the daemon's state. The
 * supervisor forks it (supervisor/host-process.ts) and drives it over the IPC protocol of ./protocol.ts:
 * - the main host (hostId 1) serves the plugin listener: the supervisor accepts each client connection and hands
 *   the socket over (`conn`), so requests never pass through the supervisor;
 * - an isolated host serves its plugins on a Unix socket; the main host mounts them as `remote` plugins.
 * It owns the router, the plugin HTTP server, one worker thread per in-process plugin and ContainerPlugins.
 * When the supervisor goes away (even by kill -9: the IPC channel closes) the host exits at once: no orphan host
 * keeps serving stale routes.
 */
import { chmodSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import type { Socket } from "node:net";
import type { PluginHealth } from "@hecate/sdk";
import { HostAllowList } from "../http/host-allow.js";
import { HEALTH_TIMEOUT_MS, type MountedRoute, type RouteHandler, Router } from "../http/router.js";
import { createHttpServer } from "../http/server.js";
import type { ShellCatalog } from "../http/shell/catalog.js";
import { mountShell } from "../http/shell/routes.js";
import { gatherHealth } from "../observe/health.js";
import { HostMetrics, namespacePluginMetrics } from "../observe/host-metrics.js";
import { ConnectionDrain } from "./drain.js";
import { ContainerPluginHost, type PluginHostEvent, RemotePluginHost, WorkerPluginHost } from "./plugin-host.js";
import type {
  HostBoot,
  HostErrorInfo,
  HostRequest,
  HostToSupervisor,
  LoadedInfo,
  SupervisorToHost,
} from "./protocol.js";

function send(m: HostToSupervisor): void {
  if (process.connected) process.send?.(m);
}

/**
 * Reports the plugins that receive requests: a plugin's first request of an interval is reported before it is
 * dispatched (a request that kills the host at once is known), and every interval the plugins with requests still
 * in flight (a request that kills the host later, e.g. after seconds of garbage collection, is known too).
 */
class ActivityReporter {
  private seen = new Set<string>();

  constructor(intervalMs: number, busy: () => string[]) {
    setInterval(() => {
      this.seen = new Set(busy());
      if (this.seen.size) send({ t: "active", plugins: [...this.seen] });
    }, intervalMs).unref();
  }

  /** `url` of a request; only `/plugin/{name}/...` counts. */
  touch(url: string | undefined): void {
    if (!url?.startsWith("/plugin/")) return;
    const end = url.indexOf("/", 8);
    const name = end < 0 ? url.slice(8) : url.slice(8, end);
    if (!name || this.seen.has(name)) return;
    this.seen.add(name);
    send({ t: "active", plugins: [name] });
  }
}

class Host {
  readonly router: Router;
  private readonly metrics: HostMetrics | undefined;
  private readonly worker: WorkerPluginHost;
  private readonly container: ContainerPluginHost | undefined;
  private readonly remote: RemotePluginHost;
  /** The app shell (`GET /`), on the main host's plugin listener only. */
  private readonly shell: ShellCatalog | undefined;
  /** `isolation: "shared"` plugins, on this process's main thread; created with the first one. */
  private sharedHost: import("./shared/shared-host.js").SharedPluginHost | undefined;
  private readonly emit: (e: PluginHostEvent) => void;
  readonly server: Server;
  private readonly drain: ConnectionDrain;

  constructor(readonly boot: HostBoot) {
    this.metrics = boot.metrics === false ? undefined : new HostMetrics(boot.hostId);
    this.router = new Router({ metrics: this.metrics?.requests });
    const emit = (e: PluginHostEvent) => send(e);
    this.emit = emit;
    this.worker = new WorkerPluginHost(this.router, boot.home, boot.runtime ?? {}, emit);
    this.container = boot.containers
      ? new ContainerPluginHost(this.router, boot.home, emit, {
          ...boot.containerPolicy,
          replies: {
            handlerTimeoutMs: boot.runtime?.handlerTimeoutMs,
            maxHandlerTimeoutMs: boot.runtime?.maxHandlerTimeoutMs,
            maxReplyBytes: boot.runtime?.maxReplyBytes,
          },
        })
      : undefined;
    this.remote = new RemotePluginHost(this.router);
    if (!boot.listenPath) this.shell = mountShell(this.router, boot.home);
    // The main host serves the plugin listener: its Host allow-list and caps apply here, where the connections are.
    this.server = boot.listenPath
      ? createHttpServer(this.router)
      : createHttpServer(this.router, { hosts: new HostAllowList(boot.allowedHosts), limits: boot.limits });
    this.drain = new ConnectionDrain(this.server);
    const activity = new ActivityReporter(boot.activityIntervalMs, () => this.busy());
    this.server.prependListener("request", (req) => activity.touch(req.url));
    this.server.prependListener("upgrade", (req) => activity.touch(req.url));
    if (boot.listenPath) this.server.prependListener("request", trustForwardedFor);
    this.router.setHealthSource((timeoutMs) => this.health(timeoutMs));
    this.router.setReady(boot.ready);
    this.router.setInactive(boot.inactive ?? {});
  }

  /** Plugins with requests or WebSockets in flight (worker plugins: the ones whose code runs in this process). */
  private busy(): string[] {
    const workers = this.worker.plugins
      .list()
      .filter((p) => p.inFlight > 0)
      .map((p) => p.name);
    return [...workers, ...(this.sharedHost?.busy() ?? [])];
  }

  private async shared(): Promise<import("./shared/shared-host.js").SharedPluginHost> {
    if (!this.sharedHost) {
      // Imported on first use: hosts without shared plugins never register the module scope hooks.
      const { SharedPluginHost } = await import("./shared/shared-host.js");
      this.sharedHost ??= new SharedPluginHost(this.router, this.boot.home, this.boot.runtime ?? {}, this.emit, (l) =>
        send({ t: "shared-leak", ...l }),
      );
    }
    return this.sharedHost;
  }

  async listen(): Promise<void> {
    if (this.boot.adminSocketPath)
      this.router.setSystemRoutes("admin", await adminProxyRoutes(this.boot.adminSocketPath));
    const path = this.boot.listenPath;
    if (!path) return;
    rmSync(path, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(path, () => resolve());
    });
    chmodSync(path, 0o600);
  }

  /** A client connection accepted by the supervisor on the plugin listener. */
  adopt(socket: Socket): void {
    this.server.emit("connection", socket);
  }

  async handle(m: HostRequest): Promise<unknown> {
    switch (m.t) {
      case "load":
        return this.load(m);
      case "unload":
        return (
          (await this.worker.unload(m.name, m.deadlineMs)) ||
          ((await this.sharedHost?.unload(m.name, m.deadlineMs)) ?? false) ||
          (await this.remote.unload(m.name, m.deadlineMs)) ||
          ((await this.container?.unload(m.name)) ?? false)
        );
      case "reconcile": {
        if (!this.container) throw new Error("container plugins need Podman, which is not available here");
        return this.container.reconcile(m.specs);
      }
      case "settings":
        if (this.sharedHost?.has(m.name)) return this.sharedHost.applySettings(m.name, m.settings);
        return this.worker.applySettings(m.name, m.settings);
      case "set-ready":
        this.router.setReady(m.ready);
        return true;
      case "set-inactive":
        this.router.setInactive(m.plugins);
        return true;
      case "close":
        await this.close();
        return true;
      case "retire": {
        const drained = await this.drain.drain(m.deadlineMs, m.idleGraceMs);
        await this.close({ handover: true });
        return drained;
      }
      case "health":
        return this.health(m.timeoutMs);
      case "metrics": {
        const own = this.metrics?.collect(await this.worker.plugins.metrics(HEALTH_TIMEOUT_MS)) ?? [];
        const shared = this.metrics ? (this.sharedHost?.metrics() ?? []) : [];
        return [...own, ...shared.flatMap((p) => namespacePluginMetrics(p.plugin, p.metrics))];
      }
    }
  }

  /** Every plugin of this host (isolated ones through their host's own /health), each within `timeoutMs`. */
  health(timeoutMs: number): Promise<Record<string, PluginHealth>> {
    const hosts = [this.worker, this.remote, ...(this.container ? [this.container] : [])];
    return gatherHealth(this.sharedHost ? [...hosts, this.sharedHost] : hosts, timeoutMs);
  }

  private async load(m: Extract<HostRequest, { t: "load" }>): Promise<LoadedInfo> {
    const h = m.hosted;
    switch (h.kind) {
      case "worker": {
        const info = await this.worker.load(h.spec); // replaces a remote or shared mount of the plugin in one swap
        await this.remote.release(h.spec.name);
        await this.sharedHost?.unload(h.spec.name, undefined, true);
        return info;
      }
      case "shared": {
        const info = await (await this.shared()).load(h.spec);
        await this.remote.release(h.spec.name);
        await this.worker.plugins.unload(h.spec.name, { keepMount: true }); // an upgrade from worker to shared
        return info;
      }
      case "remote":
        await this.worker.unload(h.name);
        await this.sharedHost?.unload(h.name);
        return this.remote.load(h);
      case "container":
        if (!this.container) throw new Error("container plugins need Podman, which is not available here");
        return this.container.load(h.spec);
    }
  }

  /** Unloads everything and stops serving; `handover` (recycle): container plugins stay up for the next host. */
  async close(opts: { handover?: boolean } = {}): Promise<void> {
    this.router.setReady(false);
    this.shell?.close();
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    await this.worker.close();
    await this.sharedHost?.close();
    await this.remote.close();
    await this.container?.close(opts);
    this.server.closeAllConnections();
    await stopped;
    if (this.boot.listenPath) rmSync(this.boot.listenPath, { force: true });
  }
}

/**
 * Isolated hosts are reached through the main host's proxy only (a 0600 socket in the daemon's run dir), which
 * appends the real client address as the rightmost X-Forwarded-For entry: plugins see that address, as they would
 * in the main host. One request at a time per proxy connection, so setting it per request is safe.
 */
function trustForwardedFor(req: { headers: Record<string, unknown>; socket: Socket }): void {
  const xff = req.headers["x-forwarded-for"];
  if (typeof xff !== "string") return;
  const addr = xff.slice(xff.lastIndexOf(",") + 1).trim();
  Object.defineProperty(req.socket, "remoteAddress", { value: addr, configurable: true });
}

/**
 * `adminPort: "shared"`: the admin API and page on the plugin port, proxied to the supervisor's internal admin
 * socket, where every request is checked as on the admin port (token, Host, Origin): that socket is not trusted.
 */
async function adminProxyRoutes(socketPath: string): Promise<MountedRoute[]> {
  const { ContainerProxy } = await import("../container/proxy.js");
  const proxy = new ContainerProxy({ plugin: "admin", socketPath, daemonCookies: true });
  const handler: RouteHandler = (req, res, p, ctx) => proxy.handle(req, res, p, { ...ctx, path: ctx.pathname });
  return [
    { method: "*", path: "/admin", handler },
    { method: "*", path: "/admin/*", handler },
  ];
}

function errorInfo(err: unknown): HostErrorInfo {
  const e = err as Error & { stage?: string; code?: string };
  return {
    message: e?.message ?? String(err),
    stage: e?.stage,
    code: typeof e?.code === "string" ? e.code : undefined,
  };
}

let host: Host | undefined;
process.on("disconnect", () => process.exit(0)); // the supervisor is gone: never serve on without it
process.on("message", (m: SupervisorToHost, handle?: unknown) => {
  if (m.t === "conn") {
    const socket = handle as Socket | undefined;
    if (!socket) return;
    send({ t: "conn-ack", seq: m.seq });
    if (host) host.adopt(socket);
    else socket.destroy();
    return;
  }
  if (m.t === "boot") {
    host = new Host(m);
    host.listen().then(
      () => send({ t: "ready", pid: process.pid }),
      (err) => {
        console.error(`plugin host ${m.hostId}: cannot listen: ${(err as Error).message}`);
        process.exit(1);
      },
    );
    return;
  }
  const h = host;
  if (!h) return;
  h.handle(m).then(
    (value) => reply({ t: "reply", id: m.id, ok: true, value }, m.t === "close" || m.t === "retire"),
    (err) => reply({ t: "reply", id: m.id, ok: false, error: errorInfo(err) }, m.t === "close" || m.t === "retire"),
  );
});

/** Sends a reply; after `close` the process exits once the reply is written. */
function reply(m: HostToSupervisor, exit: boolean): void {
  if (!process.connected) {
    if (exit) process.exit(0);
    return;
  }
  process.send?.(m, undefined, undefined, () => {
    if (exit) process.exit(0);
  });
}

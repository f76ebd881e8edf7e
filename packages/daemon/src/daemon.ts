/**
 * startDaemon: the composition root of the supervisor, the process a user starts. It wires the lifecycle store +
 * CQRS, the package checks, the admin API (TCP + Unix socket) and the plugin listener, whose connections it hands
 * to the plugin-host processes (supervisor/plugin-hosts.ts). No plugin code ever runs in this process: a plugin that
 * aborts, signals or exhausts its host takes down a host, which is restarted; the daemon's state stays here.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import { join } from "node:path";
import { type EventStore, isPostgresUnreachable, openEventStore } from "@hecate/store";
import pino, { type Logger } from "pino";
import { AdminApi } from "./admin/api.js";
import { ADMIN_RESPONSE_HEADERS, AdminGuard, checkRunDir, ensureToken } from "./admin/auth.js";
import { hostRoutes } from "./admin/host-routes.js";
import { LogBook } from "./admin/logs.js";
import { observeRoutes } from "./admin/observe-routes.js";
import { ociRoutes } from "./admin/oci-routes.js";
import { peerCredentialsUnavailable } from "./admin/peer.js";
import { SessionStore } from "./admin/sessions.js";
import { ClusterNode } from "./cluster/cluster-node.js";
import { resolveNodeId } from "./cluster/node-id.js";
import { NodeLocal, nodeLocalRoutes } from "./cluster/node-local.js";
import { PackagePruner, type PruneTimings } from "./cluster/package-prune.js";
import { StoreWait, storeUnavailableError } from "./cluster/store-wait.js";
import { type ConnectionLimits, resolveLimits } from "./http/conn-limits.js";
import { bindAddressHost, HostAllowList } from "./http/host-allow.js";
import { Router } from "./http/router.js";
import { createHttpServer, listen } from "./http/server.js";
import { watchContainerHealth } from "./lifecycle/container-watch.js";
import { Loader } from "./lifecycle/loader.js";
import { packageOps } from "./lifecycle/package-ops.js";
import { type LifecycleEvent, LifecycleService } from "./lifecycle/service.js";
import { inactivePlugins } from "./lifecycle/user-messages.js";
import { SupervisorMetrics } from "./observe/supervisor-metrics.js";
import { type HostCrash, PluginHosts, type RecycleResult } from "./supervisor/plugin-hosts.js";
import type { SharedPolicyOptions } from "./supervisor/shared-policy.js";
import { checkRequestLimits, type WorkerPluginsOptions } from "./worker/worker-plugins.js";

export interface DaemonOptions {
  home: string;
  /**
   * `postgres://…`: the lifecycle store lives in that PostgreSQL database (store id "plugins") instead of
   * `$HECATE_HOME/lifecycle/plugins.sqlite`; unreachable at start -> the listeners come up, the admin API answers
   * 503 `store_unavailable` (with the reason) and the store is retried with a backoff until boot can go on.
   * Daemons on the same database form a cluster (see lifecycle/README.md, "Cluster mode"); plugin stores and read
   * models stay local.
   */
  storeUrl?: string;
  /** Cluster node id (env HECATE_NODE_ID); default: kept in `$HECATE_HOME/node-id`, created once. */
  nodeId?: string;
  /** Cluster mode: pruning of the package table (grace, interval, when a silent node stops counting). */
  packagePrune?: PruneTimings;
  /** TCP port, 0 = ephemeral; default 7770. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /**
   * The admin API, page and /admin/login get their own listener (own origin), so a plugin's page opened by a
   * logged-in operator cannot drive the admin API with the operator's cookie (its Origin is the plugin port's).
   * Default: `port + 1` (7771 next to 7770), ephemeral when `port` is 0. `"shared"` serves the admin on the plugin
   * port (for a single port behind a proxy): LESS SAFE, any plugin page is then same-origin with the admin API.
   */
  adminPort?: number | "shared";
  /** Admin API over a Unix socket; default `$HECATE_HOME/run/hecate.sock`. */
  socketPath?: string;
  requireSignature?: boolean;
  /**
   * Extra Host names accepted (DNS-rebinding guard) by both the plugin listener and the admin API, besides the
   * loopback names and the bind address: `name` (any port) or `name:port`. One list for both: they are the names the
   * operator reaches this machine under, the same for either port (env HECATE_ALLOWED_HOSTS, comma-separated).
   */
  allowedHosts?: string[];
  /** Caps on the plugin listener's connections and WebSockets (defaults sized from the fd limit: conn-limits.ts). */
  limits?: Partial<ConnectionLimits>;
  /** Admin page login sessions: absolute lifetime (ms), default 12 h. */
  adminSessionTtlMs?: number;
  /**
   * Trust Unix-socket connections made by this very process (in-process tests that call their own daemon's socket).
   * Default false. Plugin-host processes are never trusted there.
   */
  trustOwnProcessOnSocket?: boolean;
  /** pino level, default "info"; "silent" for none. */
  logLevel?: string;
  /** A pino destination (default stdout). */
  logDestination?: pino.DestinationStream;
  /** Container plugins: true (Podman required), false, or "auto" (when `podman` runs here; default). */
  containers?: boolean | "auto";
  /**
   * Operator policy for container sandboxes: `allowExecTmp` lets a manifest ask for an executable /tmp
   * (`container.exec_tmp`; default false), `maxDataQuotaMb` caps `container.data_quota_mb` (default 1024).
   */
  containerPolicy?: { allowExecTmp?: boolean; maxDataQuotaMb?: number };
  /** Worker tuning (WorkerPluginsOptions) inside the plugin hosts (tests). */
  runtime?: Partial<Omit<WorkerPluginsOptions, "router" | "home" | "onCrashed" | "onDisabled">>;
  /** Plugin-host supervision tuning (tests): see PluginHostsOptions. */
  hosts?: {
    crashWindowMs?: number;
    crashesBeforeIsolation?: number;
    loadStrikes?: number;
    activityIntervalMs?: number;
    recycleDrainMs?: number;
    recycleIdleGraceMs?: number;
  };
  /**
   * `isolation: "shared"` plugins (direct calls on the plugin host's main thread): allowed (default true; env
   * HECATE_ALLOW_SHARED=0) and the leak thresholds past which the main host is recycled (supervisor/shared-policy.ts).
   */
  shared?: SharedPolicyOptions;
  /** Admin upload cap, default 256 MiB. */
  maxUploadBytes?: number;
  /** `GET /metrics` and the plugin hosts' request counting; default true (env HECATE_METRICS=0 turns it off). */
  metrics?: boolean;
}

export interface Daemon {
  url: string;
  port: number;
  /** Where the admin API and page answer (= `url` only with `adminPort: "shared"`). */
  adminUrl: string;
  socketPath: string;
  token: string;
  home: string;
  lifecycle: LifecycleService;
  /** This node of the cluster (with `storeUrl`), else undefined. */
  cluster?: ClusterNode;
  /** The plugin-host processes (where plugins run). */
  hosts: PluginHosts;
  logger: Logger;
  close(): Promise<void>;
}

/** Concurrent connections on the admin TCP port. */
const ADMIN_MAX_CONNECTIONS = 256;

function podmanWorks(): boolean {
  try {
    execFileSync("podman", ["--version"], { stdio: "pipe", timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const home = opts.home;
  const requestedPort = opts.port ?? 7770;
  const sharedAdmin = opts.adminPort === "shared";
  const requestedAdminPort = resolveAdminPort(requestedPort, opts.adminPort); // throws before anything is opened
  // Everything under $HECATE_HOME is the daemon's alone (0600 files, 0700 dirs) whatever umask it was started with:
  // the lifecycle and plugin SQLite files, stores, packages, run/. Process-wide, so plugin workers' files too.
  process.umask(0o077);
  const runDir = join(home, "run");
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  checkRunDir(runDir);
  const limits = resolveLimits(opts.limits); // bad values fail the start before anything is opened
  checkRequestLimits(opts.runtime ?? {}); // the same for the handler deadline and reply caps
  const host = opts.host ?? "127.0.0.1";
  const bindName = bindAddressHost(host);
  const allowList = new HostAllowList([...(opts.allowedHosts ?? []), ...(bindName ? [bindName] : [])]);
  for (const dir of [home, runDir]) chmodSync(dir, 0o700); // made by an older version or by hand with other modes
  const socketPath = opts.socketPath ?? join(runDir, "hecate.sock");
  // Two daemons on one home would share the lifecycle store and fight over plugin dirs.
  if (await socketAnswers(socketPath))
    throw new Error(`another hecate daemon is running on ${home} (its socket ${socketPath} answers)`);
  // Uploads cut off by a crash: their installs never started.
  for (const f of readdirSync(runDir)) if (f.startsWith("incoming-")) rmSync(join(runDir, f), { force: true });
  const logger = pino({ level: opts.logLevel ?? "info", base: { service: "hecate" } }, opts.logDestination);
  const token = ensureToken(join(runDir, "admin.token"));
  const noPeerCredentials = await peerCredentialsUnavailable();
  if (noPeerCredentials)
    logger.warn({ reason: noPeerCredentials }, "no peer credentials: the admin socket needs the token too");
  const logs = new LogBook();

  const store: EventStore = opts.storeUrl
    ? openEventStore({ url: opts.storeUrl, storeId: "plugins" })
    : openEventStore({ directory: join(home, "lifecycle"), storeId: "plugins", durability: "FULL" });
  // Cluster mode: nothing connects yet (the store and the node's pool are lazy); PostgreSQL unreachable at boot is
  // waited for below, with the admin API up and saying so (cluster/store-wait.ts).
  const cluster = opts.storeUrl ? new ClusterNode(resolveNodeId(home, opts.nodeId), opts.storeUrl) : undefined;
  const storeWait = new StoreWait();
  if (!cluster)
    await store.ready().catch(async (err) => {
      await store.close();
      throw err;
    });
  const pkg = packageOps(home, opts.requireSignature); // throws on a broken trust key file: fails the start
  const wantContainers = opts.containers ?? "auto";
  const containersAvailable = wantContainers === true || (wantContainers === "auto" && podmanWorks());
  const hosts = new PluginHosts({
    home,
    containers: containersAvailable,
    runtime: opts.runtime,
    allowedHosts: allowList.list(),
    limits,
    containerPolicy: opts.containerPolicy,
    metrics: opts.metrics !== false,
    shared: opts.shared,
    ...opts.hosts,
  });
  const metrics = opts.metrics === false ? undefined : new SupervisorMetrics();
  const guard = new AdminGuard(token, {
    hosts: allowList,
    sessions: new SessionStore({ ttlMs: opts.adminSessionTtlMs }),
    trustSameProcess: opts.trustOwnProcessOnSocket,
    // Plugin code runs there: a connection from a plugin host to the admin socket is never trusted.
    untrustedPids: () => hosts.untrustedPids(),
  });
  const loader: Loader = new Loader({
    home,
    hosts,
    containers: containersAvailable,
    pkg,
    cluster: cluster && opts.storeUrl ? { storeUrl: opts.storeUrl, nodeId: cluster.nodeId } : undefined,
    // Called at load time only (after `lifecycle` exists): the operator's settings, decrypted.
    settings: (name, manifest): Record<string, unknown> => lifecycle.pluginSettings(name, manifest),
  });
  const lifecycle: LifecycleService = new LifecycleService({
    home,
    store,
    loader,
    pkg,
    logger: logger.child({ component: "lifecycle" }),
    crashAfter: process.env.HECATE_TEST_CRASH_AFTER || undefined,
    cluster,
    // Cluster only: another node's settings change applied to this node's plugin (node-local.ts).
    clusterSettings: cluster ? (name, e, folded) => nodeLocal!.settingsChanged(name, e, folded) : undefined,
  });
  // Cluster: a plugin's crash / disable / quarantine here is this node's status, not a shared event (node-local.ts).
  const nodeLocal = cluster ? new NodeLocal({ cluster, lifecycle, loader, logger }) : undefined;
  const pruner = cluster
    ? new PackagePruner(
        { store, cluster, plugins: () => lifecycle.list().map((p) => p.name), logger },
        opts.packagePrune,
      )
    : undefined;
  /** A plugin's log line (worker or container, from its host): kept for the admin API and written to the log. */
  hosts.on("log", (e: { plugin: string; level: string; msg: string; fields?: Record<string, unknown> }) => {
    logs.add({ time: new Date().toISOString(), level: e.level, msg: e.msg, plugin: e.plugin, fields: e.fields });
    const level = (["trace", "debug", "info", "warn", "error", "fatal"].includes(e.level) ? e.level : "info") as "info";
    logger[level]({ plugin: e.plugin, ...e.fields }, e.msg);
  });
  // The main host's router tells clients of an installed plugin that is not loaded why (503), not a bare 404: it gets
  // the set of such plugins after every lifecycle event (coalesced per turn; sent only when it changed).
  let inactiveQueued = false;
  lifecycle.on("event", () => {
    if (inactiveQueued) return;
    inactiveQueued = true;
    setImmediate(() => {
      inactiveQueued = false;
      void hosts.setInactive(inactivePlugins(lifecycle.list()));
    });
  });
  const faults = nodeLocal ?? {
    crashed: (name: string, reason: string) => lifecycle.reportCrash(name, reason),
    disabled: (name: string, reason: string) => lifecycle.reportDisabled(name, reason),
    quarantined: (name: string, reason: string) => lifecycle.reportQuarantine(name, reason),
  };
  hosts.on("crashed", (name: string, reason: string) => faults.crashed(name, reason));
  hosts.on("disabled", (name: string, reason: string) => faults.disabled(name, reason));
  hosts.on("quarantined", (name: string, reason: string) => faults.quarantined(name, reason));
  hosts.on("host-crashed", (crash: HostCrash) => lifecycle.recordHostCrash(crash));
  watchContainerHealth(hosts, lifecycle); // confirm_container_up / _down on health transitions
  if (metrics) {
    hosts.on("crashed", (name: string) => metrics.crashed(name));
    hosts.on("restarted", (name: string) => metrics.restarted(name));
    hosts.on("host-crashed", (crash: HostCrash) => metrics.hostCrashed(crash.hostId));
    lifecycle.on("event", (e: LifecycleEvent) => metrics.event(e));
  }
  hosts.on("host-restarted", (hostId: number, ms: number) => logger.info({ hostId, ms }, "plugin host serving again"));
  hosts.on("host-recycled", (r: RecycleResult) => logger.info(r, "plugin host recycled"));
  let pluginPort: number | null = null; // known once listening; null while the admin shares the plugin port
  const admin = new AdminApi({
    lifecycle,
    guard,
    logs,
    incomingDir: runDir,
    maxUploadBytes: opts.maxUploadBytes,
    pluginPort: () => pluginPort,
    cluster,
    unavailable: () => storeUnavailableError(storeWait.unavailable()),
  });
  // By default the admin API and page live on their own origin: a plugin's page (served on the plugin port) is then
  // cross-origin to the admin API, and the Origin check stops it from driving it with an operator's cookie (cookies
  // are not port-scoped, so the cookie itself is sent). "shared" puts them back on the plugin port: the main plugin
  // host then proxies `/admin` to an internal socket of the supervisor, checked exactly like the admin port.
  const adminRouter = new Router();
  adminRouter.setSystemRoutes("admin", admin.routes());
  adminRouter.setSystemRoutes("observe", observeRoutes(admin, hosts, metrics));
  adminRouter.setSystemRoutes("oci", ociRoutes(admin, lifecycle, home));
  adminRouter.setSystemRoutes("hosts", hostRoutes(admin, hosts));
  adminRouter.setSystemRoutes("cluster", nodeLocalRoutes(admin, nodeLocal));

  // The plugin listener: accepted here, handed to the main plugin host (see PluginHosts.adopt). The supervisor
  // keeps it bound while a host restarts, so new connections wait instead of being refused.
  const tcp = createNetServer({ pauseOnConnect: true }, (s) => hosts.adopt(s));
  // Connections accepted and not yet taken over by a host: bounded, so a flood cannot take the supervisor's fds.
  tcp.maxConnections = limits.maxConnections;
  // The admin API over the Unix socket (trusted without a token when the peer's credentials pass: AdminGuard) and
  // over TCP.
  const adminHeaders = { responseHeaders: ADMIN_RESPONSE_HEADERS };
  const unix = createHttpServer(adminRouter, adminHeaders);
  unix.on("connection", (s: Socket) => {
    const d = guard.admitSocketPeer(s);
    if (!d.trusted) logger.warn({ reason: d.reason }, "admin socket connection not trusted (token required)");
  });
  const adminTcp = createHttpServer(adminRouter, adminHeaders);
  // A flood of the admin port itself cannot take the fds the socket needs.
  adminTcp.maxConnections = ADMIN_MAX_CONNECTIONS;
  const adminSharedPath = join(runDir, "admin-shared.sock");
  let port: number;
  let adminPort: number;
  try {
    port = await listen(tcp as unknown as Server, requestedPort, host);
    if (sharedAdmin) {
      rmSync(adminSharedPath, { force: true });
      await listenUnix(adminTcp, adminSharedPath);
      adminPort = port;
    } else {
      adminPort = await listen(adminTcp, requestedAdminPort, host);
      pluginPort = port;
    }
    rmSync(socketPath, { force: true }); // a stale socket of a killed daemon (a live one was refused above)
    await listenUnix(unix, socketPath);
    await hosts.start(sharedAdmin ? { adminSocketPath: adminSharedPath } : {});
  } catch (err) {
    // e.g. EADDRINUSE: release what was opened so an in-process caller can retry.
    for (const server of [tcp, unix, adminTcp]) server.close();
    await hosts.close();
    await cluster?.close();
    await store.close();
    throw err;
  }
  chmodSync(socketPath, 0o600);
  const pidFile = join(runDir, "hecate.pid");
  writeFileSync(pidFile, `${process.pid}\n`);
  const hostPart = host.includes(":") ? `[${host}]` : host;
  const url = `http://${hostPart}:${port}`;
  const adminUrl = `http://${hostPart}:${adminPort}`;
  // Published for the CLI (full plugin URLs from a socket call, `--url`) and scripts; removed with the pid file.
  const urlFiles: [string, string][] = [
    [join(runDir, "url"), url],
    [join(runDir, "admin-url"), adminUrl],
  ];
  for (const [file, value] of urlFiles) writeFileSync(file, `${value}\n`);

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      storeWait.stop();
      adminRouter.setReady(false);
      logger.info("shutting down");
      const servers = [unix, adminTcp];
      // The plugin listener's close callback is not awaited: it would wait for every plugin host that ever received
      // a connection to confirm (Node tracks handed-off sockets per child), and a replaced host never answers.
      tcp.close();
      const stopped = Promise.all(servers.map(closeServer));
      admin.closeStreams();
      await lifecycle.close();
      await hosts.close(); // each host drains in-flight requests, runs terminate(), stops workers and containers
      await lifecycle.oci.stopPodman(); // the Podman service, when the image pulls started it
      for (const server of servers) server.closeAllConnections();
      await stopped;
      await pruner?.stop();
      await cluster?.close();
      await store.close();
      rmSync(socketPath, { force: true });
      rmSync(adminSharedPath, { force: true });
      for (const file of [pidFile, ...urlFiles.map(([f]) => f)]) rmSync(file, { force: true });
      logger.info("stopped");
    })();
    return closing;
  };

  try {
    if (cluster) {
      const location = (store as { location?: string }).location ?? "the lifecycle store";
      await storeWait.run(
        async () => {
          await store.ready();
          await cluster.ensureSchema();
          lifecycle.vault.useKey(await cluster.settingsKey(lifecycle.vault.existingKey()));
        },
        logger,
        (err) => (isPostgresUnreachable(err) ? location : undefined),
      );
    }
    await lifecycle.start();
  } catch (err) {
    logger.error({ err }, "boot failed");
    await close();
    throw err;
  }
  // Boot loads of container plugins adopted or replaced their containers and removed the rest of this instance. If
  // none was loaded but a crashed run left container traces (socket dirs: e.g. killed while unloading a plugin),
  // Podman is started once to remove what nobody wants.
  if (containersAvailable && hasContainerTraces(runDir) && !hosts.containersReconciled) {
    try {
      const r = await hosts.reconcileContainers([]);
      logger.info({ failed: r.failed.length }, "removed containers left by a previous run");
    } catch (err) {
      logger.error({ err }, "container cleanup at boot failed");
    }
  }
  await cluster?.register({ url, adminUrl });
  pruner?.start();
  adminRouter.setReady(true);
  await hosts.setReady(true);
  logger.info(
    { url, adminUrl, socketPath, plugins: lifecycle.list().length, allowedHosts: allowList.list(), limits },
    "hecate ready",
  );
  return { url, port, adminUrl, socketPath, token, home, lifecycle, cluster, hosts, logger, close };
}

/** The admin listener's port: explicit, else next to the plugin port (ephemeral beside an ephemeral one). */
export function resolveAdminPort(port: number, adminPort: number | "shared" | undefined): number {
  if (adminPort === "shared") return port;
  if (adminPort !== undefined && adminPort !== 0 && adminPort === port)
    throw new Error(`adminPort ${adminPort} is the plugin port: use adminPort "shared" to serve both on one port`);
  if (adminPort !== undefined) return adminPort;
  if (port === 0) return 0;
  if (port >= 65535) throw new Error(`no default admin port next to port ${port}: set adminPort`);
  return port + 1;
}

function hasContainerTraces(runDir: string): boolean {
  try {
    return readdirSync(join(runDir, "containers")).length > 0;
  } catch {
    return false;
  }
}

function listenUnix(server: Server | NetServer, path: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Stops accepting; idle keep-alive connections are closed now, busy ones after their response. */
function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

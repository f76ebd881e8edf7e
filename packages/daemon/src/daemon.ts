/**
 * startDaemon: composes the daemon — lifecycle store + CQRS, PluginRuntime (worker per plugin), ContainerRuntime
 * (only when Podman works; started lazily at the first container plugin), the router, the HTTP server on TCP and on
 * the Unix socket, the admin API and a pino logger — then runs boot recovery and reports ready.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { chmod, lstat, readdir } from "node:fs/promises";
import type { Server } from "node:http";
import { connect } from "node:net";
import { join } from "node:path";
import { type EventStore, openEventStore } from "@hecate/store";
import pino, { type Logger } from "pino";
import { AdminApi } from "./admin/api.js";
import { AdminGuard, ensureToken } from "./admin/auth.js";
import { LogBook } from "./admin/logs.js";
import { PodmanClient } from "./container/podman.js";
import { ContainerRuntime } from "./container/runtime.js";
import { type MountedRoute, Router } from "./http/router.js";
import { createHttpServer, listen } from "./http/server.js";
import { Loader, type PackageOps } from "./lifecycle/loader.js";
import { LifecycleService } from "./lifecycle/service.js";
import { extractPackage, readArchiveManifest, recoverPackageDir } from "./package/extract.js";
import { loadTrustPolicy, verifyPackageDir } from "./package/integrity.js";
import { HECATE_VERSION, validateManifest } from "./package/manifest.js";
import { PluginRuntime, type RuntimeOptions } from "./runtime/plugin-runtime.js";

export interface DaemonOptions {
  home: string;
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
  /** Extra Host names accepted by the admin API's DNS-rebinding guard. */
  allowedHosts?: string[];
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
  /** Runtime tuning (tests). */
  runtime?: Partial<Omit<RuntimeOptions, "router" | "home">>;
  /** Admin upload cap, default 256 MiB. */
  maxUploadBytes?: number;
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
  runtime: PluginRuntime;
  router: Router;
  logger: Logger;
  close(): Promise<void>;
}

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
  for (const dir of [home, runDir]) chmodSync(dir, 0o700); // made by an older version or by hand with other modes
  const socketPath = opts.socketPath ?? join(runDir, "hecate.sock");
  // Two daemons on one home would share the lifecycle store and fight over plugin dirs.
  if (await socketAnswers(socketPath))
    throw new Error(`another hecate daemon is running on ${home} (its socket ${socketPath} answers)`);
  // Uploads cut off by a crash: their installs never started.
  for (const f of readdirSync(runDir)) if (f.startsWith("incoming-")) rmSync(join(runDir, f), { force: true });
  const logger = pino({ level: opts.logLevel ?? "info", base: { service: "hecate" } }, opts.logDestination);
  const token = ensureToken(join(runDir, "admin.token"));
  const guard = new AdminGuard(token, opts.allowedHosts ?? []);
  const logs = new LogBook();

  const router = new Router();
  const started = Date.now();
  // /health answers from the main thread only and never touches the store or a worker.
  const coreRoutes: MountedRoute[] = [
    {
      method: "GET",
      path: "/health",
      handler: (_req, res) => {
        const body = JSON.stringify({ status: "ok", uptimeMs: Date.now() - started });
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
        res.end(body);
      },
    },
    {
      method: "GET",
      path: "/ready",
      handler: (_req, res) => {
        const body = JSON.stringify({ ready });
        res.writeHead(ready ? 200 : 503, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
        });
        res.end(body);
      },
    },
  ];
  router.setSystemRoutes("core", coreRoutes);
  let ready = false;

  const store: EventStore = openEventStore({
    directory: join(home, "lifecycle"),
    storeId: "plugins",
    durability: "FULL",
  });
  // Read at every use: a key dropped into trusted-keys/ counts from the next install, without a restart.
  const trust = () => {
    const policy = loadTrustPolicy(home);
    return opts.requireSignature === undefined ? policy : { ...policy, requireSignature: opts.requireSignature };
  };
  trust(); // a broken key file fails the start, not the first install
  const pkg: PackageOps = {
    extractPackage: async (archive, target, o) => {
      const r = await extractPackage(archive, target, {
        trust: trust(),
        hecateVersion: HECATE_VERSION,
        expectedName: o?.expectedName,
      });
      await ownerOnly(target); // extraction applies the archive's modes (0644/0755): the home stays 0600/0700
      return r;
    },
    readArchiveManifest: (archive) => readArchiveManifest(archive),
    verifyPackageDir: (dir) => verifyPackageDir(dir, trust()),
    validateManifest: (v) => validateManifest(v, { hecateVersion: HECATE_VERSION }),
    recoverPackageDir,
  };

  let lifecycle: LifecycleService | undefined;
  const runtime = new PluginRuntime({
    router,
    home,
    ...opts.runtime,
    onCrashed: (name, reason) => lifecycle?.reportCrash(name, reason),
    onDisabled: (name, reason) => lifecycle?.reportDisabled(name, reason),
  });
  /** A plugin's log line (worker or container): kept for the admin API and written to the daemon's log. */
  const pluginLog = (e: { plugin: string; level: string; msg: string; fields?: Record<string, unknown> }) => {
    logs.add({ time: new Date().toISOString(), level: e.level, msg: e.msg, plugin: e.plugin, fields: e.fields });
    const level = (["trace", "debug", "info", "warn", "error", "fatal"].includes(e.level) ? e.level : "info") as "info";
    logger[level]({ plugin: e.plugin, ...e.fields }, e.msg);
  };
  runtime.on("log", pluginLog);

  const wantContainers = opts.containers ?? "auto";
  const containersAvailable = wantContainers === true || (wantContainers === "auto" && podmanWorks());
  let containers: Promise<ContainerRuntime> | undefined;
  let podman: PodmanClient | undefined;
  const getContainers = async (): Promise<ContainerRuntime | null> => {
    if (!containersAvailable) return null;
    containers ??= (async () => {
      podman = new PodmanClient({ socketPath: join(runDir, "podman.sock") });
      const rt = new ContainerRuntime({
        home,
        podman,
        router,
        ...opts.containerPolicy,
        onEvent: (e) => {
          if (e.type === "crashed")
            lifecycle?.reportCrash(e.plugin, `${e.reason}${e.exitCode !== undefined ? ` (exit ${e.exitCode})` : ""}`);
          else if (e.type === "failed") lifecycle?.reportDisabled(e.plugin, `${e.reason}: ${e.message}`);
          else if (e.type === "log") pluginLog(e);
        },
      });
      await rt.start();
      return rt;
    })().catch((err) => {
      containers = undefined;
      throw err;
    });
    return containers;
  };

  const loader = new Loader({ home, runtime, containers: getContainers, pkg });
  lifecycle = new LifecycleService({
    home,
    store,
    loader,
    pkg,
    logger: logger.child({ component: "lifecycle" }),
    crashAfter: process.env.HECATE_TEST_CRASH_AFTER || undefined,
  });
  let pluginPort: number | null = null; // known once listening; null while the admin shares the plugin port
  const admin = new AdminApi({
    lifecycle,
    guard,
    logs,
    incomingDir: runDir,
    maxUploadBytes: opts.maxUploadBytes,
    pluginPort: () => pluginPort,
  });
  // By default the admin API and page live on their own origin: a plugin's page (served on the plugin port) is then
  // cross-origin to the admin API, and the Origin check stops it from driving it with an operator's cookie (cookies
  // are not port-scoped, so the cookie itself is sent). "shared" puts them back on the plugin port.
  let adminRouter = router;
  if (!sharedAdmin) {
    adminRouter = new Router();
    adminRouter.setSystemRoutes("core", coreRoutes);
  }
  adminRouter.setSystemRoutes("admin", admin.routes());

  // TCP + Unix socket; only socket connections are trusted without a token.
  const host = opts.host ?? "127.0.0.1";
  const tcp = createHttpServer(router);
  const unix = createHttpServer(adminRouter);
  unix.on("connection", (s) => guard.trustedSockets.add(s));
  const adminTcp = sharedAdmin ? undefined : createHttpServer(adminRouter);
  let port: number;
  let adminPort: number;
  try {
    port = await listen(tcp, requestedPort, host);
    adminPort = adminTcp ? await listen(adminTcp, requestedAdminPort, host) : port;
    if (adminTcp) pluginPort = port;
    rmSync(socketPath, { force: true }); // a stale socket of a killed daemon (a live one was refused above)
    await new Promise<void>((resolve, reject) => {
      unix.once("error", reject);
      unix.listen(socketPath, () => {
        unix.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    // e.g. EADDRINUSE: release what was opened so an in-process caller can retry.
    for (const server of [tcp, unix, adminTcp]) server?.close();
    await runtime.close();
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
      ready = false;
      logger.info("shutting down");
      const servers = [tcp, unix, ...(adminTcp ? [adminTcp] : [])];
      const stopped = Promise.all(servers.map(closeServer));
      admin.closeStreams();
      await lifecycle.close();
      await runtime.close(); // drains in-flight requests, runs terminate(), stops workers
      if (containers) await (await containers.catch(() => null))?.close();
      if (podman) {
        await podman.stopService().catch(() => {});
        await podman.close().catch(() => {});
      }
      for (const server of servers) server.closeAllConnections();
      await stopped;
      await store.close();
      rmSync(socketPath, { force: true });
      for (const file of [pidFile, ...urlFiles.map(([f]) => f)]) rmSync(file, { force: true });
      logger.info("stopped");
    })();
    return closing;
  };

  try {
    await lifecycle.start();
  } catch (err) {
    logger.error({ err }, "boot failed");
    await close();
    throw err;
  }
  // Boot loads of container plugins adopted or replaced their containers and removed the rest of this instance. If
  // none was loaded but a crashed run left container traces (socket dirs: e.g. killed while unloading a plugin),
  // Podman is started once to remove what nobody wants.
  if (containersAvailable && !containers && hasContainerTraces(runDir)) {
    try {
      const removed = (await (await getContainers())?.sweep()) ?? [];
      if (removed.length) logger.info({ removed }, "removed containers left by a previous run");
    } catch (err) {
      logger.error({ err }, "container cleanup at boot failed");
    }
  }
  ready = true;
  router.setReady(true);
  if (adminRouter !== router) adminRouter.setReady(true);
  logger.info({ url, adminUrl, socketPath, plugins: lifecycle.list().length }, "hecate ready");
  return { url, port, adminUrl, socketPath, token, home, lifecycle, runtime, router, logger, close };
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

/**
 * Drops group/other (and setuid/setgid/sticky) bits of a tree the daemon wrote; symlinks are left alone. Async: a
 * large package never blocks the event loop.
 */
async function ownerOnly(path: string): Promise<void> {
  const st = await lstat(path);
  if (st.isSymbolicLink()) return;
  if (st.mode & 0o7077) await chmod(path, st.mode & 0o700);
  if (st.isDirectory()) for (const e of await readdir(path)) await ownerOnly(join(path, e));
}

function hasContainerTraces(runDir: string): boolean {
  try {
    return readdirSync(join(runDir, "containers")).length > 0;
  } catch {
    return false;
  }
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

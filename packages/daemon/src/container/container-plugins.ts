/**
 * Container plugins: one hardened Podman container per plugin, reached by HTTP over a Unix socket in a per-plugin
 * socket dir, proxied at `/plugin/{name}/api/*` through the router (same atomic snapshot swap as in-process plugins).
 *
 * - load: image (own Node base image, or `podman load` of the package's archive) -> create + start hardened ->
 *   wait for the health endpoint with a deadline -> mount the proxy (+ static dir).
 * - swap: a new container (next generation, own socket dir) is started and health-checked beside the old one; the
 *   route mount is swapped in one step; the old one is drained, stopped and removed.
 * - unload: routes removed, in-flight requests drained, container stopped with a deadline and removed.
 * - watch: Podman's event stream (exit) and a periodic health probe; a crash is restarted within a budget
 *   (default 3 in 5 min), then the plugin is reported failed and taken down. OOM kills are reported as reason "oom".
 * - reconcile (boot): containers labelled with this instance are adopted when they belong to a wanted plugin, run
 *   the same spec and answer their health check; every other container of this instance is removed. The instance id
 *   is persistent per HECATE_HOME, so containers of other daemons on the machine are never touched, and nothing is
 *   ever killed by a stale pid: only by container id from Podman's own list.
 *
 * ContainerPlugins is the façade over the parts that do it, which share the loaded plugins' entries
 * (container-entry.ts) and get narrow handles on each other, never the whole ContainerPlugins: container-types.ts
 * (the public types), container-spec.ts (what a container gets), plugin-images.ts (its image, and the images a plugin
 * holds), container-runner.ts (a container started to healthy, and retired), container-logs.ts (its output as the
 * plugin's log), crash-watch.ts (crashes and restarts) and container-leftovers.ts (adoption and sweep of what
 * earlier runs left).
 */
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { PluginHealth } from "@hecate/sdk";
import type { PluginMount, Router } from "../http/router.js";
import { KeyedSerial } from "../util/keyed-serial.js";
import { describe, type Emit, type Entry, entryMaker, hostLayout } from "./container-entry.js";
import { Leftovers } from "./container-leftovers.js";
import { followLogs } from "./container-logs.js";
import { ContainerRunner } from "./container-runner.js";
import { ContainerSpecs } from "./container-spec.js";
import {
  ContainerPluginError,
  type ContainerPluginSpec,
  type ContainerPluginsOptions,
  type LoadedContainer,
} from "./container-types.js";
import { CrashWatch } from "./crash-watch.js";
import { unmountAll } from "./host-mounts.js";
import { PluginImages } from "./plugin-images.js";
import type { PodmanClient } from "./podman.js";

export { specHash } from "./container-spec.js";
export * from "./container-types.js";

export class ContainerPlugins {
  readonly instanceId: string;
  readonly home: string;
  readonly podman: PodmanClient;
  private readonly router?: Router;
  private readonly opts: ContainerPluginsOptions;
  private readonly entries = new Map<string, Entry>();
  private readonly locks = new KeyedSerial();
  private readonly images: PluginImages;
  private readonly runner: ContainerRunner;
  private readonly watch: CrashWatch;
  private readonly leftovers: Leftovers;
  /** How the parts report events (`onEvent`; a throwing listener is ignored). */
  private readonly emit: Emit = (e) => {
    try {
      this.opts.onEvent?.(e);
    } catch {}
  };

  constructor(opts: ContainerPluginsOptions) {
    this.opts = opts;
    this.home = opts.home;
    this.podman = opts.podman;
    this.router = opts.router;
    this.instanceId = opts.instanceId ?? persistentInstanceId(opts.home);
    const { home, podman, instanceId, entries: loaded, locks, emit } = this;
    const specs = new ContainerSpecs(opts, instanceId);
    const makeEntry = entryMaker({ home, uidBase: opts.uidBase ?? 200_000, loaded, hash: (s) => specs.hash(s) });
    this.images = new PluginImages(podman, emit);
    const runner = new ContainerRunner(
      {
        podman,
        instanceId,
        specs,
        images: this.images,
        makeEntry,
        start: () => this.start(),
        reroute: (e) => {
          if (loaded.get(e.spec.name) === e) this.mount(e);
        },
        emit,
      },
      opts,
    );
    this.watch = new CrashWatch(
      {
        podman,
        instanceId,
        loaded,
        locks,
        runner,
        takeDown: (e) => this.takeDown(e),
        followLogs: (e, sinceMs) => this.followLogs(e, sinceMs),
        emit,
      },
      opts,
    );
    this.leftovers = new Leftovers({ home, podman, instanceId, loaded, locks, makeEntry, specs, runner });
    this.runner = runner;
  }

  /** Starts the Podman service if needed and the event watch. Idempotent. */
  async start(): Promise<void> {
    await this.podman.ensureService();
    this.watch.start();
  }

  /** The Node base image (built once from the host's node when missing). */
  ensureBaseImage(): Promise<string> {
    return this.images.ensureBaseImage();
  }

  list(): LoadedContainer[] {
    return [...this.entries.values()].map(describe);
  }

  get(name: string): LoadedContainer | undefined {
    const e = this.entries.get(name);
    return e && describe(e);
  }

  /** A loaded container's health: its HTTP health check (`health_path`) answering 200 within `timeoutMs`. */
  async health(name: string, timeoutMs: number): Promise<PluginHealth | undefined> {
    const e = this.entries.get(name);
    if (!e) return undefined;
    if (e.failed) return { status: "down", detail: "failed: not restarted" };
    if (e.restarting || !e.link) return { status: "degraded", detail: "restarting" };
    if (await e.link.probe(e.healthPath, timeoutMs)) return { status: "ok" };
    return { status: "down", detail: `no 200 from ${e.healthPath} within ${timeoutMs} ms` };
  }

  /**
   * Loads a container plugin; throws ContainerPluginError (with the container's last log lines when useful).
   * Containers of this plugin left by an earlier run of this daemon instance (kill -9, crash mid-operation) are
   * adopted when one runs the same spec and answers its health check; all others of the plugin are removed first.
   */
  load(spec: ContainerPluginSpec): Promise<LoadedContainer> {
    return this.serial(spec.name, async () => {
      if (this.entries.has(spec.name)) throw new ContainerPluginError(spec.name, "already_loaded", "already loaded");
      await this.start();
      const { adopted, nextGeneration } = await this.leftovers.adoptOrClear(spec);
      const startedAt = Date.now();
      let entry: Entry;
      try {
        entry = adopted ?? (await this.runner.start(spec, nextGeneration));
      } catch (err) {
        // Nothing of this plugin runs: its data image need not stay mounted (the load's own error is what counts).
        await unmountAll(hostLayout(spec).data).catch(() => {});
        throw err;
      }
      this.mount(entry);
      this.entries.set(spec.name, entry);
      this.followLogs(entry, adopted ? Date.now() : startedAt);
      if (!adopted) await this.images.settle(entry);
      return { ...describe(entry), adopted: adopted !== undefined };
    });
  }

  /**
   * Removes every container of this instance that belongs to no loaded plugin (and socket dirs nobody uses).
   * The daemon runs it once boot recovery has loaded what should run. Returns the names of removed containers.
   */
  async sweep(): Promise<string[]> {
    await this.start();
    return this.leftovers.sweep();
  }

  /** Zero-downtime replacement: the new container is healthy before the routes switch to it. */
  swap(name: string, spec: ContainerPluginSpec): Promise<LoadedContainer> {
    return this.serial(name, async () => {
      const old = this.entries.get(name);
      if (!old) throw new ContainerPluginError(name, "not_loaded", "not loaded");
      const startedAt = Date.now();
      const entry = await this.runner.start(spec, old.generation + 1);
      this.entries.set(name, entry);
      this.mount(entry);
      this.followLogs(entry, startedAt);
      await this.runner.retire(old, { keepData: true }); // the new generation uses the same data image
      await this.images.settle(entry); // the old generation's image goes unless someone else uses it
      return describe(entry);
    });
  }

  /** Routes removed, in-flight requests drained, container stopped (deadline) and removed. */
  unload(name: string): Promise<boolean> {
    return this.serial(name, async () => {
      const e = this.entries.get(name);
      if (!e) return false;
      await this.takeDown(e);
      return true;
    });
  }

  /**
   * Boot reconciliation in one call: load every wanted plugin (adopting its healthy container of the same spec),
   * then sweep every other container of this instance. Returns what happened.
   */
  async reconcile(
    wanted: ContainerPluginSpec[],
  ): Promise<{ adopted: string[]; removed: string[]; loaded: string[]; failed: { name: string; error: Error }[] }> {
    const adopted: string[] = [];
    const loaded: string[] = [];
    const failed: { name: string; error: Error }[] = [];
    const removed: string[] = [];
    for (const spec of wanted) {
      if (this.entries.has(spec.name)) continue;
      try {
        const r = await this.load(spec);
        (r.adopted ? adopted : loaded).push(spec.name);
      } catch (err) {
        failed.push({ name: spec.name, error: err as Error }); // one plugin failing never stops the others
      }
    }
    removed.push(...(await this.sweep()));
    return { adopted, removed, loaded, failed };
  }

  /** Unloads every plugin and stops watching. `leaveRunning` only detaches (tests of daemon crashes). */
  async close(opts: { leaveRunning?: boolean } = {}): Promise<void> {
    this.watch.stop();
    if (opts.leaveRunning) {
      for (const e of this.entries.values()) {
        e.logs?.abort();
        await e.link?.close(0); // the mounts stay: the next daemon adopts the container
      }
      this.entries.clear();
      return;
    }
    await Promise.all([...this.entries.keys()].map((n) => this.unload(n)));
  }

  // ---- internals ----

  /** One operation per plugin at a time (load/swap/unload/restart). */
  private serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(name, fn);
  }

  /** The loaded entry forgotten, its routes removed and its container retired (unload, or past its restart budget). */
  private async takeDown(e: Entry): Promise<void> {
    this.entries.delete(e.spec.name);
    this.router?.removePlugin(e.spec.name);
    await this.runner.retire(e);
  }

  /** Streams the container's output into `log` events (only when someone listens). */
  private followLogs(e: Entry, sinceMs: number): void {
    if (this.opts.onEvent) followLogs(this.podman, e, sinceMs, this.emit);
  }

  private mount(entry: Entry): void {
    const link = entry.link;
    if (!link) throw new ContainerPluginError(entry.spec.name, "route_failed", "no verified socket to route to");
    const pkg = hostLayout(entry.spec).package;
    const staticDir = resolve(pkg, entry.spec.manifest.static ?? "priv/static");
    const http = entry.spec.manifest.container?.http;
    const mount: PluginMount = {
      routes: [
        // The daemon does not know a container's routes: the manifest's `container.http` holds its CSRF exceptions.
        { method: "*", path: "/*", handler: link.proxy.handle, cors: http?.cors, multipart: http?.multipart_paths },
      ],
      upgrade: link.proxy.upgrade,
      staticDir: staticDir.startsWith(`${pkg}/`) && existsSync(staticDir) ? staticDir : undefined,
      manifest: entry.spec.manifest,
    };
    try {
      this.router?.setPlugin(entry.spec.name, mount);
    } catch (err) {
      throw new ContainerPluginError(entry.spec.name, "route_failed", (err as Error).message);
    }
  }
}

export function persistentInstanceId(home: string): string {
  const file = join(home, "instance-id");
  try {
    const id = readFileSync(file, "utf8").trim();
    if (/^[a-f0-9-]{8,}$/.test(id)) return id;
  } catch {}
  mkdirSync(home, { recursive: true });
  const id = randomUUID();
  writeFileSync(file, `${id}\n`, { mode: 0o600 });
  return id;
}

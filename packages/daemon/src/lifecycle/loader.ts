/**
 * The loader bridge: turns an ACTIVATED plugin (its extracted package on disk) into a running plugin, in-process
 * (one worker thread) or in a container, in a plugin-host process (supervisor/plugin-hosts.ts), and back. It runs in
 * the supervisor: the package is verified and its manifest read here, before any plugin code runs. The process
 * managers call it and record the outcome as confirm_plugin_loaded_v1 / fail_plugin_load_v1.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { clusterStorePrefix, type PluginConfig, type PluginManifest, type PluginPaths, pluginPaths } from "@hecate/sdk";
import { removePostgresStores } from "@hecate/store";
import pLimit, { type LimitFunction } from "p-limit";
import type { ContainerPluginSpec } from "../container/container-plugins.js";
import type { SettingsOutcome } from "../host/plugin-host.js";
import type { LoadedInfo, ReconcileOutcome } from "../host/protocol.js";
import { isInside } from "../http/static.js";
import type { Hosted } from "../supervisor/plugin-hosts.js";

/** The package module's functions the lifecycle uses (@hecate/package, packages/package), injected by the daemon. */
export interface PackageOps {
  extractPackage(
    archivePath: string,
    targetDir: string,
    options?: { expectedName?: string },
  ): Promise<{ manifest: PluginManifest; files: number; bytes: number }>;
  readArchiveManifest(archivePath: string): Promise<PluginManifest>;
  /** Checks the installed files against hecate-files.json (+ signature per trust policy); throws on tampering. */
  verifyPackageDir(dir: string): Promise<unknown>;
  validateManifest(value: unknown): PluginManifest;
  recoverPackageDir(pluginRoot: string): Promise<void>;
}

/** A failed load with the step it failed at (recorded in plugin_load_failed_v1). */
export class LoadFailure extends Error {
  constructor(
    readonly stage: string,
    message: string,
  ) {
    super(message);
    this.name = "LoadFailure";
  }
}

export interface LoadResult {
  version: string;
  routes: { method: string; path: string }[];
}

/** Where plugins run: the plugin-host processes (PluginHosts), seen as one host. */
export interface LoaderHosts {
  load(name: string, hosted: Hosted): Promise<LoadedInfo>;
  unload(name: string): Promise<boolean>;
  has(name: string): boolean;
  applySettings(name: string, settings: Record<string, unknown>): Promise<SettingsOutcome>;
  reconcileContainers(specs: ContainerPluginSpec[]): Promise<ReconcileOutcome>;
}

export interface LoaderOptions {
  home: string;
  hosts: LoaderHosts;
  /** False when Podman is not available here: container plugins then fail to load with a clear message. */
  containers: boolean;
  pkg: PackageOps;
  /**
   * The plugin's settings as it receives them (decrypted, schema defaults applied): given by the lifecycle service,
   * which holds them. Default: none.
   */
  settings?: (name: string, manifest: PluginManifest) => Record<string, unknown>;
  /** Loads (verify + start in a host) running at once, default DEFAULT_LOAD_CONCURRENCY; more wait their turn. */
  loadConcurrency?: number;
  /**
   * Cluster mode: in-process plugins get it in their config (`cluster`), so their stores live in this PostgreSQL
   * (shared by the nodes) instead of `paths.store`. Container plugins keep theirs in their data dir (no network).
   */
  cluster?: { storeUrl: string; nodeId: string };
}

/**
 * Plugins load side by side, but not all at once. A load is mostly CPU in a fresh worker thread (Node's worker
 * bootstrap, then the plugin's imports and init) plus file reads and IPC round trips: two per core keeps the cores
 * busy while the waits overlap; more only makes each load slower (measured on 2 cores with 30 plugins: 8 at once was
 * no faster than 4). A boot of hundreds of plugins thus never starts hundreds of workers together.
 */
export const DEFAULT_LOAD_CONCURRENCY = Math.max(4, 2 * availableParallelism());

/** How changed settings reached a loaded plugin: its onSettingsChanged, a swap, or not at all (not loaded). */
export type SettingsApplied = "live" | "swap" | "none";

const NO_PODMAN = "container plugins need Podman, which is not available here";

/** A host's load error (PluginLoadError stage, ContainerPluginError code) as a LoadFailure. */
function loadFailure(err: unknown, fallbackStage: string): LoadFailure {
  const e = err as Error & { stage?: string; code?: string };
  if (fallbackStage === "container") return new LoadFailure("container", `${e.code ? `${e.code}: ` : ""}${e.message}`);
  return new LoadFailure(e.stage ?? fallbackStage, e.message);
}

export class Loader {
  /** Bounds the loads running at once (boot, installs, upgrades, settings swaps alike). */
  private readonly gate: LimitFunction;

  constructor(private readonly o: LoaderOptions) {
    const n = o.loadConcurrency ?? DEFAULT_LOAD_CONCURRENCY;
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`loadConcurrency must be a positive integer, got ${n}`);
    this.gate = pLimit(n);
  }

  /** Loads running now (at most `loadConcurrency`). */
  get activeLoads(): number {
    return this.gate.activeCount;
  }

  paths(name: string): PluginPaths {
    return pluginPaths(this.o.home, name);
  }

  /** Reads and validates the installed manifest. */
  manifest(name: string): PluginManifest {
    const p = this.paths(name);
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(p.manifest, "utf8"));
    } catch (err) {
      throw new LoadFailure("manifest", `cannot read ${p.manifest}: ${(err as Error).message}`);
    }
    try {
      return this.o.pkg.validateManifest(raw);
    } catch (err) {
      throw new LoadFailure("manifest", (err as Error).message);
    }
  }

  private settingsFor(name: string, manifest: PluginManifest): Record<string, unknown> {
    return this.o.settings?.(name, manifest) ?? {};
  }

  /**
   * Gives a loaded plugin its current settings: through its `onSettingsChanged` when it has one (worker plugins),
   * else by swapping it (zero downtime; container plugins are restarted with them). Throws LoadFailure when the
   * swap fails (the old instance keeps serving).
   */
  async applySettings(name: string): Promise<SettingsApplied> {
    if (!this.o.hosts.has(name)) return "none";
    const manifest = this.manifest(name);
    const r = await this.o.hosts.applySettings(name, this.settingsFor(name, manifest));
    if (r === "applied") return "live";
    await this.load(name);
    return "swap";
  }

  /** True when the plugin is loaded in a plugin host. */
  isLoaded(name: string): boolean {
    return this.o.hosts.has(name);
  }

  /**
   * Loads the installed package (or swaps it in when this plugin is already loaded: zero-downtime upgrade).
   * Throws LoadFailure; on failure nothing new stays mounted (a failed swap keeps the old version serving).
   * Any number of plugins may be loaded at once: `loadConcurrency` of them run, the others wait.
   */
  load(name: string): Promise<LoadResult> {
    return this.gate(() => this.loadNow(name));
  }

  private async loadNow(name: string): Promise<LoadResult> {
    const p = this.paths(name);
    try {
      await this.o.pkg.verifyPackageDir(p.package);
    } catch (err) {
      const code = (err as { code?: string }).code;
      throw new LoadFailure("verify", `${code ? `${code}: ` : ""}${(err as Error).message}`);
    }
    const manifest = this.manifest(name);
    if (manifest.name !== name) throw new LoadFailure("manifest", `package is for ${manifest.name}, not ${name}`);
    ensureLayout(p);
    if ((manifest.plugin_type ?? "in_process") === "container") return this.loadContainer(name, p, manifest);
    const entry = inside(p.package, manifest.callback_module ?? "dist/index.js");
    const staticDir = inside(p.package, manifest.static ?? "priv/static");
    if (!entry || !staticDir) throw new LoadFailure("manifest", "callback_module/static must stay inside the package");
    const config: PluginConfig = {
      pluginName: name,
      pluginVersion: manifest.version,
      storeId: name,
      dataDir: p.data,
      paths: p,
      apiPrefix: `/plugin/${name}/api`,
      staticPrefix: `/plugin/${name}`,
      settings: this.settingsFor(name, manifest),
      standalone: false,
      ...(this.o.cluster ? { cluster: { ...this.o.cluster } } : {}),
    };
    const spec = { name, version: manifest.version, root: p.root, entry, staticDir, config, manifest };
    try {
      const kind = manifest.isolation === "shared" ? "shared" : "worker";
      const loaded = await this.o.hosts.load(name, { kind, spec });
      return { version: loaded.version, routes: loaded.routes };
    } catch (err) {
      throw loadFailure(err, "load");
    }
  }

  private async loadContainer(name: string, p: PluginPaths, manifest: PluginManifest): Promise<LoadResult> {
    if (!this.o.containers) throw new LoadFailure("container", NO_PODMAN);
    const spec = { name, dir: p.root, manifest, settings: this.settingsFor(name, manifest) };
    try {
      await this.o.hosts.load(name, { kind: "container", spec });
    } catch (err) {
      throw loadFailure(err, "container");
    }
    return { version: manifest.version, routes: [{ method: "*", path: "/*" }] };
  }

  /**
   * Boot: hands every ACTIVATED container plugin to ContainerPlugins.reconcile (adopts healthy containers of the
   * previous run, removes stale ones, starts the missing). Returns each plugin's outcome.
   */
  async reconcileContainers(names: string[]): Promise<Map<string, LoadResult | LoadFailure>> {
    const out = new Map<string, LoadResult | LoadFailure>();
    if (!this.o.containers) {
      for (const n of names) out.set(n, new LoadFailure("container", NO_PODMAN));
      return out;
    }
    const specs = [];
    for (const name of names) {
      const p = this.paths(name);
      try {
        await this.o.pkg.verifyPackageDir(p.package).catch((err) => {
          throw new LoadFailure("verify", (err as Error).message);
        });
        const manifest = this.manifest(name);
        ensureLayout(p);
        specs.push({ name, dir: p.root, manifest, settings: this.settingsFor(name, manifest) });
        out.set(name, { version: manifest.version, routes: [{ method: "*", path: "/*" }] });
      } catch (err) {
        out.set(name, err instanceof LoadFailure ? err : new LoadFailure("load", (err as Error).message));
      }
    }
    const r = await this.o.hosts.reconcileContainers(specs);
    for (const f of r.failed) out.set(f.name, loadFailure(f.error, "container"));
    return out;
  }

  /** Unloads from whichever host holds it (routes removed at once, in-flight drained). */
  unload(name: string): Promise<boolean> {
    return this.o.hosts.unload(name);
  }

  /**
   * Cluster mode: deletes the plugin's stores from PostgreSQL (`plugin.{name}` and `plugin.{name}.*`, see the SDK's
   * cluster-store.ts); returns their ids. A no-op on a single daemon (`removeFiles` with purge deletes the files).
   */
  async purgeClusterStore(name: string): Promise<string[]> {
    if (!this.o.cluster) return [];
    return removePostgresStores(this.o.cluster.storeUrl, clusterStorePrefix(name));
  }

  /** Deletes the installed package (archive + extracted files); with purge, the plugin's data and store too. */
  removeFiles(name: string, purge: boolean): void {
    const p = this.paths(name);
    if (purge) {
      rmSync(p.root, { recursive: true, force: true });
      return;
    }
    rmSync(p.package, { recursive: true, force: true });
    rmSync(p.archive, { force: true });
  }
}

/**
 * Creates the plugin-owned dirs and empties its scratch dir. An empty scratch dir is left as it is: removing and
 * recreating it at every load cost a few ms of synchronous rmdir per plugin on the supervisor's loop (a boot of 30
 * plugins spent ~120 ms there, on a core the plugins' workers were starting on).
 */
function ensureLayout(p: PluginPaths): void {
  for (const d of [p.store, p.sqlite, p.data, p.run]) mkdirSync(d, { recursive: true });
  let left: string[];
  try {
    left = readdirSync(p.tmp);
  } catch {
    rmSync(p.tmp, { recursive: true, force: true }); // not a dir (or unreadable): start afresh
    mkdirSync(p.tmp, { recursive: true });
    return;
  }
  for (const name of left) rmSync(join(p.tmp, name), { recursive: true, force: true });
}

/** `rel` resolved below `root` (not `root` itself), or null when it points elsewhere. */
function inside(root: string, rel: string): string | null {
  const full = resolve(root, rel);
  return full !== root && isInside(root, full) ? full : null;
}

/**
 * The loader bridge: turns an ACTIVATED plugin (its extracted package on disk) into a running plugin, in-process
 * (PluginRuntime: one worker) or in a container (ContainerRuntime), and back. The process managers call it and
 * record the outcome as confirm_plugin_loaded_v1 / fail_plugin_load_v1.
 */
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { resolve } from "node:path";
import { type PluginConfig, type PluginManifest, type PluginPaths, pluginPaths } from "@hecate/sdk";
import type { ContainerRuntime } from "../container/runtime.js";
import { isInside } from "../http/static.js";
import type { PluginRuntime } from "../runtime/plugin-runtime.js";
import { PluginLoadError } from "../runtime/plugin-worker.js";
import type { PluginType } from "./aggregate.js";

/** The package module's functions the lifecycle uses (packages/daemon/src/package/*), injected by the daemon. */
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

export interface LoaderOptions {
  home: string;
  runtime: PluginRuntime;
  /** Resolves the container runtime (started lazily: Podman is only spun up for the first container plugin). */
  containers?: () => Promise<ContainerRuntime | null>;
  pkg: PackageOps;
}

export class Loader {
  constructor(private readonly o: LoaderOptions) {}

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

  /** True when the plugin is mounted by one of the runtimes. */
  isLoaded(name: string, type: PluginType): boolean {
    return type === "container" ? this.loadedContainers.has(name) : this.o.runtime.get(name) !== undefined;
  }

  private readonly loadedContainers = new Set<string>();

  /**
   * Loads the installed package (or swaps it in when this plugin is already loaded: zero-downtime upgrade).
   * Throws LoadFailure; on failure nothing new stays mounted (a failed swap keeps the old version serving).
   */
  async load(name: string): Promise<LoadResult> {
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
      settings: {},
      standalone: false,
    };
    const spec = { name, version: manifest.version, root: p.root, entry, staticDir, config };
    try {
      const loaded = this.o.runtime.get(name) ? await this.o.runtime.swap(name, spec) : await this.o.runtime.load(spec);
      return {
        version: loaded.version,
        routes: loaded.routes.flatMap((r) =>
          r.kind === "ws" ? [{ method: "WS", path: r.path }] : r.methods.map((m) => ({ method: m, path: r.path })),
        ),
      };
    } catch (err) {
      if (err instanceof PluginLoadError) throw new LoadFailure(err.stage, err.message);
      throw new LoadFailure("load", (err as Error).message);
    }
  }

  private async loadContainer(name: string, p: PluginPaths, manifest: PluginManifest): Promise<LoadResult> {
    const containers = this.o.containers ? await this.o.containers() : null;
    if (!containers) throw new LoadFailure("container", "container plugins need Podman, which is not available here");
    const spec = { name, dir: p.root, manifest, settings: {} };
    try {
      if (containers.get(name)) await containers.swap(name, spec);
      else await containers.load(spec);
    } catch (err) {
      const code = (err as { code?: string }).code;
      throw new LoadFailure("container", `${code ? `${code}: ` : ""}${(err as Error).message}`);
    }
    this.loadedContainers.add(name);
    return { version: manifest.version, routes: [{ method: "*", path: "/*" }] };
  }

  /**
   * Boot: hands every ACTIVATED container plugin to ContainerRuntime.reconcile (adopts healthy containers of the
   * previous run, removes stale ones, starts the missing). Returns each plugin's outcome.
   */
  async reconcileContainers(names: string[]): Promise<Map<string, LoadResult | LoadFailure>> {
    const out = new Map<string, LoadResult | LoadFailure>();
    const containers = this.o.containers ? await this.o.containers().catch(() => null) : null;
    if (!containers) {
      for (const n of names)
        out.set(n, new LoadFailure("container", "container plugins need Podman, which is not available here"));
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
        specs.push({ name, dir: p.root, manifest, settings: {} });
        out.set(name, { version: manifest.version, routes: [{ method: "*", path: "/*" }] });
      } catch (err) {
        out.set(name, err instanceof LoadFailure ? err : new LoadFailure("load", (err as Error).message));
      }
    }
    const r = await containers.reconcile(specs);
    for (const n of [...r.adopted, ...r.loaded]) this.loadedContainers.add(n);
    for (const f of r.failed) {
      const code = (f.error as { code?: string }).code;
      out.set(f.name, new LoadFailure("container", `${code ? `${code}: ` : ""}${f.error.message}`));
    }
    return out;
  }

  /** Unloads from whichever runtime holds it (routes removed at once, in-flight drained). */
  async unload(name: string): Promise<boolean> {
    const inProcess = await this.o.runtime.unload(name);
    let container = false;
    if (this.loadedContainers.delete(name)) {
      const containers = this.o.containers ? await this.o.containers() : null;
      container = (await containers?.unload(name)) ?? false;
    }
    return inProcess || container;
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

/** Creates the plugin-owned dirs and empties its scratch dir. */
function ensureLayout(p: PluginPaths): void {
  for (const d of [p.store, p.sqlite, p.data, p.run]) mkdirSync(d, { recursive: true });
  rmSync(p.tmp, { recursive: true, force: true });
  mkdirSync(p.tmp, { recursive: true });
}

/** `rel` resolved below `root` (not `root` itself), or null when it points elsewhere. */
function inside(root: string, rel: string): string | null {
  const full = resolve(root, rel);
  return full !== root && isInside(root, full) ? full : null;
}

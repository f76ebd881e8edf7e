/**
 * The original's persistent_term: the config given to `init`, readable from any module of the plugin.
 * One plugin per worker thread (or container), so a module-level slot is exactly per plugin.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PluginConfig } from "./contract.js";
import { pluginPaths } from "./paths.js";

let current: PluginConfig | undefined;
/** Cluster mode: the store URL as the host gave it (with its password), kept out of the config the plugin sees. */
let clusterStoreUrl: string | undefined;
let sealOnNextSet = false;
let sealed = false;

/** The config was fixed by the host: a plugin may not re-point its paths or store at another plugin's. */
export class ConfigSealedError extends Error {
  readonly code = "config_sealed";
  constructor() {
    super("the plugin config is set by the host and cannot be changed");
    this.name = "ConfigSealedError";
  }
}

/**
 * Set by the host (worker host, container entry, test harness) before `init`; returns the config as the plugin sees
 * it (frozen; `cluster.storeUrl` without its password, see PluginClusterConfig).
 */
export function setConfig(config: PluginConfig): PluginConfig {
  if (sealed) throw new ConfigSealedError();
  const cluster = config.cluster
    ? Object.freeze({ nodeId: config.cluster.nodeId, storeUrl: withoutPassword(config.cluster.storeUrl) })
    : undefined;
  clusterStoreUrl = config.cluster?.storeUrl;
  current = Object.freeze({
    ...config,
    settings: Object.freeze({ ...config.settings }),
    ...(cluster ? { cluster } : {}),
  });
  if (sealOnNextSet) {
    sealed = true;
    hostConfigSet?.resolve();
    hostConfigSet = undefined;
  }
  return current;
}

let hostConfigSet: { promise: Promise<void>; resolve: () => void } | undefined;

/**
 * Inside a host, before it set the config (the plugin's module is being imported): resolves once it did. Null when
 * the config is already there or no host will set one (standalone, test harness). For what must not decide on a
 * config that is not there yet, e.g. a singleton job's first tick from the module's top level.
 */
export function hostConfigPending(): Promise<void> | null {
  if (!sealOnNextSet || sealed) return null;
  if (!hostConfigSet) {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    hostConfigSet = { promise, resolve };
  }
  return hostConfigSet.promise;
}

/**
 * Cluster mode: this node's id and the plugin store's URL with its password (for the SDK's store and scheduler);
 * null on a single daemon, standalone, in a container, or before the host set the config (never creates one).
 */
export function clusterStore(): { nodeId: string; url: string } | null {
  const c = current?.cluster;
  return c && clusterStoreUrl ? { nodeId: c.nodeId, url: clusterStoreUrl } : null;
}

/** The URL as shown to the plugin (and so in whatever it logs): without its password. */
function withoutPassword(url: string): string {
  try {
    const u = new URL(url);
    u.password = "";
    return u.toString();
  } catch {
    return "postgres://(unparseable url)";
  }
}

/**
 * For the SDK's dispatcher when the operator changes the settings of a running plugin: only `settings` is replaced
 * (the sealed paths and store id stay), so `getConfig().settings` returns the new ones.
 */
export function replaceSettings(settings: Record<string, unknown>): void {
  const base = current ?? getConfig();
  current = Object.freeze({ ...base, settings: Object.freeze({ ...settings }) });
}

/**
 * For the daemon's worker host, before it loads the plugin: the host's own (next) setConfig is the last one, so the
 * plugin cannot later point `paths`/`storeId` at another plugin's store through the SDK. The test harness does not
 * seal (it runs several plugins one after the other in one process).
 */
export function sealConfigOnNextSet(): void {
  sealOnNextSet = true;
}

/** The plugin's config. Outside a host (standalone), a default config under a fresh temp dir. */
export function getConfig(): PluginConfig {
  if (!current) current = standaloneConfig("standalone");
  return current;
}

/** Sensible defaults for running a plugin outside the daemon, e.g. in its own tests. */
export function standaloneConfig(pluginName: string, overrides: Partial<PluginConfig> = {}): PluginConfig {
  const home = overrides.paths ? "" : mkdtempSync(join(tmpdir(), `hecate-${pluginName}-`));
  const paths = overrides.paths ?? pluginPaths(home, pluginName);
  return {
    pluginName,
    pluginVersion: "0.0.0",
    storeId: pluginName,
    dataDir: paths.data,
    paths,
    apiPrefix: `/plugin/${pluginName}/api`,
    staticPrefix: `/plugin/${pluginName}`,
    settings: {},
    standalone: true,
    ...overrides,
  };
}

/** For hosts and tests: forget the current config. */
export function resetConfig(): void {
  if (sealed) throw new ConfigSealedError();
  current = undefined;
  clusterStoreUrl = undefined;
}

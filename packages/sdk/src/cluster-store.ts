/**
 * Cluster mode: where an in-process plugin's store lives in the shared PostgreSQL database. Every store of a database
 * shares its tables, keyed by store id, so the id carries the plugin's name: `plugin.{name}` (the store id is the
 * plugin name, the default) or `plugin.{name}.{storeId}`. Plugin names have no ".", so two plugins never share a store
 * whatever store ids they choose (on one daemon they could not either: each has its own store dir), and no plugin
 * store meets the daemon's own (`plugins`, the lifecycle store).
 */
import { createHash } from "node:crypto";

/** The store layer's limit on store ids. */
const MAX_STORE_ID = 128;

export function clusterStoreId(pluginName: string, storeId: string): string {
  const base = clusterStorePrefix(pluginName);
  if (storeId === pluginName) return base;
  const id = `${base}.${storeId}`;
  // Only a long plugin name with a long store id goes past the limit: then the store id part is a digest of it.
  return id.length <= MAX_STORE_ID ? id : `${base}.${createHash("sha256").update(storeId).digest("hex").slice(0, 32)}`;
}

/** Every store id of this plugin is this, or starts with it and a ".". */
export function clusterStorePrefix(pluginName: string): string {
  return `plugin.${pluginName}`;
}

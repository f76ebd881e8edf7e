/**
 * taskboard: a shared task board plugin for hecate.
 *   - write side: board/task aggregates in the plugin's own event store (domain.ts)
 *   - read side: a SQLite projection (read-model.ts)
 *   - API: validated + rate-limited routes, multipart attachments, a WebSocket per board (api.ts)
 *   - a scheduled cleanup job (cleanup.ts); the static page in priv/static uses all of it
 */
import type { PluginConfig, PluginManifest, RouteDefinition, StoreConfig } from "@hecate/sdk";
import { store } from "@hecate/sdk";
import { apiRoutes, startCleanupJob } from "./api.js";
import { manifest as theManifest } from "./manifest.js";
import { startReadModel } from "./read-model.js";
import { ensureDefaultBoard } from "./service.js";

export function manifest(): PluginManifest {
  return theManifest;
}

export function storeConfig(): StoreConfig {
  return { durability: "FULL" };
}

export async function init(_config: PluginConfig): Promise<void> {
  startReadModel();
  await ensureDefaultBoard();
  await store.caughtUp();
  startCleanupJob();
}

export function routes(): RouteDefinition[] {
  return apiRoutes();
}

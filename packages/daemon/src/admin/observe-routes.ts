/**
 * The admin listener's observability routes, guarded like the rest of the admin API (token, login session or a
 * trusted Unix-socket peer; Host and Origin checks):
 * - `GET /metrics`: Prometheus text of the supervisor and every plugin host (404 `metrics_disabled` with
 *   HECATE_METRICS=0);
 * - `GET /admin/api/health`: every plugin's health (as `/health` lists it) and its request count, for the admin page
 *   (which turns two counts into a request rate).
 */
import type { PluginHealth } from "@hecate/sdk";
import type { MetricJson } from "@hecate/sdk/metrics";
import type { MountedRoute } from "../http/router.js";
import { HEALTH_TIMEOUT_MS, overallHealth } from "../http/router.js";
import type { SupervisorMetrics } from "../observe/supervisor-metrics.js";
import type { AdminApi } from "./api.js";
import { ApiError, sendJson } from "./http.js";

export interface ObserveSources {
  /** Every plugin's health (the main host's answer). */
  health(timeoutMs: number): Promise<Record<string, PluginHealth>>;
  /** Each host's metrics. */
  metrics(): Promise<MetricJson[][]>;
}

const REQUESTS_TOTAL = "hecate_plugin_http_requests_total";

export function observeRoutes(
  admin: AdminApi,
  sources: ObserveSources,
  metrics: SupervisorMetrics | undefined,
): MountedRoute[] {
  return [
    {
      method: "GET",
      path: "/metrics",
      handler: admin.guarded(async (_req, res) => {
        if (!metrics) throw new ApiError(404, "metrics_disabled", "metrics are off (HECATE_METRICS=0)");
        const text = await metrics.scrape(await sources.metrics());
        res.writeHead(200, {
          "content-type": metrics.contentType,
          "content-length": Buffer.byteLength(text),
          "cache-control": "no-store",
        });
        res.end(text);
      }, true),
    },
    {
      method: "GET",
      path: "/admin/api/health",
      handler: admin.guarded(async (_req, res) => {
        const [health, sets] = await Promise.all([
          sources.health(HEALTH_TIMEOUT_MS),
          metrics ? sources.metrics() : Promise.resolve(undefined),
        ]);
        const counts = sets && requestCounts(sets);
        const plugins: Record<string, PluginHealth & { requests: number | null }> = {};
        for (const [name, h] of Object.entries(health))
          plugins[name] = { ...h, requests: counts?.get(name) ?? (counts ? 0 : null) };
        sendJson(res, 200, { status: overallHealth(health), at: new Date().toISOString(), plugins });
      }, true),
    },
  ];
}

/** Requests answered per plugin, summed over every host, route, method and status. */
function requestCounts(sets: MetricJson[][]): Map<string, number> {
  const out = new Map<string, number>();
  for (const set of sets)
    for (const m of set) {
      if (m.name !== REQUESTS_TOTAL) continue;
      for (const v of m.values) {
        const plugin = String(v.labels.plugin);
        out.set(plugin, (out.get(plugin) ?? 0) + v.value);
      }
    }
  return out;
}

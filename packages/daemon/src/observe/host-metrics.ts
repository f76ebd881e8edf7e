/**
 * What one plugin-host process answers to the supervisor's `metrics` request (prom-client's JSON shape, merged by the
 * supervisor): its request counters, its event-loop lag and heap, each worker's heap, and the plugins' own metrics.
 *
 * A plugin's metrics are namespaced here, by the host that knows which worker answered: `hecate_plugin_{name}:{metric}`
 * (the plugin name with `-` as `:`, so the name is injective: a metric name has no `:`, plugin names no `:`) with the
 * label `plugin` set to the plugin's name. Two plugins' series can neither share a family nor forge each other's label.
 */
import { type MetricJson, MetricSet } from "@hecate/sdk/metrics";
import type { PluginMetrics } from "../worker/worker-plugins.js";
import { ProcessGauges } from "./process-gauges.js";
import { RequestMetrics } from "./request-metrics.js";

const METRIC_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram"]);

export class HostMetrics {
  readonly requests = new RequestMetrics();
  private readonly process: ProcessGauges;

  constructor(hostId: number) {
    this.process = new ProcessGauges(`host-${hostId}`);
  }

  collect(workers: PluginMetrics[]): MetricJson[] {
    const set = new MetricSet(new Set());
    const used = set.gauge({
      name: "hecate_plugin_worker_heap_used_bytes",
      help: "V8 heap used by a plugin's worker thread",
      labelNames: ["plugin"],
    });
    const total = set.gauge({
      name: "hecate_plugin_worker_heap_total_bytes",
      help: "V8 heap reserved by a plugin's worker thread",
      labelNames: ["plugin"],
    });
    const own: MetricJson[] = [];
    for (const w of workers) {
      used.set({ plugin: w.plugin }, w.heap.used);
      total.set({ plugin: w.plugin }, w.heap.total);
      own.push(...namespacePluginMetrics(w.plugin, w.metrics));
    }
    return [...this.requests.set.toJSON(), ...this.process.collect(), ...set.toJSON(), ...own];
  }
}

/** A plugin's own metrics under its namespace, with its `plugin` label; malformed entries are dropped. */
export function namespacePluginMetrics(plugin: string, metrics: MetricJson[]): MetricJson[] {
  const prefix = `hecate_plugin_${plugin.replaceAll("-", ":")}:`;
  const out: MetricJson[] = [];
  for (const m of Array.isArray(metrics) ? metrics : []) {
    if (!m || !METRIC_NAME.test(m.name) || !TYPES.has(m.type) || !Array.isArray(m.values)) continue;
    const name = prefix + m.name;
    const values = m.values
      .filter((v) => typeof v?.value === "number" && v.labels && typeof v.labels === "object")
      .map((v) => {
        const value: MetricJson["values"][number] = { labels: { ...v.labels, plugin }, value: v.value };
        if (typeof v.metricName === "string" && v.metricName.startsWith(m.name))
          value.metricName = prefix + v.metricName;
        return value;
      });
    out.push({ name, help: String(m.help ?? ""), type: m.type, values, aggregator: "sum" });
  }
  return out;
}

/**
 * The supervisor's metrics and the `/metrics` scrape. The supervisor keeps its own prom-client registry (plugin
 * crashes and restarts, host crashes, lifecycle operation durations, lifecycle store appends) and asks every
 * plugin-host process for its own series over the typed IPC (`metrics` request: prom-client's JSON shape), then
 * merges them with prom-client's `AggregatorRegistry.aggregate`. Why not AggregatorRegistry.clusterMetrics(): it
 * only talks to `cluster` workers, and our hosts are `child_process.fork`s with their own protocol; aggregate() is
 * the very merge it uses, fed with what the hosts answer.
 */
import type { MetricJson } from "@hecate/sdk/metrics";
import {
  AggregatorRegistry,
  Counter,
  Histogram,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from "prom-client";
import { ProcessGauges } from "./process-gauges.js";

/** A lifecycle event as the supervisor sees it (LifecycleService's `event`). */
export interface ObservedEvent {
  plugin: string;
  type: string;
  createdAt: string;
}

/** Lifecycle operations timed from the events that open and close them. */
const OPERATIONS: Record<string, { op: string; start: boolean; outcome?: string }> = {
  plugin_installed_v1: { op: "extract", start: true },
  plugin_upgraded_v1: { op: "extract", start: true },
  plugin_package_extracted_v1: { op: "extract", start: false, outcome: "ok" },
  plugin_extract_failed_v1: { op: "extract", start: false, outcome: "failed" },
  plugin_activated_v1: { op: "load", start: true },
  plugin_load_confirmed_v1: { op: "load", start: false, outcome: "ok" },
  plugin_load_failed_v1: { op: "load", start: false, outcome: "failed" },
  plugin_quarantined_v1: { op: "load", start: false, outcome: "quarantined" },
  plugin_deactivated_v1: { op: "unload", start: true },
  plugin_unload_confirmed_v1: { op: "unload", start: false, outcome: "ok" },
};

export class SupervisorMetrics {
  private readonly registry = new Registry();
  private readonly process = new ProcessGauges("supervisor");
  private readonly crashes: Counter<"plugin">;
  private readonly restarts: Counter<"plugin">;
  private readonly hostCrashes: Counter<"host">;
  private readonly operations: Histogram<"operation" | "outcome">;
  private readonly appends: Counter<"store" | "type">;
  /** Open operations: `${plugin}\0${op}` -> start time (ms). */
  private readonly open = new Map<string, number>();
  private readonly since = Date.now();

  constructor() {
    const registers = [this.registry];
    this.crashes = new Counter({
      name: "hecate_plugin_crashes_total",
      help: "Plugin crashes (worker or container), by plugin",
      labelNames: ["plugin"],
      registers,
    });
    this.restarts = new Counter({
      name: "hecate_plugin_restarts_total",
      help: "Plugin restarts after a crash, by plugin",
      labelNames: ["plugin"],
      registers,
    });
    this.hostCrashes = new Counter({
      name: "hecate_plugin_host_crashes_total",
      help: "Deaths of plugin-host processes, by host id",
      labelNames: ["host"],
      registers,
    });
    this.operations = new Histogram({
      name: "hecate_lifecycle_operation_duration_seconds",
      help: "Lifecycle operations (extract, load, unload) from their opening event to their outcome",
      labelNames: ["operation", "outcome"],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    });
    this.appends = new Counter({
      name: "hecate_store_appended_events_total",
      help: "Events appended to the daemon's lifecycle store, by type",
      labelNames: ["store", "type"],
      registers,
    });
  }

  crashed(plugin: string): void {
    this.crashes.inc({ plugin });
  }

  restarted(plugin: string): void {
    this.restarts.inc({ plugin });
  }

  hostCrashed(hostId: number): void {
    this.hostCrashes.inc({ host: String(hostId) });
  }

  /** A lifecycle event: one store append, and maybe the start or end of a timed operation. */
  event(e: ObservedEvent): void {
    const at = Date.parse(e.createdAt);
    if (!(at >= this.since - 1000)) return; // replayed history of an earlier run
    this.appends.inc({ store: "plugins", type: e.type });
    const o = OPERATIONS[e.type];
    if (!o) return;
    const key = `${e.plugin}\u0000${o.op}`;
    if (o.start) {
      this.open.set(key, at);
      return;
    }
    const start = this.open.get(key);
    if (start === undefined) return;
    this.open.delete(key);
    this.operations.observe({ operation: o.op, outcome: o.outcome ?? "ok" }, Math.max(0, at - start) / 1000);
  }

  /** The Prometheus text of the supervisor and every host (`hosts`: each host's answer). */
  async scrape(hosts: MetricJson[][]): Promise<string> {
    const own = (await this.registry.getMetricsAsJSON()) as MetricObjectWithValues<MetricValue<string>>[];
    const sets = [own, this.process.collect(), ...hosts] as unknown as MetricObjectWithValues<MetricValue<string>>[][];
    return AggregatorRegistry.aggregate(sets).metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

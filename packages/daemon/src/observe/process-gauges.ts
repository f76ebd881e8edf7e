/**
 * Per-process gauges taken at scrape time: event-loop lag (perf_hooks' histogram since the last scrape) and heap,
 * labelled `process` ("supervisor", "host-1", ...): every process of the daemon reports its own series.
 */
import { type IntervalHistogram, monitorEventLoopDelay } from "node:perf_hooks";
import { type MetricJson, MetricSet } from "@hecate/sdk/metrics";

export class ProcessGauges {
  private readonly lag: IntervalHistogram;

  constructor(private readonly process: string) {
    this.lag = monitorEventLoopDelay({ resolution: 10 });
    this.lag.enable();
  }

  collect(): MetricJson[] {
    const set = new MetricSet();
    const lag = set.gauge({
      name: "hecate_event_loop_lag_seconds",
      help: "Event-loop delay since the last scrape (mean, p99, max)",
      labelNames: ["process", "stat"],
    });
    const h = this.lag;
    const stats: [string, number][] = [
      ["mean", h.count > 0 ? h.mean : 0],
      ["p99", h.count > 0 ? h.percentile(99) : 0],
      ["max", h.count > 0 ? h.max : 0],
    ];
    for (const [stat, ns] of stats) lag.set({ process: this.process, stat }, ns / 1e9);
    h.reset();
    const mem = process.memoryUsage();
    const heap = set.gauge({
      name: "hecate_process_heap_used_bytes",
      help: "V8 heap used by the process (its main thread)",
      labelNames: ["process"],
    });
    heap.set({ process: this.process }, mem.heapUsed);
    const rss = set.gauge({ name: "hecate_process_rss_bytes", help: "Resident set size", labelNames: ["process"] });
    rss.set({ process: this.process }, mem.rss);
    return set.toJSON();
  }
}

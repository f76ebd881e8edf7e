/**
 * The plugin-host side of `hecate_plugin_http_requests_total` and `hecate_plugin_http_request_duration_seconds`:
 * one count and one observation per plugin request, labelled with the route PATTERN the router matched (`/tasks/:id`,
 * `(static)` for the plugin's static files), never the raw path, so the series stay bounded. Kept in the SDK's small
 * MetricSet (not prom-client, which costs a host ~200 ms to import on its restart path); the supervisor merges every
 * host's set with prom-client at scrape time (observe/scrape.ts).
 */
import type { ServerResponse } from "node:http";
import { type Counter, type Histogram, MetricSet } from "@hecate/sdk/metrics";

/** Plugin routes answer in well under a millisecond: the buckets start at 0.5 ms. */
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class RequestMetrics {
  /** The host's own series (the `plugin` label is the host's to set here). */
  readonly set = new MetricSet(new Set(["le"]));
  private readonly total: Counter;
  private readonly duration: Histogram;
  private readonly routes = new Map<
    string,
    { duration: { observe(v: number): void }; byStatus: Map<number, { inc(): void }> }
  >();

  constructor() {
    const labelNames = ["plugin", "route", "method", "status"];
    this.total = this.set.counter({
      name: "hecate_plugin_http_requests_total",
      help: "HTTP requests answered by plugins, by route pattern, method and status",
      labelNames,
    });
    this.duration = this.set.histogram({
      name: "hecate_plugin_http_request_duration_seconds",
      help: "Time from a plugin request's arrival to the end of its reply",
      labelNames: ["plugin", "route", "method"],
      buckets: BUCKETS,
    });
  }

  /** Counts the request once its reply is finished (a reply cut by the client is not counted). */
  track(res: ServerResponse, plugin: string, route: string, method: string): void {
    const t0 = performance.now();
    res.once("finish", () => this.done(plugin, route, method, res.statusCode, (performance.now() - t0) / 1000));
  }

  private done(plugin: string, route: string, method: string, status: number, seconds: number): void {
    // Bound series, looked up by one string key: the labels are not walked again per request.
    const key = `${plugin}\u0000${route}\u0000${method}`;
    let route_ = this.routes.get(key);
    if (!route_) {
      route_ = { duration: this.duration.labels({ plugin, route, method }), byStatus: new Map() };
      this.routes.set(key, route_);
    }
    let count = route_.byStatus.get(status);
    if (!count) {
      count = this.total.labels({ plugin, route, method, status });
      route_.byStatus.set(status, count);
    }
    count.inc();
    route_.duration.observe(seconds);
  }
}

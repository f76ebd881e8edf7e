/**
 * Plugin metrics: counters, gauges and histograms a plugin defines (`metrics.counter({name, help, labelNames})`),
 * scraped by the daemon's `GET /metrics` (Prometheus text format). The daemon namespaces every series of a plugin:
 * the name becomes `hecate_plugin_custom_{name}` and the `plugin` label is set to the plugin's name by the host
 * (a plugin cannot set it, or reach another plugin's series). The same types name every other SDK-side series
 * (the daemon's per-request metrics in the plugin host use this MetricSet too).
 *
 * Written here rather than taken from prom-client: importing prom-client costs 160-330 ms (measured on this
 * machine) in every worker thread, whose whole start is ~50 ms. The export shape is prom-client's
 * `getMetricsAsJSON()` one, so the daemon aggregates it with prom-client's `AggregatorRegistry.aggregate`.
 */

export type Labels = Record<string, string | number>;

/** One metric as prom-client's `getMetricsAsJSON()` gives it. */
export interface MetricJson {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  values: { labels: Labels; value: number; metricName?: string }[];
  aggregator: "sum" | "max" | "average" | "first";
}

export interface MetricOptions {
  /** `[a-zA-Z_][a-zA-Z0-9_]*` (no `:`); the daemon prefixes it with `hecate_plugin_custom_`. */
  name: string;
  help: string;
  /** Label names; `plugin` (set by the daemon) and `le` (histograms) are reserved. */
  labelNames?: readonly string[];
}

export interface HistogramOptions extends MetricOptions {
  /** Upper bounds, ascending; default Prometheus' 5 ms .. 10 s. */
  buckets?: readonly number[];
}

export interface Counter {
  inc(labels?: Labels, value?: number): void;
  /** The series of these labels, bound: `inc` without looking the labels up again (hot paths). */
  labels(labels: Labels): { inc(value?: number): void };
}
export interface Gauge {
  set(labels: Labels | undefined, value: number): void;
  inc(labels?: Labels, value?: number): void;
  dec(labels?: Labels, value?: number): void;
}
export interface Histogram {
  observe(labels: Labels | undefined, value: number): void;
  /** The series of these labels, bound: `observe` without looking the labels up again (hot paths). */
  labels(labels: Labels): { observe(value: number): void };
  /** Starts a timer; calling the returned function observes the seconds elapsed. */
  startTimer(labels?: Labels): () => number;
}

export const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
const NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const RESERVED_LABELS = new Set(["plugin", "le", "quantile"]);

interface Series {
  labels: Labels;
  value: number;
  /** Histograms: per-bucket counts (not cumulative), sum and count. */
  buckets?: Float64Array;
  sum?: number;
}

abstract class Metric {
  protected readonly series = new Map<string, Series>();
  protected readonly labelNames: readonly string[];

  constructor(
    readonly name: string,
    readonly help: string,
    labelNames: readonly string[] = [],
  ) {
    this.labelNames = labelNames;
  }

  protected get(labels: Labels | undefined): Series {
    const key = this.key(labels);
    let s = this.series.get(key);
    if (!s) {
      s = this.fresh(labels ? { ...labels } : {});
      this.series.set(key, s);
    }
    return s;
  }

  private key(labels: Labels | undefined): string {
    if (this.labelNames.length === 0) {
      if (labels && Object.keys(labels).length > 0) throw new Error(`metric ${this.name} has no labels`);
      return "";
    }
    let key = "";
    for (const n of this.labelNames) key += `${labels?.[n] ?? ""}\u0000`;
    if (labels) for (const k in labels) if (!this.labelNames.includes(k)) throw unknownLabel(this.name, k);
    return key;
  }

  protected fresh(labels: Labels): Series {
    return { labels, value: 0 };
  }

  abstract toJSON(): MetricJson;
}

class CounterImpl extends Metric implements Counter {
  inc(labels?: Labels, value = 1): void {
    this.add(this.get(labels), value);
  }

  labels(labels: Labels): { inc(value?: number): void } {
    const s = this.get(labels);
    return { inc: (value = 1) => this.add(s, value) };
  }

  private add(s: Series, value: number): void {
    if (!(value >= 0)) throw new Error(`counter ${this.name}: increment must be >= 0, got ${value}`);
    s.value += value;
  }

  toJSON(): MetricJson {
    const values = [...this.series.values()].map((s) => ({ labels: { ...s.labels }, value: s.value }));
    return { name: this.name, help: this.help, type: "counter", values, aggregator: "sum" };
  }
}

class GaugeImpl extends Metric implements Gauge {
  set(labels: Labels | undefined, value: number): void {
    this.get(labels).value = value;
  }
  inc(labels?: Labels, value = 1): void {
    this.get(labels).value += value;
  }
  dec(labels?: Labels, value = 1): void {
    this.get(labels).value -= value;
  }

  toJSON(): MetricJson {
    const values = [...this.series.values()].map((s) => ({ labels: { ...s.labels }, value: s.value }));
    return { name: this.name, help: this.help, type: "gauge", values, aggregator: "sum" };
  }
}

class HistogramImpl extends Metric implements Histogram {
  private readonly bounds: readonly number[];

  constructor(name: string, help: string, labelNames: readonly string[] | undefined, buckets: readonly number[]) {
    super(name, help, labelNames);
    if (buckets.length === 0 || buckets.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= buckets[i - 1])))
      throw new Error(`histogram ${name}: buckets must be finite and ascending`);
    this.bounds = buckets;
  }

  protected override fresh(labels: Labels): Series {
    return { labels, value: 0, buckets: new Float64Array(this.bounds.length), sum: 0 };
  }

  observe(labels: Labels | undefined, value: number): void {
    this.record(this.get(labels), value);
  }

  labels(labels: Labels): { observe(value: number): void } {
    const s = this.get(labels);
    return { observe: (value) => this.record(s, value) };
  }

  private record(s: Series, value: number): void {
    const b = this.bounds;
    for (let i = 0; i < b.length; i++)
      if (value <= b[i]) {
        s.buckets![i]++;
        break;
      }
    s.value++;
    s.sum! += value;
  }

  startTimer(labels?: Labels): () => number {
    const t0 = performance.now();
    return () => {
      const seconds = (performance.now() - t0) / 1000;
      this.observe(labels, seconds);
      return seconds;
    };
  }

  toJSON(): MetricJson {
    const values: MetricJson["values"] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.series.values()) {
      let acc = 0;
      this.bounds.forEach((le, i) => {
        acc += s.buckets![i];
        values.push({ labels: { ...s.labels, le }, value: acc, metricName: bucket });
      });
      values.push({ labels: { ...s.labels, le: "+Inf" }, value: s.value, metricName: bucket });
      values.push({ labels: { ...s.labels }, value: s.sum!, metricName: `${this.name}_sum` });
      values.push({ labels: { ...s.labels }, value: s.value, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: "histogram", values, aggregator: "sum" };
  }
}

function unknownLabel(metric: string, label: string): Error {
  return new Error(`metric ${metric}: unknown label ${JSON.stringify(label)} (declare it in labelNames)`);
}

/** A set of metrics with unique names; `toJSON()` is what a scrape takes. */
export class MetricSet {
  private readonly metrics = new Map<string, Metric>();

  constructor(private readonly reserved: ReadonlySet<string> = RESERVED_LABELS) {}

  counter(o: MetricOptions): Counter {
    return this.add(o, () => new CounterImpl(o.name, o.help, o.labelNames));
  }

  gauge(o: MetricOptions): Gauge {
    return this.add(o, () => new GaugeImpl(o.name, o.help, o.labelNames));
  }

  histogram(o: HistogramOptions): Histogram {
    return this.add(o, () => new HistogramImpl(o.name, o.help, o.labelNames, o.buckets ?? DEFAULT_BUCKETS));
  }

  toJSON(): MetricJson[] {
    return [...this.metrics.values()].map((m) => m.toJSON());
  }

  private add<T extends Metric>(o: MetricOptions, make: () => T): T {
    if (!o || typeof o.name !== "string" || !NAME.test(o.name))
      throw new Error(`metric name ${JSON.stringify(o?.name)} must match ${NAME}`);
    if (typeof o.help !== "string" || o.help === "") throw new Error(`metric ${o.name}: help text is required`);
    for (const l of o.labelNames ?? []) {
      if (!NAME.test(l) || l.startsWith("__")) throw new Error(`metric ${o.name}: invalid label name ${l}`);
      if (this.reserved.has(l)) throw new Error(`metric ${o.name}: label ${l} is reserved`);
    }
    if (this.metrics.has(o.name)) throw new Error(`metric ${o.name} is already defined`);
    const m = make();
    this.metrics.set(o.name, m);
    return m;
  }
}

/** This plugin's own metrics (one plugin per worker or container). */
const plugin = new MetricSet();

/** A counter of this plugin, e.g. `metrics.counter({ name: "tasks_created_total", help: "tasks created" })`. */
export function counter(o: MetricOptions): Counter {
  return plugin.counter(o);
}

export function gauge(o: MetricOptions): Gauge {
  return plugin.gauge(o);
}

export function histogram(o: HistogramOptions): Histogram {
  return plugin.histogram(o);
}

/** For the dispatcher: the plugin's metrics as they are now (answered to the host's `metrics` request). */
export function pluginMetrics(): MetricJson[] {
  return plugin.toJSON();
}

/**
 * The SDK's metrics: names and labels are checked (reserved `plugin` / `le`, no `:`), a name is defined once, and what
 * a scrape takes has prom-client's `getMetricsAsJSON` shape (cumulative histogram buckets, `+Inf`, `_sum`, `_count`).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { MetricSet } from "../src/metrics.js";

test("metric names and labels are checked; a name is defined once", () => {
  const set = new MetricSet();
  assert.throws(() => set.counter({ name: "a:b", help: "x" }), /must match/);
  assert.throws(() => set.counter({ name: "ok", help: "" }), /help text/);
  assert.throws(() => set.counter({ name: "ok", help: "x", labelNames: ["plugin"] }), /reserved/);
  assert.throws(() => set.histogram({ name: "h", help: "x", labelNames: ["le"] }), /reserved/);
  assert.throws(() => set.histogram({ name: "h", help: "x", buckets: [1, 0.5] }), /ascending/);
  const c = set.counter({ name: "ok", help: "x", labelNames: ["kind"] });
  assert.throws(() => set.gauge({ name: "ok", help: "again" }), /already defined/);
  assert.throws(() => c.inc({ other: "1" }), /unknown label "other"/);
  assert.throws(() => c.inc({ kind: "a" }, -1), />= 0/);
});

test("a scrape has prom-client's JSON shape", () => {
  const set = new MetricSet();
  const c = set.counter({ name: "made_total", help: "made", labelNames: ["kind"] });
  c.inc({ kind: "a" });
  c.inc({ kind: "a" }, 2);
  c.labels({ kind: "b" }).inc();
  const g = set.gauge({ name: "open", help: "open" });
  g.set(undefined, 5);
  g.dec();
  const h = set.histogram({ name: "took_seconds", help: "took", buckets: [0.1, 1] });
  h.observe(undefined, 0.05);
  h.labels({}).observe(0.5);
  h.observe(undefined, 3);
  assert.deepEqual(set.toJSON(), [
    {
      name: "made_total",
      help: "made",
      type: "counter",
      aggregator: "sum",
      values: [
        { labels: { kind: "a" }, value: 3 },
        { labels: { kind: "b" }, value: 1 },
      ],
    },
    { name: "open", help: "open", type: "gauge", aggregator: "sum", values: [{ labels: {}, value: 4 }] },
    {
      name: "took_seconds",
      help: "took",
      type: "histogram",
      aggregator: "sum",
      values: [
        { labels: { le: 0.1 }, value: 1, metricName: "took_seconds_bucket" },
        { labels: { le: 1 }, value: 2, metricName: "took_seconds_bucket" },
        { labels: { le: "+Inf" }, value: 3, metricName: "took_seconds_bucket" },
        { labels: {}, value: 3.55, metricName: "took_seconds_sum" },
        { labels: {}, value: 3, metricName: "took_seconds_count" },
      ],
    },
  ]);
});

/**
 * Health, metrics and the manifest route on a real daemon over real HTTP: `/health` lists every plugin with its
 * `health()` answer (a hanging one is `down` after 1 s, a throwing one `down` with the reason), the daemon is
 * `degraded` while `/ready` stays 200; `/metrics` (admin listener, token) has per-route-pattern request counts and
 * durations, worker heaps, event-loop lag, lifecycle durations, store appends, plugin crashes and restarts, and the
 * plugins' own metrics namespaced per plugin; `/plugin/{name}/api/manifest` answers the installed manifest unless
 * the plugin routes `/manifest` itself; HECATE_METRICS off answers 404 and counts nothing.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import {
  buildPackage,
  type PluginSource,
  startTestDaemon,
  type TestDaemon,
  unixRequest,
  until,
} from "../lifecycle/helpers.js";

const gz = { "content-type": "application/gzip" };

const PLUGINS: PluginSource[] = [
  { name: "fine", version: "1.0.0", manifest: { description: "no health()", settings: { type: "object" } } },
  {
    name: "sick",
    version: "1.0.0",
    extra: `export function health() { return { status: "down", detail: "db unreachable" }; }`,
  },
  { name: "hangs", version: "1.0.0", extra: "export function health() { return new Promise(() => {}); }" },
  { name: "throws", version: "1.0.0", extra: `export function health() { throw new Error("boom"); }` },
  {
    name: "counting-a",
    version: "1.0.0",
    extra: `import { metrics } from "@hecate/sdk";
const made = metrics.counter({ name: "tasks_total", help: "tasks made", labelNames: ["kind"] });
export function health() { return { status: "degraded", detail: "half the replicas" }; }`,
    routes: `{ method: "POST", path: "/tasks", handler: () => { made.inc({ kind: "todo" }); return { status: 201, body: {} }; } },
    { method: "GET", path: "/tasks/:id", handler: (req) => ({ id: req.params.id }) },
    { method: "GET", path: "/die", handler: () => { setTimeout(() => process.exit(3), 10); return "bye"; } },`,
  },
  {
    name: "counting_a",
    version: "1.0.0",
    // Same metric name as counting-a's, another type: its own family, no clash.
    extra: `import { metrics } from "@hecate/sdk";
const g = metrics.gauge({ name: "tasks_total", help: "a gauge this time" });
g.set(undefined, 7);`,
    routes: `{ method: "GET", path: "/manifest", handler: () => ({ mine: true }) },`,
  },
];

let d: TestDaemon;

before(async () => {
  d = await startTestDaemon({ trustOwnProcessOnSocket: true });
  for (const p of PLUGINS) {
    const r = await d.api("POST", "/admin/api/plugins", {
      body: readFileSync(await buildPackage(d.work, p)),
      headers: gz,
    });
    assert.equal(r.status, 201, `${p.name}: ${await r.text()}`);
  }
});

after(async () => {
  await d?.stop();
});

test("/health lists every plugin within the 1 s per-plugin timeout; degraded, /ready unaffected", async () => {
  const t0 = performance.now();
  const r = await fetch(`${d.url}/health`);
  const ms = performance.now() - t0;
  assert.equal(r.status, 200);
  const body = (await r.json()) as { status: string; plugins: Record<string, { status: string; detail?: string }> };
  assert.equal(body.status, "degraded");
  assert.deepEqual(body.plugins.fine, { status: "ok" });
  assert.deepEqual(body.plugins.sick, { status: "down", detail: "db unreachable" });
  assert.deepEqual(body.plugins["counting-a"], { status: "degraded", detail: "half the replicas" });
  assert.equal(body.plugins.hangs.status, "down");
  assert.match(body.plugins.hangs.detail ?? "", /within 1000 ms/);
  assert.deepEqual(body.plugins.throws, { status: "down", detail: "health() failed: boom" });
  assert.deepEqual(Object.keys(body.plugins).sort(), PLUGINS.map((p) => p.name).sort());
  assert.ok(ms >= 900 && ms < 2500, `answered in ${ms} ms`);
  const ready = await fetch(`${d.url}/ready`);
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { ready: true });
  // The admin API gives the same health, with request counts for the page.
  const admin = await (await d.api("GET", "/admin/api/health")).json();
  assert.equal(admin.status, "degraded");
  assert.equal(admin.plugins.sick.status, "down");
  assert.equal(typeof admin.plugins.fine.requests, "number");
});

test("/health is ok when every plugin is", async () => {
  for (const n of ["sick", "hangs", "throws", "counting-a"]) {
    const r = await d.api("POST", `/admin/api/plugins/${n}/deactivate`);
    assert.equal(r.status, 200);
  }
  const body = (await (await fetch(`${d.url}/health`)).json()) as { status: string; plugins: object };
  assert.equal(body.status, "ok");
  assert.deepEqual(Object.keys(body.plugins).sort(), ["counting_a", "fine"]);
  for (const n of ["sick", "hangs", "throws", "counting-a"]) {
    const r = await d.api("POST", `/admin/api/plugins/${n}/activate`);
    assert.equal(r.status, 200);
  }
});

test("/plugin/{name}/api/manifest answers the installed manifest, unless the plugin routes /manifest", async () => {
  const r = await fetch(`${d.url}/plugin/fine/api/manifest`);
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), {
    name: "fine",
    version: "1.0.0",
    description: "no health()",
    settings: { type: "object" },
  });
  const own = await fetch(`${d.url}/plugin/counting_a/api/manifest`);
  assert.deepEqual(await own.json(), { mine: true });
  const post = await fetch(`${d.url}/plugin/fine/api/manifest`, { method: "POST" });
  assert.equal(post.status, 405);
});

async function scrape(): Promise<string> {
  const r = await d.api("GET", "/metrics");
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return r.text();
}

/** The value of the series `name{labels}` (labels in any order), or undefined. */
function value(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && line.split(" ")[0] !== name) continue;
    const m = /^([^{ ]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

test("/metrics: guarded like the admin API, request counts by route pattern, the rest of the series", async () => {
  assert.equal((await fetch(`${d.adminUrl}/metrics`)).status, 401);
  assert.equal((await fetch(`${d.url}/metrics`)).status, 404, "not on the plugin port");
  for (const id of ["41", "42", "43"])
    assert.equal((await fetch(`${d.url}/plugin/counting-a/api/tasks/${id}`)).status, 200);
  for (let i = 0; i < 2; i++)
    assert.equal((await fetch(`${d.url}/plugin/counting-a/api/tasks`, { method: "POST" })).status, 201);
  assert.equal((await fetch(`${d.url}/plugin/fine/`)).status, 200);
  const text = await scrape();
  const req = "hecate_plugin_http_requests_total";
  assert.equal(value(text, req, { plugin: "counting-a", route: "/tasks/:id", method: "GET", status: "200" }), 3);
  assert.equal(value(text, req, { plugin: "counting-a", route: "/tasks", method: "POST", status: "201" }), 2);
  assert.equal(value(text, req, { plugin: "fine", route: "(static)", method: "GET", status: "200" }), 1);
  assert.doesNotMatch(text, /route="\/tasks\/4\d"/, "raw paths never become labels");
  const dur = "hecate_plugin_http_request_duration_seconds";
  assert.equal(value(text, `${dur}_count`, { plugin: "counting-a", route: "/tasks/:id", method: "GET" }), 3);
  assert.equal(
    value(text, `${dur}_bucket`, { plugin: "counting-a", route: "/tasks/:id", method: "GET", le: "+Inf" }),
    3,
  );
  assert.match(text, /# TYPE hecate_plugin_http_request_duration_seconds histogram/);
  // Plugins' own metrics: namespaced per plugin, plugin label set by the host, no family shared.
  assert.equal(value(text, "hecate_plugin_counting:a:tasks_total", { plugin: "counting-a", kind: "todo" }), 2);
  assert.match(text, /# TYPE hecate_plugin_counting:a:tasks_total counter/);
  assert.equal(value(text, "hecate_plugin_counting_a:tasks_total", { plugin: "counting_a" }), 7);
  assert.match(text, /# TYPE hecate_plugin_counting_a:tasks_total gauge/);
  for (const p of PLUGINS) {
    const heap = value(text, "hecate_plugin_worker_heap_used_bytes", { plugin: p.name });
    assert.ok(heap !== undefined && heap > 100_000, `${p.name} heap ${heap}`);
  }
  for (const proc of ["supervisor", "host-1"]) {
    assert.notEqual(value(text, "hecate_event_loop_lag_seconds", { process: proc, stat: "p99" }), undefined, proc);
    assert.ok((value(text, "hecate_process_heap_used_bytes", { process: proc }) ?? 0) > 1e6, proc);
  }
  const loads = value(text, "hecate_lifecycle_operation_duration_seconds_count", { operation: "load", outcome: "ok" });
  assert.ok(loads !== undefined && loads >= PLUGINS.length + 4, `loads ${loads}`);
  assert.ok(
    (value(text, "hecate_lifecycle_operation_duration_seconds_count", { operation: "extract", outcome: "ok" }) ?? 0) >=
      PLUGINS.length,
  );
  assert.ok(
    (value(text, "hecate_lifecycle_operation_duration_seconds_count", { operation: "unload", outcome: "ok" }) ?? 0) >=
      4,
  );
  assert.equal(
    value(text, "hecate_store_appended_events_total", { store: "plugins", type: "plugin_installed_v1" }),
    PLUGINS.length,
  );
  // The Unix socket (trusted peer) answers it too.
  const viaSocket = await unixRequest(d.socketPath, "GET", "/metrics");
  assert.equal(viaSocket.status, 200);
  assert.match(viaSocket.body, /hecate_plugin_http_requests_total/);
});

test("/metrics counts a plugin's crash and its restart", async () => {
  assert.equal((await fetch(`${d.url}/plugin/counting-a/api/die`)).status, 200);
  await until(
    async () => value(await scrape(), "hecate_plugin_restarts_total", { plugin: "counting-a" }) === 1,
    10_000,
    "restart counted",
  );
  const text = await scrape();
  assert.equal(value(text, "hecate_plugin_crashes_total", { plugin: "counting-a" }), 1);
  assert.equal((await fetch(`${d.url}/plugin/counting-a/api/tasks/1`)).status, 200, "serving again");
});

test("HECATE_METRICS off: /metrics answers 404 metrics_disabled, requests are served and not counted", async () => {
  const off = await startTestDaemon({ metrics: false });
  try {
    const p = PLUGINS[0];
    const r = await off.api("POST", "/admin/api/plugins", {
      body: readFileSync(await buildPackage(off.work, p)),
      headers: gz,
    });
    assert.equal(r.status, 201);
    assert.equal((await fetch(`${off.url}/plugin/fine/api/who`)).status, 200);
    const m = await off.api("GET", "/metrics");
    assert.equal(m.status, 404);
    assert.equal((await m.json()).error.code, "metrics_disabled");
    const h = await (await off.api("GET", "/admin/api/health")).json();
    assert.deepEqual(h.plugins.fine, { status: "ok", requests: null });
  } finally {
    await off.stop();
  }
});

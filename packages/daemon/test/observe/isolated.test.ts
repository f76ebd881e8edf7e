/**
 * Health and metrics of a plugin moved into an isolated plugin-host process (after it took the main host down): the
 * main host's `/health` lists it with its own `health()` answer, fetched from its isolated host; its requests are
 * counted once, by the isolated host, under their real route pattern (not the main host's proxy route).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { buildPackage, startTestDaemon, until } from "../lifecycle/helpers.js";

test("an isolated plugin's health and request counts reach /health and /metrics", async (t) => {
  const d = await startTestDaemon({ hosts: { crashesBeforeIsolation: 1, activityIntervalMs: 50 } });
  t.after(() => d.stop());
  const body = readFileSync(
    await buildPackage(d.work, {
      name: "wild",
      version: "1.0.0",
      extra: `export function health() { return { status: "degraded", detail: "from the isolated host" }; }`,
      routes: `{ method: "GET", path: "/boom", handler: () => { process.kill(process.pid, "SIGKILL"); return "never"; } },
      { method: "GET", path: "/items/:id", handler: (req) => ({ id: req.params.id }) },`,
    }),
  );
  assert.equal(
    (await d.api("POST", "/admin/api/plugins", { body, headers: { "content-type": "application/gzip" } })).status,
    201,
  );
  await fetch(`${d.url}/plugin/wild/api/boom`).catch(() => {}); // takes the main host down
  await until(() => Object.keys(d.hosts.pids()).length >= 2, 20_000, "an isolated host");
  await until(
    async () => (await fetch(`${d.url}/plugin/wild/api/items/1`)).status === 200,
    20_000,
    "wild served again",
  );

  const h = (await (await fetch(`${d.url}/health`)).json()) as { status: string; plugins: Record<string, unknown> };
  assert.deepEqual(h.plugins.wild, { status: "degraded", detail: "from the isolated host" });
  assert.equal(h.status, "degraded");

  for (const id of ["2", "3"]) assert.equal((await fetch(`${d.url}/plugin/wild/api/items/${id}`)).status, 200);
  const text = await (await d.api("GET", "/metrics")).text();
  const line = text
    .split("\n")
    .find((l) => l.startsWith('hecate_plugin_http_requests_total{plugin="wild",route="/items/:id"'));
  assert.ok(line, text);
  assert.ok(Number(line.split(" ").at(-1)) >= 3, line);
  assert.doesNotMatch(
    text,
    /hecate_plugin_http_requests_total\{plugin="wild",route="\/\*"/,
    "the proxy does not count",
  );
  assert.match(text, /hecate_event_loop_lag_seconds\{process="host-2",stat="p99"\}/);
});

/**
 * A container plugin's health, manifest route and request metrics through a real daemon and real Podman: `/health`
 * lists it `ok` from its HTTP health check, `down` within the 1 s timeout while its container is paused (and `ok` again
 * once resumed); `/plugin/{name}/api/manifest` answers its installed manifest (the daemon's route wins over the
 * container's catch-all); its requests are counted under the route pattern `/*`.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { packPlugin } from "@hecate/package";
import { LABEL_INSTANCE, LABEL_PLUGIN } from "../../src/container/container-plugins.js";
import { startTestDaemon, until } from "../lifecycle/helpers.js";
import { echoExample, removeHomeContainers, skipReason } from "./helpers.js";

test("container plugin: health from its HTTP check, manifest route, requests counted", {
  skip: skipReason(),
}, async (t) => {
  const d = await startTestDaemon({ containers: true });
  t.after(async () => {
    await d.close();
    await removeHomeContainers(d.home);
    await d.stop();
  });
  const src = mkdtempSync(join(d.work, "src-"));
  cpSync(echoExample, src, { recursive: true });
  const archive = join(d.work, "container-echo.tar.gz");
  await packPlugin(src, archive);
  const r = await d.api("POST", "/admin/api/plugins", {
    body: readFileSync(archive),
    headers: { "content-type": "application/gzip" },
  });
  assert.equal(r.status, 201, await r.text());

  const health = async () =>
    (await (await fetch(`${d.url}/health`)).json()) as {
      status: string;
      plugins: Record<string, { status: string; detail?: string }>;
    };
  assert.deepEqual((await health()).plugins["container-echo"], { status: "ok" });

  const m = await fetch(`${d.url}/plugin/container-echo/api/manifest`);
  assert.equal(m.status, 200);
  assert.deepEqual(await m.json(), JSON.parse(readFileSync(join(echoExample, "manifest.json"), "utf8")));

  for (let i = 0; i < 3; i++) assert.equal((await fetch(`${d.url}/plugin/container-echo/api/echo?i=${i}`)).status, 200);
  const text = await (await d.api("GET", "/metrics")).text();
  assert.match(
    text,
    /hecate_plugin_http_requests_total\{plugin="container-echo",route="\/\*",method="GET",status="200"\} 3/,
  );

  // A paused container answers nothing: down within the timeout, the daemon degraded, /ready untouched.
  const instance = readFileSync(join(d.home, "instance-id"), "utf8").trim();
  const filters = [
    "--filter",
    `label=${LABEL_INSTANCE}=${instance}`,
    "--filter",
    `label=${LABEL_PLUGIN}=container-echo`,
  ];
  const id = execFileSync("podman", ["ps", "-q", ...filters], { encoding: "utf8" }).trim();
  assert.ok(id, "the plugin's container runs");
  execFileSync("podman", ["pause", id]);
  try {
    const t0 = performance.now();
    const h = await health();
    assert.ok(performance.now() - t0 < 2500);
    assert.equal(h.status, "degraded");
    assert.equal(h.plugins["container-echo"].status, "down");
    assert.match(h.plugins["container-echo"].detail ?? "", /within 1000 ms/);
    assert.equal((await fetch(`${d.url}/ready`)).status, 200);
  } finally {
    execFileSync("podman", ["unpause", id]);
  }
  await until(async () => (await health()).status === "ok", 10_000, "ok again once resumed");
});

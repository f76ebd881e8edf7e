/**
 * End to end through the admin API of a real in-process daemon: real packages (packPlugin), real workers, real HTTP.
 * install (upload and {path}) -> API + static answer -> deactivate (503) -> activate -> upgrade under keep-alive load
 * (0 failed requests) -> remove (files gone, data kept) / remove with purge.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { pluginPaths } from "@hecate/sdk";
import { buildPackage, startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";

let d: TestDaemon;

before(async () => {
  d = await startTestDaemon();
});
after(async () => {
  await d.stop();
});

const gz = { "content-type": "application/gzip" };

async function get(path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(d.url + path);
  return { status: r.status, body: await r.text() };
}

test("install (upload) -> API and static answer -> deactivate 503 -> activate -> remove keeps data", async () => {
  const t0 = performance.now();
  const archive = await buildPackage(d.work, { name: "hello", version: "1.0.0" });
  const r = await d.api("POST", "/admin/api/plugins", { body: readFileSync(archive), headers: gz });
  const view = await r.json();
  assert.equal(r.status, 201, JSON.stringify(view));
  const installMs = performance.now() - t0;
  assert.equal(view.name, "hello");
  assert.equal(view.status, "loaded");
  assert.equal(view.version, "1.0.0");
  assert.equal(view.type, "in_process");
  assert.deepEqual(view.flags, ["INSTALLED", "ACTIVATED", "EXTRACTED", "LOADED"]);
  assert.deepEqual(view.routes, [{ method: "GET", path: "/who" }]);
  assert.equal(view.url, "/plugin/hello/");
  assert.equal(view.apiUrl, "/plugin/hello/api/");
  assert.equal(view.lastError, null);

  assert.deepEqual(JSON.parse((await get("/plugin/hello/api/who")).body), { name: "hello", version: "1.0.0" });
  const page = await get("/plugin/hello/");
  assert.equal(page.status, 200);
  assert.match(page.body, /hello 1\.0\.0/);

  const one = await (await d.api("GET", "/admin/api/plugins/hello")).json();
  assert.equal(one.manifest.name, "hello");
  const list = await (await d.api("GET", "/admin/api/plugins")).json();
  assert.deepEqual(
    list.plugins.map((p: { name: string }) => p.name),
    ["hello"],
  );
  const events = (await (await d.api("GET", "/admin/api/plugins/hello/events")).json()).events;
  assert.deepEqual(
    events.map((e: { type: string }) => e.type),
    ["plugin_installed_v1", "plugin_package_extracted_v1", "plugin_activated_v1", "plugin_load_confirmed_v1"],
  );
  assert.ok(events.every((e: { position: number; createdAt: string }) => e.position > 0 && e.createdAt));

  const off = await d.api("POST", "/admin/api/plugins/hello/deactivate");
  assert.equal(off.status, 200);
  assert.equal((await off.json()).status, "deactivated");
  // installed but not loaded: 503 plugin_not_active saying how to activate it (not a bare 404)
  for (const path of ["/plugin/hello/api/who", "/plugin/hello/"]) {
    const r = await get(path);
    assert.equal(r.status, 503);
    const { error } = JSON.parse(r.body);
    assert.equal(error.code, "plugin_not_active");
    assert.match(
      error.message,
      /plugin hello is not active \(it is deactivated\); activate it with: hecate plugin activate hello/,
    );
  }
  assert.equal((await d.api("POST", "/admin/api/plugins/hello/deactivate")).status, 409);

  const on = await d.api("POST", "/admin/api/plugins/hello/activate");
  assert.equal(on.status, 200);
  assert.equal((await on.json()).status, "loaded");
  assert.equal((await get("/plugin/hello/api/who")).status, 200);
  const again = await d.api("POST", "/admin/api/plugins/hello/activate");
  assert.equal(again.status, 409);
  assert.equal((await again.json()).error.code, "plugin_already_activated");

  const paths = pluginPaths(d.home, "hello");
  assert.ok(existsSync(join(paths.data, "init-1.0.0.txt")), "the plugin wrote into its data dir");
  const rm = await d.api("DELETE", "/admin/api/plugins/hello");
  assert.equal(rm.status, 200);
  assert.deepEqual(await rm.json(), { removed: true, purged: false });
  assert.equal((await get("/plugin/hello/api/who")).status, 404);
  assert.equal(existsSync(paths.package), false, "package files removed");
  assert.equal(existsSync(paths.archive), false, "archive removed");
  assert.ok(existsSync(join(paths.data, "init-1.0.0.txt")), "plugin data kept without purge");
  assert.equal((await (await d.api("GET", "/admin/api/plugins/hello")).json()).status, "removed");
  console.log(`install->LOADED via admin API: ${installMs.toFixed(0)} ms`);
});

test("install {path} -> reinstall after remove -> remove ?purge=1 deletes everything", async () => {
  const archive = await buildPackage(d.work, { name: "bypath", version: "1.0.0" });
  const r = await d.api("POST", "/admin/api/plugins", {
    body: JSON.stringify({ path: archive }),
    headers: { "content-type": "application/json" },
  });
  assert.equal(r.status, 201, await r.clone().text());
  assert.ok(existsSync(archive), "the operator's file is copied, not moved");
  const dup = await d.api("POST", "/admin/api/plugins", {
    body: JSON.stringify({ path: archive }),
    headers: { "content-type": "application/json" },
  });
  assert.equal(dup.status, 409);
  assert.equal((await dup.json()).error.code, "plugin_already_installed");
  assert.equal(readdirSync(join(d.home, "run")).filter((f) => f.startsWith("incoming-")).length, 0);
  const rm = await d.api("DELETE", "/admin/api/plugins/bypath?purge=1");
  assert.deepEqual(await rm.json(), { removed: true, purged: true });
  assert.equal(existsSync(pluginPaths(d.home, "bypath").root), false);
  // Reinstall of a removed plugin.
  const re = await d.api("POST", "/admin/api/plugins", { body: readFileSync(archive), headers: gz });
  assert.equal(re.status, 201);
  assert.equal((await get("/plugin/bypath/api/who")).status, 200);
  await d.api("DELETE", "/admin/api/plugins/bypath?purge=1");
});

test("upgrade v1 -> v2 -> v1 ... under keep-alive load: zero failed requests, every answer v1 or v2", async () => {
  const v1 = readFileSync(await buildPackage(d.work, { name: "swap", version: "1.0.0" }));
  const v2 = readFileSync(await buildPackage(d.work, { name: "swap", version: "2.0.0" }));
  assert.equal((await d.api("POST", "/admin/api/plugins", { body: v1, headers: gz })).status, 201);
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  const port = new URL(d.url).port;
  let stop = false;
  let ok = 0;
  const failures: string[] = [];
  const seen = new Set<string>();
  let n = 0;
  let staticOk = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      // Every 4th request fetches the static page: it must not flicker while the package dir is replaced.
      const isStatic = n++ % 4 === 3;
      const path = isStatic ? "/plugin/swap/" : "/plugin/swap/api/who";
      const req = request({ host: "127.0.0.1", port, path, agent }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c) => {
          body += c;
        });
        res.on("end", () => {
          if (res.statusCode !== 200) failures.push(`${path}: ${res.statusCode} ${body}`);
          else if (isStatic) staticOk++;
          else {
            ok++;
            seen.add(JSON.parse(body).version);
          }
          resolve();
        });
      });
      req.on("error", (e) => {
        failures.push(e.message);
        resolve();
      });
      req.end();
    });
  const clients = Array.from({ length: 4 }, async () => {
    while (!stop) await one();
  });
  const swaps = 50;
  const swapMs: number[] = [];
  for (let i = 0; i < swaps; i++) {
    const t = performance.now();
    const r = await d.api("POST", "/admin/api/plugins/swap/upgrade", { body: i % 2 === 0 ? v2 : v1, headers: gz });
    swapMs.push(performance.now() - t);
    const v = await r.json();
    assert.equal(r.status, 200, JSON.stringify(v));
    assert.equal(v.version, i % 2 === 0 ? "2.0.0" : "1.0.0");
    assert.equal(v.status, "loaded");
  }
  stop = true;
  await Promise.all(clients);
  agent.destroy();
  assert.deepEqual(failures, []);
  assert.ok(ok > swaps, `requests served: ${ok}`);
  assert.ok(staticOk > swaps, `static pages served: ${staticOk}`);
  assert.deepEqual([...seen].sort(), ["1.0.0", "2.0.0"]);
  const events = (await (await d.api("GET", "/admin/api/plugins/swap/events")).json()).events as { type: string }[];
  assert.equal(events.filter((e) => e.type === "plugin_upgraded_v1").length, swaps);
  assert.equal(events.filter((e) => e.type === "plugin_load_confirmed_v1").length, swaps + 1);
  swapMs.sort((a, b) => a - b);
  console.log(
    `upgrade under load: ${swaps} swaps, ${ok} requests, 0 failed; upgrade API median ${swapMs[swaps >> 1].toFixed(0)} ms`,
  );
  await d.api("DELETE", "/admin/api/plugins/swap?purge=1");
});

test("the lifecycle SSE stream carries every event with the plugin's view", async () => {
  const res = await d.api("GET", "/admin/api/events", { headers: {} });
  assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const reader = res.body!.getReader();
  const seen: { type: string; view: { status: string } }[] = [];
  const reading = (async () => {
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += Buffer.from(value).toString("utf8");
      let i = buf.indexOf("\n\n");
      while (i >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = /^data: (.*)$/m.exec(frame);
        if (frame.startsWith("event: lifecycle") && data) {
          const e = JSON.parse(data[1]);
          if (e.plugin === "sse") seen.push(e);
          if (e.type === "plugin_load_confirmed_v1" && e.plugin === "sse") return;
        }
        i = buf.indexOf("\n\n");
      }
    }
  })();
  const archive = readFileSync(await buildPackage(d.work, { name: "sse", version: "1.0.0" }));
  assert.equal((await d.api("POST", "/admin/api/plugins", { body: archive, headers: gz })).status, 201);
  await reading;
  await reader.cancel();
  assert.deepEqual(
    seen.map((e) => e.type),
    ["plugin_installed_v1", "plugin_package_extracted_v1", "plugin_activated_v1", "plugin_load_confirmed_v1"],
  );
  assert.equal(seen.at(-1)?.view.status, "loaded");
  await d.api("DELETE", "/admin/api/plugins/sse?purge=1");
});

import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import type { ContainerEvent } from "../../src/container/index.js";
import { type Env, installPlugin, setup, skipReason } from "./helpers.js";

const skip = skipReason();

async function getJson<T>(url: string, method: "GET" | "POST" = "GET"): Promise<{ status: number; body: T }> {
  const r = await request(url, { method });
  const text = await r.body.text();
  return { status: r.statusCode, body: (text ? JSON.parse(text) : undefined) as T };
}

async function waitFor(events: ContainerEvent[], pred: (e: ContainerEvent) => boolean, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const e = events.find(pred);
    if (e) return e;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`event not seen within ${ms} ms; got ${JSON.stringify(events)}`);
}

describe("container sandbox and crash handling (real podman)", { skip }, () => {
  let env: Env;
  let tcp: Server;
  let tcpPort: number;
  let accepted = 0;
  before(async () => {
    env = await setup({ restartBudget: { max: 2, windowMs: 60_000 } });
    tcp = createServer((s) => {
      accepted++;
      s.destroy();
    });
    await new Promise<void>((r) => tcp.listen(0, "0.0.0.0", () => r()));
    tcpPort = (tcp.address() as { port: number }).port;
    await Promise.all([
      env.containers.load(installPlugin(env.home, "sa")),
      env.containers.load(installPlugin(env.home, "sb")),
    ]);
  });
  after(async () => {
    tcp?.close();
    await env?.close();
  });

  it("network none: no TCP to the host (loopback or LAN address) and no name resolution", async () => {
    const lan = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && i.family === "IPv4" && !i.internal)?.address;
    const hosts = ["127.0.0.1", ...(lan ? [lan] : [])].join(",");
    const { body } = await getJson<{ tcp: Record<string, string>; dns: { error?: string } }>(
      `${env.base}/plugin/sa/api/probe/net?port=${tcpPort}&hosts=${hosts}&name=example.com`,
    );
    for (const [h, r] of Object.entries(body.tcp)) assert.notEqual(r, "connected", `${h} must be unreachable`);
    assert.ok(body.dns.error, `name resolution must fail, got ${JSON.stringify(body.dns)}`);
    assert.equal(accepted, 0, "the host listener never saw a connection");
  });

  it("read-only root: writes to / and /plugin fail, the socket dir is the only writable mount", async () => {
    const { body } = await getJson<Record<string, unknown>>(
      `${env.base}/plugin/sa/api/probe/fs?write=/x,/plugin/x,/usr/x,/data/x&list=/run/plugin,/plugin`,
    );
    assert.equal(body["write:/x"], "EROFS");
    assert.ok(["EROFS", "ENOENT"].includes(body["write:/data/x"] as string), "no data dir unless the manifest asks");
    assert.equal(body["write:/plugin/x"], "EROFS");
    assert.equal(body["write:/usr/x"], "EROFS");
    assert.deepEqual(body["list:/run/plugin"], ["plugin.sock"]);
    assert.ok((body["list:/plugin"] as string[]).includes("manifest.json"));
  });

  it("container.writable_data: the plugin's data dir is writable at /data, owned by its uid, kept across reloads", async () => {
    const spec = installPlugin(env.home, "sd", undefined, (m) => {
      m.container = { ...m.container, writable_data: true };
    });
    const loaded = await env.containers.load(spec);
    const { body } = await getJson<Record<string, unknown>>(
      `${env.base}/plugin/sd/api/probe/fs?write=/data/note,/plugin/x&list=/data`,
    );
    assert.equal(body["write:/data/note"], "ok");
    assert.equal(body["write:/plugin/x"], "EROFS", "the package stays read-only");
    const hostFile = join(spec.dir, "data", "note");
    assert.equal(readFileSync(hostFile, "utf8"), "x");
    assert.equal(statSync(hostFile).uid, loaded.uid);
    await env.containers.unload("sd");
    await env.containers.load(spec);
    const again = await getJson<Record<string, unknown>>(`${env.base}/plugin/sd/api/probe/fs?write=/data/y&list=/data`);
    assert.deepEqual((again.body["list:/data"] as string[]).sort(), ["note", "y"]);
    // Another plugin sees neither the dir nor the files.
    const other = await getJson<Record<string, unknown>>(
      `${env.base}/plugin/sa/api/probe/fs?write=/data/z&list=${join(spec.dir, "data")}`,
    );
    assert.equal(other.body[`list:${join(spec.dir, "data")}`], "ENOENT");
    await env.containers.unload("sd");
  });

  it("plugin A cannot see plugin B's files or socket; each runs as its own uid", async () => {
    const a = env.containers.get("sa")!;
    const b = env.containers.get("sb")!;
    assert.notEqual(a.uid, b.uid);
    const bDir = `${env.home}/plugins/sb`;
    const bSockDir = b.socketPath.slice(0, b.socketPath.lastIndexOf("/"));
    const { body } = await getJson<Record<string, unknown>>(
      `${env.base}/plugin/sa/api/probe/fs?write=/run/plugin/../x&list=${bDir},${bSockDir},${env.home},/run`,
    );
    assert.equal(body[`list:${bDir}`], "ENOENT");
    assert.equal(body[`list:${bSockDir}`], "ENOENT");
    assert.equal(body[`list:${env.home}`], "ENOENT");
    assert.ok(!JSON.stringify(body["list:/run"]).includes("sb"));
  });

  it("OOM kill is reported as a crash with reason oom, then the container is restarted", async () => {
    const spec = installPlugin(env.home, "oom", undefined, (m) => {
      m.container = { ...m.container, memory_mb: 64 };
    });
    await env.containers.load(spec);
    const r = await request(`${env.base}/plugin/oom/api/alloc?mb=400`, { method: "POST" }).catch((e) => e);
    if (!(r instanceof Error)) {
      assert.ok(r.statusCode >= 500, `allocation past the limit must not succeed (got ${r.statusCode})`);
      await r.body.dump();
    }
    const crash = await waitFor(env.events, (e) => e.type === "crashed" && e.plugin === "oom");
    assert.equal(crash.type === "crashed" && crash.reason, "oom");
    await waitFor(env.events, (e) => e.type === "restarted" && e.plugin === "oom");
    const again = await getJson<{ hello: string }>(`${env.base}/plugin/oom/api/hello`);
    assert.equal(again.status, 200);
  });

  it("crashes past the restart budget disable the plugin: reported failed, routes and container removed", async () => {
    const loaded = await env.containers.load(installPlugin(env.home, "crashy"));
    for (let i = 1; i <= 3; i++) {
      await getJson(`${env.base}/plugin/crashy/api/exit?code=3`, "POST").catch(() => {});
      if (i <= 2) {
        const n = i;
        await waitFor(env.events, (e) => e.type === "restarted" && e.plugin === "crashy" && e.restarts === n);
      }
    }
    const failed = await waitFor(env.events, (e) => e.type === "failed" && e.plugin === "crashy");
    assert.equal(failed.type === "failed" && failed.reason, "exit");
    const crash = env.events.find((e) => e.type === "crashed" && e.plugin === "crashy");
    assert.equal(crash?.type === "crashed" && crash.exitCode, 3);
    assert.equal(env.containers.get("crashy"), undefined);
    const gone = await request(`${env.base}/plugin/crashy/api/hello`);
    assert.equal(gone.statusCode, 404);
    await gone.body.dump();
    const deadline = Date.now() + 10_000;
    while ((await env.podman.inspectContainer(loaded.containerId)) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    assert.equal(await env.podman.inspectContainer(loaded.containerId), null);
  });

  it("a container that stops answering its health check is restarted (reason unhealthy)", async () => {
    const rt = env.newContainers({ healthIntervalMs: 300, healthFailures: 2 });
    await rt.load(installPlugin(env.home, "hang"));
    void request(`${env.base}/plugin/hang/api/hang`, { method: "POST" }).then(
      (r) => r.body.dump(),
      () => {},
    );
    const crash = await waitFor(env.events, (e) => e.type === "crashed" && e.plugin === "hang");
    assert.equal(crash.type === "crashed" && crash.reason, "unhealthy");
    await waitFor(env.events, (e) => e.type === "restarted" && e.plugin === "hang");
    const again = await getJson<{ hello: string }>(`${env.base}/plugin/hang/api/hello`);
    assert.equal(again.status, 200);
    await rt.unload("hang");
  });
});

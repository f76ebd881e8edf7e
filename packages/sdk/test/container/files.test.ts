// The files helper under serveContainerPlugin with the container layout: the package (root) and the data dir are
// separate directories (mounts), so uploads land outside the root and must still be served with ETag / Range.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Agent, FormData, request } from "undici";
import { standaloneConfig } from "../../src/config.js";
import { type ContainerPluginServer, serveContainerPlugin } from "../../src/container.js";
import type { PluginModule } from "../../src/contract.js";
import * as files from "../../src/files.js";
import { pluginPaths } from "../../src/paths.js";

let dir: string;
let srv: ContainerPluginServer;
let agent: Agent;
let dataDir: string;

const plugin: PluginModule = {
  manifest: () => ({ name: "cf", version: "1.0.0" }),
  init() {},
  routes: () => [
    { method: "POST", path: "/upload", handler: async (req) => ({ status: 201, body: await files.receive(req) }) },
    { method: "GET", path: "/files/:id", handler: (req) => files.download(req.params.id, "notes.txt") },
    { method: "GET", path: "/outside", handler: () => ({ file: { path: join(dir, "secret.txt") } }) },
  ],
};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "hecate-cf-"));
  const base = pluginPaths(dir, "cf");
  const root = join(dir, "plugin");
  dataDir = join(dir, "data");
  for (const d of [root, dataDir]) mkdirSync(d, { recursive: true });
  writeFileSync(join(dir, "secret.txt"), "no");
  srv = await serveContainerPlugin(plugin, {
    socketPath: join(dir, "plugin.sock"),
    handleSignals: false,
    config: standaloneConfig("cf", { paths: { ...base, root, package: root, data: dataDir }, dataDir }),
  });
  agent = new Agent({ connect: { socketPath: join(dir, "plugin.sock") } });
});
after(async () => {
  await agent?.close();
  await srv?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("container entry: upload into the data mount, download with Content-Disposition, ETag and Range", async () => {
  const fd = new FormData();
  fd.append("f", new Blob(["0123456789".repeat(1000)]), "n.txt");
  const up = await request("http://p/upload", { dispatcher: agent, method: "POST", body: fd });
  assert.equal(up.statusCode, 201);
  const stored = ((await up.body.json()) as files.ReceiveResult).files[0];
  assert.equal(stored.size, 10_000);
  assert.deepEqual(readdirSync(join(dataDir, "uploads")), [stored.id]);

  const whole = await request(`http://p/files/${stored.id}`, { dispatcher: agent });
  assert.equal(whole.statusCode, 200);
  assert.equal(whole.headers["content-disposition"], "attachment; filename*=UTF-8''notes.txt");
  assert.equal((await whole.body.text()).length, 10_000);
  const etag = String(whole.headers.etag);
  const cached = await request(`http://p/files/${stored.id}`, {
    dispatcher: agent,
    headers: { "if-none-match": etag },
  });
  assert.equal(cached.statusCode, 304);
  await cached.body.dump();
  const part = await request(`http://p/files/${stored.id}`, { dispatcher: agent, headers: { range: "bytes=5-14" } });
  assert.equal(part.statusCode, 206);
  assert.equal(await part.body.text(), "5678901234");

  // A file outside both the package and the data dir is refused.
  const out = await request("http://p/outside", { dispatcher: agent });
  assert.equal(out.statusCode, 403);
  await out.body.dump();
});

/**
 * `hecate plugin install https://… --sha256 HEX` and `hecate plugin upgrade --name NAME https://…`: the real CLI
 * against a real daemon that downloads from a real HTTPS server with a throwaway CA (given to the daemon through
 * HECATE_DOWNLOAD_CA_FILE).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { PluginView } from "../src/client.js";
import { cliJson, FIXTURES, runCli, startTestDaemon, type TestDaemon, tempDir } from "./helpers.js";

/** The daemon tests' HTTPS server with a throwaway CA (packages/daemon/test/admin/https-server.ts). */
interface TestServer {
  url: string;
  close(): Promise<void>;
}
const server = (await import(new URL("../../../daemon/dist/test/admin/https-server.js", import.meta.url).href)) as {
  makeTestCa(dir: string): { caFile: string };
  serve(handler: (req: IncomingMessage, res: ServerResponse) => void, ca: unknown): Promise<TestServer>;
};

let daemon: TestDaemon;
let https: TestServer;
const files = new Map<string, Buffer>();
const work = tempDir("url");

before(async () => {
  const ca = server.makeTestCa(work);
  https = await server.serve((req, res) => {
    const body = files.get(req.url ?? "");
    res.writeHead(body ? 200 : 404, { "content-type": "application/gzip" });
    res.end(body ?? "");
  }, ca);
  daemon = await startTestDaemon({ env: { HECATE_DOWNLOAD_CA_FILE: ca.caFile } });
});
after(async () => {
  await daemon?.stop();
  await https?.close();
});

async function packEcho(version: string): Promise<Buffer> {
  const src = join(work, `echo-${version}`);
  cpSync(join(FIXTURES, "echo-plugin"), src, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(src, "manifest.json"), "utf8"));
  writeFileSync(join(src, "manifest.json"), JSON.stringify({ ...manifest, version }));
  const out = join(work, `echo-${version}.tar.gz`);
  await cliJson(["plugin", "pack", src, "-o", out, "--no-build"]);
  return readFileSync(out);
}

test("install from an https URL with a pin, upgrade from another; a wrong pin exits 7 with the daemon's code", async () => {
  const v1 = await packEcho("1.0.0");
  files.set("/echo-1.tar.gz", v1);
  const pin = createHash("sha256").update(v1).digest("hex");
  const wrong = await runCli(["plugin", "install", `${https.url}/echo-1.tar.gz`, "--sha256", "f".repeat(64)], {
    home: daemon.home,
  });
  assert.equal(wrong.code, 7, wrong.stderr);
  assert.match(wrong.stderr, /sha256_mismatch|sha256/);
  const view = await cliJson<PluginView>(["plugin", "install", `${https.url}/echo-1.tar.gz`, "--sha256", pin], {
    home: daemon.home,
  });
  assert.equal(view.status, "loaded");
  assert.equal(view.version, "1.0.0");
  files.set("/echo-2.tar.gz", await packEcho("1.0.1"));
  const noName = await runCli(["plugin", "upgrade", `${https.url}/echo-2.tar.gz`], { home: daemon.home });
  assert.equal(noName.code, 2, noName.stderr);
  const up = await cliJson<PluginView>(["plugin", "upgrade", "--name", view.name, `${https.url}/echo-2.tar.gz`], {
    home: daemon.home,
  });
  assert.deepEqual([up.status, up.version], ["loaded", "1.0.1"]);
});

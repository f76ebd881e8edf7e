/**
 * A host recycle with a container plugin (real Podman): the new host adopts the running container instead of
 * restarting it, the old host leaves it (and Podman's service) running, and requests to it do not fail meanwhile.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { packPlugin } from "@hecate/package";
import { LABEL_INSTANCE } from "../../src/container/container-plugins.js";
import { PodmanClient } from "../../src/container/index.js";
import { startDaemon } from "../../src/daemon.js";
import { echoExample, removeHomeContainers } from "../container/helpers.js";
import { unixRequest } from "../lifecycle/helpers.js";

test("recycle with a container plugin: the container is adopted (same id), no request fails", {
  timeout: 240_000,
}, async () => {
  const work = mkdtempSync(join(tmpdir(), "hecate-recycle-c-"));
  const home = join(work, "home");
  const src = join(work, "src");
  cpSync(echoExample, src, { recursive: true });
  const archive = join(work, "echo.tar.gz");
  await packPlugin(src, archive);
  const daemon = await startDaemon({
    home,
    port: 0,
    logLevel: "silent",
    containers: true,
    trustOwnProcessOnSocket: true,
  });
  const podman = new PodmanClient({ socketPath: join(home, "run", "podman.sock") });
  try {
    const r = await unixRequest(daemon.socketPath, "POST", "/admin/api/plugins?wait=loaded", readFileSync(archive), {
      "content-type": "application/gzip",
    });
    assert.equal(r.status, 201, r.body);
    const instance = readFileSync(join(home, "instance-id"), "utf8").trim();
    const before = (await podman.listContainers(`${LABEL_INSTANCE}=${instance}`)).map((c) => c.Id);
    assert.equal(before.length, 1);
    let running = true;
    let ok = 0;
    let failed = 0;
    const lane = async () => {
      while (running) {
        try {
          const res = await fetch(`${daemon.url}/plugin/container-echo/api/hello`);
          await res.arrayBuffer();
          if (res.status === 200) ok++;
          else failed++;
        } catch {
          failed++;
        }
      }
    };
    const lanes = [lane(), lane()];
    const result = await daemon.hosts.recycle("test");
    await new Promise((r) => setTimeout(r, 300));
    running = false;
    await Promise.all(lanes);
    assert.equal(result.plugins, 1);
    assert.equal(failed, 0, `failed requests (${ok} ok)`);
    const after = (await podman.listContainers(`${LABEL_INSTANCE}=${instance}`)).map((c) => c.Id);
    assert.deepEqual(after, before, "the same container serves: adopted, not restarted");
    const hello = (await (await fetch(`${daemon.url}/plugin/container-echo/api/hello`)).json()) as { hello: string };
    assert.equal(hello.hello, "from a container");
  } finally {
    await daemon.close();
    await podman.close();
    await removeHomeContainers(home);
    rmSync(work, { recursive: true, force: true });
  }
});

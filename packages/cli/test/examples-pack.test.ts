/**
 * Every example packs with the CLI as it stands (`hecate plugin pack examples/<each>`: the pack builds each one
 * first), the daemon's own checks accept each package, and the in-process and Node container examples install from
 * their CLI-made packages and answer. (examples/container-python's build makes its image from the host's python3
 * with Podman; its install is covered by the daemon's container tests.)
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { cliJson, get, startTestDaemon, type TestDaemon, tempDir } from "./helpers.js";

const EXAMPLES = fileURLToPath(new URL("../../../../examples/", import.meta.url));
let daemon: TestDaemon;
let work: string;
const packed = new Map<string, string>();

before(async () => {
  daemon = await startTestDaemon();
  work = tempDir("examples");
});
after(async () => {
  await daemon?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

test("hecate plugin pack examples/<each>: every example builds, packs and verifies", async () => {
  const examples = readdirSync(EXAMPLES, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  assert.deepEqual(examples, ["container-echo", "container-python", "taskboard"], "a new example is packed here too");
  for (const name of examples) {
    const out = join(work, `${name}.tar.gz`);
    const r = await cliJson(["plugin", "pack", join(EXAMPLES, name), "-o", out], { timeoutMs: 240_000 });
    assert.equal(r.name, name);
    assert.equal(r.file, out);
    const verified = await cliJson(["plugin", "verify", out]);
    assert.equal(verified.ok, true);
    assert.equal(verified.files, r.files);
    packed.set(name, out);
  }
});

test("the CLI-packed taskboard and container-echo install and answer", async () => {
  const taskboard = await cliJson(["plugin", "install", packed.get("taskboard")!], { home: daemon.home });
  assert.equal(taskboard.status, "loaded");
  assert.deepEqual((await get(`${daemon.url}/plugin/taskboard/api/boards`)).status, 200);
  assert.equal((await get(`${daemon.url}/plugin/taskboard/`)).status, 200);

  const echo = await cliJson(["plugin", "install", packed.get("container-echo")!], {
    home: daemon.home,
    timeoutMs: 240_000,
  });
  assert.equal(echo.status, "loaded");
  assert.equal((await get(`${daemon.url}/plugin/container-echo/api/hello`)).body.hello, "from a container");
});

/**
 * Everything under $HECATE_HOME is 0600 (files) / 0700 (dirs) whatever the umask the daemon was started with: a
 * daemon process started with umask 000 installs an in-process plugin with its own event store and a container
 * plugin with a data image; then every file and dir under the home is checked (contents of the plugin-owned mounts,
 * the data image and the socket tmpfs, belong to the plugin and are not walked: their mount roots are checked).
 * The container plugin still reads its package (owned by its uid) and serves.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { packPlugin } from "@hecate/package";
import { mountsUnder } from "../../src/container/host-mounts.js";
import { buildPackage, type ChildDaemon, spawnDaemon, unixRequest } from "../lifecycle/helpers.js";
import { postJson, removeHomeContainers, repoRoot, skipReason } from "./helpers.js";

const skip = skipReason();

/** Every path under `root` with group/other permission bits, not descending into mount points. */
function openToOthers(root: string, mounts: Set<string>): string[] {
  const bad: string[] = [];
  const walk = (p: string) => {
    const st = lstatSync(p);
    if (!st.isSymbolicLink() && st.mode & 0o077) bad.push(`${p} ${(st.mode & 0o7777).toString(8)}`);
    if (st.isDirectory() && !mounts.has(p)) for (const e of readdirSync(p)) walk(join(p, e));
  };
  walk(root);
  return bad;
}

describe("$HECATE_HOME modes under umask 000 (real daemon process, real podman)", { skip }, () => {
  let work: string;
  let home: string;
  let daemon: ChildDaemon | undefined;
  before(() => {
    work = mkdtempSync(join(tmpdir(), "hct-modes-"));
    home = join(work, "home");
  });
  after(async () => {
    if (daemon && daemon.child.exitCode === null) {
      daemon.child.kill("SIGTERM");
      await daemon.exited;
    }
    await removeHomeContainers(home);
    for (const m of mountsUnder(home)) execFileSync("umount", ["-l", m]);
    rmSync(work, { recursive: true, force: true });
  });

  it("every file 0600 and dir 0700 after installs by a daemon started with umask 000", async () => {
    const old = process.umask(0o000);
    try {
      daemon = spawnDaemon(home, { HECATE_CONTAINERS: "1" }); // inherits umask 000
    } finally {
      process.umask(old);
    }
    const url = await daemon.url;
    const socket = join(home, "run", "hecate.sock");
    const inProcess = await buildPackage(work, {
      name: "modes-store",
      version: "1.0.0",
      extra: "export function storeConfig() { return {}; }",
    });
    const r1 = await unixRequest(socket, "POST", "/admin/api/plugins?wait=loaded", readFileSync(inProcess), {
      "content-type": "application/gzip",
    });
    assert.equal(r1.status, 201, r1.body);
    const src = mkdtempSync(join(work, "src-"));
    cpSync(join(repoRoot, "packages/daemon/test/container/fixtures/hostile"), src, { recursive: true });
    const m = JSON.parse(readFileSync(join(src, "manifest.json"), "utf8"));
    m.name = "modes-box";
    m.container = { ...m.container, writable_data: true, data_quota_mb: 8 };
    writeFileSync(join(src, "manifest.json"), JSON.stringify(m));
    await packPlugin(src, join(work, "box.tar.gz"));
    const r2 = await unixRequest(
      socket,
      "POST",
      "/admin/api/plugins?wait=loaded",
      readFileSync(join(work, "box.tar.gz")),
      {
        "content-type": "application/gzip",
      },
    );
    assert.equal(r2.status, 201, r2.body);
    // Both serve: the container reads its 0600/0700 package as its owner; its data dir is usable.
    assert.equal((await fetch(`${url}/plugin/modes-store/api/who`)).status, 200);
    const w = await postJson<{ write: string }>(`${url}/plugin/modes-box/api/probe/write?path=/data/x`);
    assert.equal(w.json.write, "ok", w.text);

    const mounts = new Set(mountsUnder(home));
    assert.ok(mounts.size >= 2, `the socket tmpfs and the data image are mounted: ${[...mounts]}`);
    const bad = openToOthers(home, mounts);
    assert.deepEqual(bad, [], `open to group/others:\n${bad.join("\n")}`);
    const files = execFileSync("find", [home, "-xdev", "-type", "f"], { encoding: "utf8" }).split("\n");
    assert.ok(
      files.some((f) => f.includes("/lifecycle/") && f.endsWith(".sqlite")),
      "the walk covered the lifecycle store",
    );
    assert.ok(
      files.some((f) => f.includes("/plugins/modes-store/store/") && f.endsWith(".sqlite")),
      `the walk covered the plugin's own store:\n${files.join("\n")}`,
    );
  });
});

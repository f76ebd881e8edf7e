/**
 * ESM always (issue 11 point 8): a package.json with {"type":"commonjs"} in the dir above $HECATE_HOME must not
 * change how a plugin's `.js` code loads. Covered twice: a package packed now (the pack adds {"type":"module"}) and
 * a package without any package.json (packed before that, or by another tool): the daemon guarantees it.
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cp, rm } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { packPlugin } from "@hecate/package";
import { extract as tarExtract } from "tar";
import { cliJson, get, startTestDaemon, tempDir } from "./helpers.js";

test('a {"type":"commonjs"} package.json above $HECATE_HOME does not stop a scaffolded ESM plugin', async (t) => {
  const outer = tempDir("esm");
  writeFileSync(join(outer, "package.json"), `${JSON.stringify({ type: "commonjs" })}\n`);
  const home = join(outer, "home");
  mkdirSync(home);
  const daemon = await startTestDaemon({ home });
  t.after(async () => {
    await daemon.stop();
    await rm(outer, { recursive: true, force: true });
  });

  // 1. freshly scaffolded and packed: the package carries {"type":"module"}
  const dir = join(outer, "work", "esm-new");
  await cliJson(["plugin", "new", "esm-new", "--js", "--dir", dir]);
  const packed = await cliJson(["plugin", "pack", dir, "-o", join(outer, "esm-new.tar.gz")]);
  assert.ok(packed.entries.includes("package.json"), JSON.stringify(packed.entries));
  const listing = join(outer, "listing");
  mkdirSync(listing);
  await tarExtract({ file: packed.file, cwd: listing });
  assert.deepEqual(JSON.parse(readFileSync(join(listing, "package.json"), "utf8")), { type: "module" });
  const a = await cliJson(["plugin", "install", packed.file], { home });
  assert.equal(a.status, "loaded", JSON.stringify(a));
  assert.deepEqual((await get(`${daemon.url}/plugin/esm-new/api/hello?name=esm`)).body, {
    hello: "esm",
    plugin: "esm-new",
  });

  // 2. a package with no package.json at all (an older pack): the daemon makes its root an ESM scope
  const oldDir = join(outer, "work", "esm-old");
  await cliJson(["plugin", "new", "esm-old", "--js", "--dir", oldDir]);
  const staged = join(outer, "staged-old");
  for (const e of ["manifest.json", "src", "priv"]) await cp(join(oldDir, e), join(staged, e), { recursive: true });
  const oldArchive = join(outer, "esm-old.tar.gz");
  await packPlugin(staged, oldArchive);
  const b = await cliJson(["plugin", "install", oldArchive], { home });
  assert.equal(b.status, "loaded", JSON.stringify(b));
  assert.deepEqual((await get(`${daemon.url}/plugin/esm-old/api/hello?name=old`)).body, {
    hello: "old",
    plugin: "esm-old",
  });
  // the load verified the package's digests: the scope file lies beside the package dir, not inside it
  assert.deepEqual(JSON.parse(readFileSync(join(home, "plugins", "esm-old", "package.json"), "utf8")), {
    type: "module",
  });
});

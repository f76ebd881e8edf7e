/**
 * Packages with the real binary and a real daemon (scaffolded projects: scaffold.test.ts): signatures (keygen, sign,
 * verify) with a daemon that requires trusted signatures; tampered packages refused at install and at load.
 */
import assert from "node:assert/strict";
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { create as tarCreate, extract as tarExtract } from "tar";
import type { PluginView } from "../src/client.js";
import { cliJson, FIXTURES, get, runCli, startTestDaemon, tempDir } from "./helpers.js";

const ECHO = join(FIXTURES, "echo-plugin");

/** Extracts `archive`, appends to one file and packs the tree again without updating the digests. */
async function tamper(archive: string, out: string, file: string): Promise<void> {
  const dir = `${out}.d`;
  await mkdir(dir, { recursive: true });
  await tarExtract({ file: archive, cwd: dir });
  appendFileSync(join(dir, file), "\n// tampered after signing\n");
  await tarCreate({ gzip: true, file: out, cwd: dir, portable: true }, ["."]);
  await rm(dir, { recursive: true, force: true });
}

test("signatures: a daemon requiring trusted signatures accepts a signed package, refuses unsigned/untrusted/tampered ones", async (t) => {
  const work = tempDir("sign");
  const home = join(work, "home");
  const keys = join(work, "keys");
  const dev = await cliJson(["keygen", "-o", keys, "--name", "dev", "--trust"], { home });
  assert.match(dev.keyId, /^[0-9a-f]{16}$/);
  assert.ok(existsSync(join(home, "trusted-keys", `dev-${dev.keyId}.pub`)));
  assert.equal(readFileSync(dev.privateKey, "utf8").includes("PRIVATE KEY"), true);
  const other = await cliJson(["keygen", "-o", keys, "--name", "other"], { home });
  const daemon = await startTestDaemon({ home, args: ["--require-signature"] });
  t.after(async () => {
    await daemon.stop();
    await rm(work, { recursive: true, force: true });
  });

  // unsigned: refused with the daemon's reason
  const unsigned = await runCli(["plugin", "install", ECHO], { home });
  assert.equal(unsigned.code, 7, unsigned.stderr);
  assert.match(unsigned.stderr, /✗ extraction failed: package is not signed/);
  assert.match(
    unsigned.stderr,
    /error: package is not signed.*\[unsigned\]\n.*listed as failed.*hecate plugin upgrade/,
  );
  // the refused install stays listed as failed with its reason until removed
  const { plugins } = await cliJson<{ plugins: PluginView[] }>(["plugin", "list"], { home });
  const failed = plugins.find((p) => p.name === "echo-fixture")!;
  assert.equal(failed.status, "failed");
  assert.equal(failed.lastError?.code, "unsigned");
  await cliJson(["plugin", "remove", "echo-fixture"], { home });

  // signed by a trusted key: verify says trusted, the daemon loads it
  const signed = join(work, "signed.tar.gz");
  await cliJson(["plugin", "pack", ECHO, "-o", signed, "--key", dev.privateKey]);
  const ok = await cliJson(["plugin", "verify", signed, "--require-signature"], { home });
  assert.deepEqual([ok.signed, ok.trusted, ok.keyId], [true, true, dev.keyId]);
  const installed = await cliJson(["plugin", "install", signed], { home });
  assert.equal(installed.status, "loaded");
  assert.equal((await get(`${daemon.url}/plugin/echo-fixture/api/hello`)).status, 200);
  await cliJson(["plugin", "remove", "echo-fixture"], { home });

  // signed by a key the daemon does not trust
  const untrusted = join(work, "untrusted.tar.gz");
  await cliJson(["plugin", "pack", ECHO, "-o", untrusted]);
  const re = await cliJson(["plugin", "sign", untrusted, "--key", other.privateKey]);
  assert.equal(re.keyId, other.keyId);
  const refused = await runCli(["plugin", "install", untrusted, "--json"], { home });
  assert.equal(refused.code, 7);
  assert.equal(JSON.parse(refused.stdout).error.code, "untrusted_key");
  await cliJson(["plugin", "remove", "echo-fixture"], { home });

  // tampered after signing: verify and install both refuse it, naming the file
  const tampered = join(work, "tampered.tar.gz");
  await tamper(signed, tampered, "src/index.js");
  const v = await runCli(["plugin", "verify", tampered], { home });
  assert.equal(v.code, 7);
  assert.match(v.stderr, /src\/index\.js does not match its SHA-256 digest \[digest_mismatch\]/);
  const i = await runCli(["plugin", "install", tampered], { home });
  assert.equal(i.code, 7, i.stdout + i.stderr);
  assert.match(i.stderr, /src\/index\.js does not match its SHA-256 digest/);
  assert.match(i.stderr, /digest_mismatch/);
  assert.equal((await get(`${daemon.url}/plugin/echo-fixture/api/hello`)).status, 503); // failed: plugin_not_active
  await cliJson(["plugin", "remove", "echo-fixture"], { home });

  // tampered after install: the next load refuses it
  await cliJson(["plugin", "install", signed], { home });
  await cliJson(["plugin", "deactivate", "echo-fixture"], { home });
  appendFileSync(join(home, "plugins", "echo-fixture", "package", "src", "index.js"), "\n// edited in place\n");
  const load = await runCli(["plugin", "activate", "echo-fixture", "--json"], { home });
  assert.notEqual(load.code, 0);
  assert.match(JSON.parse(load.stdout).error.message, /src\/index\.js/);
  assert.equal((await get(`${daemon.url}/plugin/echo-fixture/api/hello`)).status, 503);
});

test("hecate plugin install of a fixed package after a refused one succeeds (no upgrade needed)", async (t) => {
  const work = tempDir("reinstall");
  const home = join(work, "home");
  const daemon = await startTestDaemon({ home });
  t.after(async () => {
    await daemon.stop();
    await rm(work, { recursive: true, force: true });
  });
  const good = join(work, "echo.tar.gz");
  await cliJson(["plugin", "pack", ECHO, "-o", good]);
  const bad = join(work, "tampered.tar.gz");
  await tamper(good, bad, "src/index.js");

  const refused = await runCli(["plugin", "install", bad], { home });
  assert.equal(refused.code, 7, refused.stdout + refused.stderr);
  assert.match(refused.stderr, /digest_mismatch/);
  assert.match(refused.stderr, /listed as failed: fix the package and run `hecate plugin install <source>` again/);
  // installing the same broken package again is another attempt, refused the same way (not 409)
  const twice = await runCli(["plugin", "install", bad, "--json"], { home });
  assert.equal(twice.code, 7, twice.stdout);
  assert.equal(JSON.parse(twice.stdout).error.code, "digest_mismatch");

  const fixed = await cliJson<PluginView>(["plugin", "install", good], { home });
  assert.equal(fixed.status, "loaded");
  assert.equal(fixed.lastError, null);
  assert.equal((await get(`${daemon.url}/plugin/echo-fixture/api/hello`)).status, 200);
  // the history keeps the refused attempts
  const info = await cliJson<{ events: { type: string }[] }>(["plugin", "info", "echo-fixture"], { home });
  const types = info.events.map((e) => e.type);
  assert.equal(types.filter((x) => x === "plugin_installed_v1").length, 3);
  assert.equal(types.filter((x) => x === "plugin_extract_failed_v1").length, 2);
  assert.equal(types.at(-1), "plugin_load_confirmed_v1");
  // now that it runs, installing it again is refused: upgrade is the way
  const again = await runCli(["plugin", "install", good, "--json"], { home });
  assert.notEqual(again.code, 0);
  assert.equal(JSON.parse(again.stdout).error.code, "plugin_already_installed");
});

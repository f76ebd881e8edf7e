/**
 * `hecate plugin config` against a real daemon (`hecate start`) and a real plugin: show, set key=value (values parsed
 * as JSON when they parse), --unset, --json, a refused value (exit 2 with the field errors, nothing stored), secrets
 * never printed; `hecate plugin upgrade --reset-settings` when the settings no longer fit the new schema.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { cliJson, FIXTURES, get, runCli, startTestDaemon, type TestDaemon, tempDir } from "./helpers.js";

const NAME = "settings-fixture";
const SECRET = `tok-${Date.now().toString(36)}-do-not-print`;
let d: TestDaemon;

before(async () => {
  d = await startTestDaemon();
  const r = await runCli(["plugin", "install", join(FIXTURES, "settings-plugin")], { home: d.home });
  assert.equal(r.code, 0, r.stderr);
});
after(async () => {
  await d?.stop();
});

const cli = (args: string[]) => runCli(["plugin", "config", NAME, ...args], { home: d.home });

test("plugin config: show, set (JSON-parsed values), refuse, unset; the secret is never printed", async () => {
  const shown = await cli([]);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /greeting\s+\(not set; default "hi"\)/);
  assert.match(shown.stdout, /token\s+\(secret, not set\)/);

  const set = await cliJson(
    ["plugin", "config", NAME, "limit=5", "verbose=true", "greeting=hello there", 'tags=["a","b"]', `token=${SECRET}`],
    { home: d.home },
  );
  assert.deepEqual(set.values, { limit: 5, verbose: true, greeting: "hello there", tags: ["a", "b"] });
  assert.deepEqual(set.secrets, { token: { set: true } });
  assert.equal(set.applied, "live");
  const seen = await get(`${d.url}/plugin/${NAME}/api/settings`);
  assert.equal(seen.body.changes, 1);
  assert.equal(seen.body.settings.token, createHash("sha256").update(SECRET).digest("hex"));
  assert.equal(seen.body.settings.limit, 5);

  const human = await cli([]);
  assert.match(human.stdout, /limit\s+5/);
  assert.match(human.stdout, /token\s+\*{8} \(secret, set\)/);
  assert.ok(!human.stdout.includes(SECRET));

  // a quoted JSON string stays a string: "5" is not an integer
  const bad = await cli(["limit=0", "bogus=1", 'greeting="ok"', 'verbose="true"']);
  assert.equal(bad.code, 2, bad.stdout + bad.stderr);
  assert.match(bad.stderr, /invalid settings/);
  for (const f of ["limit", "bogus", "verbose"]) assert.ok(bad.stderr.includes(f), `${f} in ${bad.stderr}`);
  const badJson = await cliJson(["plugin", "config", NAME, "limit=abc"], { home: d.home, expectCode: 2 });
  assert.equal(badJson.error.code, "invalid_settings");
  assert.deepEqual(badJson.error.details, [{ field: "limit", message: "must be integer" }]);
  const unchanged = await cliJson(["plugin", "config", NAME], { home: d.home });
  assert.deepEqual(unchanged.values, { limit: 5, verbose: true, greeting: "hello there", tags: ["a", "b"] });

  const unset = await cliJson(["plugin", "config", NAME, "--unset", "verbose", "--unset", "token"], { home: d.home });
  assert.deepEqual(unset.values, { limit: 5, greeting: "hello there", tags: ["a", "b"] });
  assert.deepEqual(unset.secrets, { token: { set: false } });
  assert.equal((await runCli(["plugin", "config", NAME, "novalue"], { home: d.home })).code, 2);
  assert.ok(!d.output.join("\n").includes(SECRET), "the secret is in no daemon log line");
});

test("plugin upgrade: refused when the settings no longer fit, --reset-settings clears them", async () => {
  const v2 = tempDir("settings-v2");
  cpSync(join(FIXTURES, "settings-plugin"), v2, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(v2, "manifest.json"), "utf8"));
  manifest.version = "2.0.0";
  manifest.settings.properties.limit.maximum = 3;
  writeFileSync(join(v2, "manifest.json"), JSON.stringify(manifest, null, 2));
  await cliJson(["plugin", "config", NAME, "limit=5"], { home: d.home });

  const refused = await runCli(["plugin", "upgrade", v2, "--json"], { home: d.home });
  assert.equal(refused.code, 7, refused.stdout + refused.stderr);
  const err = JSON.parse(refused.stdout).error;
  assert.equal(err.code, "settings_incompatible");
  assert.deepEqual(err.details, [{ field: "limit", message: "must be <= 3" }]);
  assert.match(err.message, /--reset-settings/);

  const upgraded = await cliJson(["plugin", "upgrade", v2, "--reset-settings"], { home: d.home });
  assert.equal(upgraded.version, "2.0.0");
  assert.deepEqual((await cliJson(["plugin", "config", NAME], { home: d.home })).values, {});
  rmSync(v2, { recursive: true, force: true });
});

/**
 * Errors say what to do, in the user's words (real daemon, real CLI): lifecycle refusals name the plugin's state and
 * the `hecate` command that helps (never `deactivate_plugin_v1 on plugin-x rejected`), a deactivated plugin's URLs
 * answer 503 plugin_not_active instead of a bare 404, and a wrong method on a plugin route answers 405 with Allow.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { FIXTURES, get, runCli, startTestDaemon, type TestDaemon } from "./helpers.js";

const ECHO = join(FIXTURES, "echo-plugin");
const NAME = "echo-fixture";
let daemon: TestDaemon;

before(async () => {
  daemon = await startTestDaemon();
});
after(async () => {
  await daemon?.stop();
});

/** Runs the CLI expecting `code`; returns stderr (the human message), checked to carry no internal wording. */
async function refused(args: string[], code: number): Promise<string> {
  const r = await runCli(args, { home: daemon.home });
  assert.equal(r.code, code, `hecate ${args.join(" ")}: ${r.stdout}\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /_v1|rejected|plugin-echo/, r.stderr);
  return r.stderr;
}

test("lifecycle refusals, a deactivated plugin's URLs and wrong methods tell the user what to do", async () => {
  const home = daemon.home;
  const api = `${daemon.url}/plugin/${NAME}/api`;
  assert.equal((await runCli(["plugin", "install", ECHO], { home })).code, 0);
  assert.equal((await get(`${api}/hello`)).status, 200);

  // wrong method on a plugin route: 405 + Allow
  const post = await fetch(`${api}/hello`, { method: "POST" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD");
  assert.equal(((await post.json()) as { error: { code: string } }).error.code, "method_not_allowed");

  assert.match(
    await refused(["plugin", "install", ECHO], 6),
    /plugin echo-fixture is already installed; to replace it use: hecate plugin upgrade/,
  );
  assert.match(
    await refused(["plugin", "activate", NAME], 6),
    /plugin echo-fixture is already active \(it is loaded\); to restart it: hecate plugin deactivate echo-fixture, then hecate plugin activate echo-fixture/,
  );

  assert.equal((await runCli(["plugin", "deactivate", NAME], { home })).code, 0);
  const expected =
    "plugin echo-fixture is not active (it is deactivated); activate it with: hecate plugin activate echo-fixture";
  assert.ok((await refused(["plugin", "deactivate", NAME], 6)).includes(expected));
  // its URLs say so (API and static), instead of a bare 404
  for (const url of [`${api}/hello`, `${daemon.url}/plugin/${NAME}/`]) {
    const r = await get(url);
    assert.equal(r.status, 503, url);
    assert.deepEqual(r.body.error, { code: "plugin_not_active", message: expected });
  }

  assert.equal((await runCli(["plugin", "activate", NAME], { home })).code, 0);
  assert.equal((await get(`${api}/hello`)).status, 200);

  assert.equal((await runCli(["plugin", "remove", NAME], { home })).code, 0);
  assert.equal((await get(`${api}/hello`)).status, 404); // removed: not installed any more, a plain 404
  const notInstalled =
    /plugin (echo-fixture|nope) is not installed; install it with: hecate plugin install .*hecate plugin list/;
  assert.match(await refused(["plugin", "activate", NAME], 5), notInstalled);
  assert.match(await refused(["plugin", "info", "nope"], 5), notInstalled);
  assert.match(await refused(["plugin", "deactivate", "nope"], 5), notInstalled);
});

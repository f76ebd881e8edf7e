/**
 * A registry with htpasswd auth (bcrypt): an install without credentials is refused with a clear error, works once
 * `hecate registry login` stored them (0600), a wrong password is refused; the password never appears in the daemon's
 * log, its events (SSE, the events API, the lifecycle store on disk), any API answer or the CLI's output.
 * The install goes through the CLI (its progress bar on stderr).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type ChildDaemon, spawnDaemon, unixRequest } from "../lifecycle/helpers.js";
import { removeHomeContainers, repoRoot, skipReason } from "./helpers.js";
import {
  buildAndPush,
  ensureBaseImage,
  followEvents,
  imageManifest,
  removeLocalImages,
  type SseFollower,
  startRegistry,
  type TestRegistry,
} from "./registry-helpers.js";

const skip = skipReason();
const NAME = "oci-private";
const CLI = join(repoRoot, "packages/cli/dist/src/main.js");
const USER = "hecate-ci";
const PASSWORD = `pw-${randomBytes(12).toString("hex")}`;
const WRONG = `wrong-${randomBytes(12).toString("hex")}`;

function cli(home: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, HECATE_HOME: home }, timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
    p.stdin?.end(input ?? "");
  });
}

/** Every file under `dir`, as bytes (the lifecycle store: SQLite + WAL). */
function filesUnder(dir: string): Buffer[] {
  const out: Buffer[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile()) out.push(readFileSync(join(e.parentPath ?? e.path, e.name)));
  return out;
}

describe("a registry with auth (htpasswd, bcrypt)", { skip, timeout: 240_000 }, () => {
  let registry: TestRegistry;
  let work: string;
  let home: string;
  let daemon: ChildDaemon;
  let sse: SseFollower;
  let ref: string;
  const answers: string[] = [];
  const api = async (method: string, path: string, body?: unknown) => {
    const r = await unixRequest(
      daemon.socketPath,
      method,
      path,
      body === undefined ? undefined : JSON.stringify(body),
      body === undefined ? {} : { "content-type": "application/json" },
    );
    answers.push(r.body);
    return r;
  };

  before(async () => {
    await ensureBaseImage();
    registry = await startRegistry({ username: USER, password: PASSWORD });
    work = mkdtempSync(join(tmpdir(), "hct-oci-auth-"));
    home = join(work, "home");
    await buildAndPush(`${registry.host}/private/echo:1`, "1.0.0", imageManifest(NAME, "1.0.0"), {
      creds: { username: USER, password: PASSWORD },
    });
    ref = `oci://${registry.host}/private/echo:1`;
    daemon = spawnDaemon(home, { HECATE_CONTAINERS: "1", HECATE_LOG_LEVEL: "debug" });
    await daemon.url;
    sse = await followEvents(daemon.socketPath);
  });

  after(async () => {
    sse?.close();
    if (daemon && daemon.child.exitCode === null) {
      daemon.child.kill("SIGTERM");
      await daemon.exited;
    }
    await removeHomeContainers(home);
    removeLocalImages(registry.host);
    await registry.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("refused without credentials, installed with them (CLI login + install with a progress bar), refused with a wrong password; the password is nowhere", async () => {
    const anon = await api("POST", "/admin/api/plugins", { oci: ref });
    assert.equal(anon.status, 422, anon.body);
    assert.equal(anon.json().error.code, "unauthorized");
    assert.match(anon.json().error.message, /requires credentials: set them with `hecate registry login/);

    const login = await cli(home, ["registry", "login", registry.host, "-u", USER, "--json"], `${PASSWORD}\n`);
    assert.equal(login.code, 0, login.stderr);
    const shown = JSON.parse(login.stdout);
    assert.deepEqual(shown, {
      registry: registry.host,
      username: USER,
      passwordSet: true,
      insecure: false,
      scheme: "http",
    });
    assert.equal(statSync(join(home, "registries.json")).mode & 0o777, 0o600);
    const listed = await api("GET", "/admin/api/registries");
    assert.equal(listed.json().registries[0].passwordSet, true);

    const install = await cli(home, ["plugin", "install", ref]);
    assert.equal(install.code, 0, `${install.stdout}\n${install.stderr}`);
    assert.match(install.stderr, /⇣ pulling 127\.0\.0\.1:\d+\/private\/echo@sha256:[a-f0-9]{64}/);
    assert.match(install.stderr, /⇣ \[#{24}\] \d+\/\d+ layers/, "the progress bar reaches 100%");
    assert.match(install.stderr, /✓ image pulled/);
    assert.match(install.stdout, new RegExp(`${NAME}@1\\.0\\.0 loaded`));
    const hello = await fetch(`${await daemon.url}/plugin/${NAME}/api/x`);
    assert.equal(hello.status, 200);
    await hello.arrayBuffer();
    const list = await cli(home, ["plugin", "list"]);
    assert.match(list.stdout, /RUNNING/);

    // a wrong password: refused with the registry's answer, the running version untouched
    const wrong = await api("PUT", `/admin/api/registries/${registry.host}`, { username: USER, password: WRONG });
    assert.equal(wrong.status, 200, wrong.body);
    const up = await api("POST", `/admin/api/plugins/${NAME}/upgrade`, { oci: ref });
    assert.equal(up.status, 422, up.body);
    assert.equal(up.json().error.code, "unauthorized");
    assert.match(up.json().error.message, /refused the credentials/);
    assert.equal((await api("GET", `/admin/api/plugins/${NAME}`)).json().status, "loaded");
    const logout = await cli(home, ["registry", "logout", registry.host, "--json"]);
    assert.equal(logout.code, 0, logout.stderr);
    assert.equal(JSON.parse(logout.stdout).passwordSet, false);

    // nowhere: daemon log, SSE, events, rejections, API answers, CLI output, the lifecycle store on disk
    answers.push((await api("GET", `/admin/api/plugins/${NAME}/events`)).body);
    answers.push((await api("GET", "/admin/api/rejections")).body);
    answers.push((await api("GET", `/admin/api/plugins/${NAME}`)).body);
    const texts: [string, string][] = [
      ["daemon log", daemon.output()],
      ["SSE", sse.text()],
      ["API answers", answers.join("\n")],
      ["CLI", [login, install, list, logout].map((r) => r.stdout + r.stderr).join("\n")],
    ];
    assert.ok(daemon.output().includes("lifecycle event"), "the daemon's debug log was captured");
    for (const secret of [PASSWORD, WRONG]) {
      for (const [where, text] of texts) assert.ok(!text.includes(secret), `the password is not in the ${where}`);
      for (const bytes of filesUnder(join(home, "lifecycle")))
        assert.equal(bytes.indexOf(secret), -1, "the password is not in the lifecycle store");
    }
  });
});

/**
 * The real `hecate` binary against a real daemon (started by `hecate start` on a temp home and an ephemeral port):
 * install, list (JSON + table), info, deactivate, activate, logs (+ --follow), remove, TCP auth, exit codes.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cp, rm } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import type { LogLine, PluginView, StoredEvent } from "../src/client.js";
import { CLI, cliJson, FIXTURES, get, runCli, startTestDaemon, type TestDaemon, tempDir } from "./helpers.js";

const ECHO = join(FIXTURES, "echo-plugin");
let daemon: TestDaemon;

before(async () => {
  daemon = await startTestDaemon();
});
after(async () => {
  await daemon?.stop();
});

test("--version, --help and usage errors", async () => {
  const v = await runCli(["--version"]);
  assert.equal(v.code, 0);
  assert.match(v.stdout.trim(), /^\d+\.\d+\.\d+$/);
  const help = await runCli(["plugin", "install", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: hecate plugin install/);
  assert.match((await runCli(["--help"])).stdout, /Exit codes:/);
  const bad = await runCli(["plugin", "frobnicate"]);
  assert.equal(bad.code, 2, bad.stderr);
  const missing = await runCli(["plugin", "info", "--json"]);
  assert.equal(missing.code, 2);
  assert.equal(JSON.parse(missing.stdout).error.code, "missingArgument");
});

test("daemon unreachable -> exit 3 with a clear message", async () => {
  const home = tempDir("nodaemon");
  try {
    const r = await runCli(["plugin", "list"], { home });
    assert.equal(r.code, 3);
    assert.match(r.stderr, /cannot reach the hecate daemon .*hecate\.sock.*hecate start/);
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});

test("install (progress, URL), list, info, deactivate, activate, logs, remove", async () => {
  const home = daemon.home;
  // install a project dir: the CLI packs it, uploads it and follows the lifecycle over SSE
  const installed = await runCli(["plugin", "install", ECHO], { home });
  assert.equal(installed.code, 0, installed.stderr);
  const pluginUrl = `${daemon.url}/plugin/echo-fixture/`;
  assert.match(installed.stdout, new RegExp(`echo-fixture@1\\.0\\.0 loaded: ${pluginUrl.replaceAll(".", "\\.")}`));
  for (const step of ["uploading", "installed", "extracted", "activated", "loaded"]) {
    assert.match(installed.stderr, new RegExp(step), `progress shows ${step}:\n${installed.stderr}`);
  }
  assert.deepEqual((await get(`${pluginUrl}api/hello`)).body, { hello: "echo-fixture", version: "1.0.0" });

  // installing it again is a conflict
  const again = await runCli(["plugin", "install", ECHO, "--json"], { home });
  assert.equal(again.code, 6);
  assert.equal(JSON.parse(again.stdout).error.code, "plugin_already_installed");

  const list = await cliJson<{ plugins: PluginView[] }>(["plugin", "list"], { home });
  const row = list.plugins.find((p) => p.name === "echo-fixture")!;
  assert.equal(row.status, "loaded");
  assert.equal(row.type, "in_process");
  assert.ok(row.routes.some((r) => r.path.endsWith("/hello")));
  const table = await runCli(["plugin", "list"], { home });
  assert.equal(table.code, 0);
  assert.match(table.stdout, /NAME.*VERSION.*TYPE.*STATUS.*ROUTES.*LAST ERROR/);
  assert.match(table.stdout, /echo-fixture.*1\.0\.0.*in_process.*loaded/);

  const info = await cliJson(["plugin", "info", "echo-fixture"], { home });
  assert.equal(info.manifest.name, "echo-fixture");
  const types = info.events.map((e: StoredEvent) => e.type);
  assert.ok(types.includes("plugin_installed_v1") && types.includes("plugin_activated_v1"), types.join(","));
  const infoText = await runCli(["plugin", "info", "echo-fixture"], { home });
  assert.match(infoText.stdout, /history:\n.*plugin_installed_v1/s);

  const deactivated = await cliJson(["plugin", "deactivate", "echo-fixture"], { home });
  assert.equal(deactivated.status, "deactivated");
  assert.equal((await get(`${pluginUrl}api/hello`)).status, 503); // plugin_not_active (test/user-errors.test.ts)
  const twice = await runCli(["plugin", "deactivate", "echo-fixture"], { home });
  assert.equal(twice.code, 6);
  assert.match(twice.stderr, /plugin_not_activated/);

  const activated = await runCli(["plugin", "activate", "echo-fixture"], { home });
  assert.equal(activated.code, 0, activated.stderr);
  assert.match(activated.stdout, /echo-fixture@1\.0\.0 loaded/);
  assert.equal((await get(`${pluginUrl}api/hello`)).status, 200);

  // upgrade from a project dir with a new version: the route answers from it
  const v2 = join(tempDir("v2"), "echo-plugin");
  await cp(ECHO, v2, { recursive: true });
  const manifestFile = join(v2, "manifest.json");
  writeFileSync(manifestFile, readFileSync(manifestFile, "utf8").replace('"1.0.0"', '"1.1.0"'));
  const upgraded = await runCli(["plugin", "upgrade", v2], { home });
  await rm(join(v2, ".."), { recursive: true, force: true });
  assert.equal(upgraded.code, 0, upgraded.stderr);
  assert.match(upgraded.stdout, /echo-fixture@1\.1\.0 loaded/);
  assert.deepEqual((await get(`${pluginUrl}api/hello`)).body, { hello: "echo-fixture", version: "1.1.0" });

  // logs: a throwing handler leaves a log line; --follow streams the next one as it happens
  assert.equal((await get(`${pluginUrl}api/boom`)).status, 500);
  const logs = await cliJson<{ logs: LogLine[] }>(["plugin", "logs", "echo-fixture"], { home });
  assert.ok(
    logs.logs.some((l) => l.plugin === "echo-fixture" && /boom requested by the test/.test(l.msg)),
    JSON.stringify(logs),
  );
  const human = await runCli(["plugin", "logs", "echo-fixture", "-n", "5"], { home });
  assert.match(human.stdout, /ERROR \[echo-fixture\] .*boom requested by the test/);

  // --follow --tail 1: the first line (the last boom) proves the stream is open; then a new one must arrive live
  const follower = spawn(
    process.execPath,
    [CLI, "plugin", "logs", "echo-fixture", "--follow", "--tail", "1", "--json"],
    {
      env: { ...process.env, HECATE_HOME: home },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const followedLines: LogLine[] = [];
  let onLine: (() => void) | undefined;
  createInterface({ input: follower.stdout! }).on("line", (line) => {
    followedLines.push(JSON.parse(line));
    onLine?.();
  });
  const nLines = (n: number) =>
    new Promise<void>((resolve) => {
      onLine = () => followedLines.length >= n && resolve();
      onLine();
    });
  await nLines(1);
  assert.equal((await get(`${pluginUrl}api/boom?live=1`)).status, 500);
  await nLines(2);
  assert.equal(followedLines[1].plugin, "echo-fixture");
  assert.match(followedLines[1].msg, /boom requested by the test/);
  const exited = new Promise<number | null>((r) => follower.once("exit", (code) => r(code)));
  follower.kill("SIGINT");
  assert.equal(await exited, 0);

  const removed = await cliJson(["plugin", "remove", "echo-fixture", "--purge-data"], { home });
  assert.deepEqual(removed, { name: "echo-fixture", removed: true, purged: true });
  assert.equal((await get(`${pluginUrl}api/hello`)).status, 404);
  // a removed plugin is either gone (404) or shown with status "removed"; never as installed
  const gone = await runCli(["plugin", "info", "echo-fixture", "--json"], { home });
  if (gone.code === 0) assert.equal(JSON.parse(gone.stdout).status, "removed");
  else {
    assert.equal(gone.code, 5);
    assert.equal(JSON.parse(gone.stdout).error.code, "plugin_not_found");
  }
  const listed = await cliJson<{ plugins: PluginView[] }>(["plugin", "list"], { home });
  assert.ok(listed.plugins.every((p) => p.name !== "echo-fixture" || p.status === "removed"));
  const missing = await runCli(["plugin", "info", "never-installed", "--json"], { home });
  assert.equal(missing.code, 5);
  assert.equal(JSON.parse(missing.stdout).error.code, "plugin_not_found");
});

test("over TCP: --url with the token file works, a wrong token exits 4", async () => {
  const ok = await cliJson<{ plugins: unknown[] }>(["plugin", "list", "--url", daemon.adminUrl], { home: daemon.home });
  assert.ok(Array.isArray(ok.plugins));
  const bad = await runCli(["plugin", "list", "--url", daemon.adminUrl, "--token", "wrong", "--json"], {
    home: daemon.home,
  });
  assert.equal(bad.code, 4);
  assert.equal(JSON.parse(bad.stdout).error.code, "unauthorized");
  // from another home (no run/url): plugin URLs are on the plugin port, learnt from the admin API, not the admin's
  const elsewhere = tempDir("remote");
  try {
    const tcp = ["--url", daemon.adminUrl, "--token", daemon.token, "--home", elsewhere];
    const installed = await cliJson<PluginView & { url: string }>(["plugin", "install", ECHO, ...tcp]);
    assert.equal(installed.url, `${daemon.url}/plugin/echo-fixture/`);
    assert.equal((await get(`${installed.url}api/hello`)).status, 200);
    await cliJson(["plugin", "remove", "echo-fixture", ...tcp]);
  } finally {
    await rm(elsewhere, { recursive: true, force: true });
  }
});

test("the daemon serves this package's OpenAPI document, and it describes every admin call the CLI makes", async () => {
  const doc = await get(`${daemon.adminUrl}/admin/api/openapi.json`, { authorization: `Bearer ${daemon.token}` });
  assert.equal(doc.status, 200);
  assert.equal(doc.body.openapi, "3.1.0");
  const paths = doc.body.paths as Record<string, Record<string, unknown>>;
  for (const [path, method] of [
    ["/admin/api/plugins", "get"],
    ["/admin/api/plugins", "post"],
    ["/admin/api/plugins/{name}", "get"],
    ["/admin/api/plugins/{name}", "delete"],
    ["/admin/api/plugins/{name}/events", "get"],
    ["/admin/api/plugins/{name}/activate", "post"],
    ["/admin/api/plugins/{name}/deactivate", "post"],
    ["/admin/api/plugins/{name}/upgrade", "post"],
    ["/admin/api/plugins/{name}/logs", "get"],
    ["/admin/api/events", "get"],
  ]) {
    assert.ok(paths[path]?.[method], `${method.toUpperCase()} ${path} is described`);
  }
});

test("hecate start: SIGTERM stops the daemon gracefully (exit 0; socket, pid and URL files removed)", async () => {
  const home = tempDir("stop");
  try {
    const own = await startTestDaemon({ home });
    const run = join(home, "run");
    for (const f of ["url", "admin-url", "hecate.sock", "hecate.pid"])
      assert.ok(existsSync(join(run, f)), `${f} exists while running`);
    assert.equal(readFileSync(join(run, "url"), "utf8").trim(), own.url);
    assert.equal(readFileSync(join(run, "admin-url"), "utf8").trim(), own.adminUrl);
    assert.ok(!own.output.join("\n").includes(own.token), "--json output must not carry the admin token");
    assert.equal(await own.stop(), 0);
    for (const f of ["url", "admin-url", "hecate.sock", "hecate.pid"])
      assert.equal(existsSync(join(run, f)), false, `${f} removed`);
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});

test("hecate start (interactive): prints the plugin URL, the admin URL and the admin page's login link", async () => {
  const home = tempDir("pretty");
  const child = spawn(process.execPath, [CLI, "start", "--port", "0", "--log-level", "warn"], {
    env: { ...process.env, HECATE_HOME: home },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  try {
    let out = "";
    const link = await new Promise<string>((resolve, reject) => {
      child.stdout.on("data", (c: Buffer) => {
        out += c.toString();
        const m = /hecate admin page: (\S+)/.exec(out);
        if (m) resolve(m[1]);
      });
      exited.then((code) => reject(new Error(`hecate start exited ${code}:\n${out}`)));
    });
    const plugins = /hecate listening on (\S+)/.exec(out)?.[1];
    const admin = /hecate admin on (\S+)/.exec(out)?.[1];
    assert.ok(plugins && admin && plugins !== admin, out);
    const token = readFileSync(join(home, "run", "admin.token"), "utf8").trim();
    assert.equal(link, `${admin}/admin/login?token=${token}`);
    const login = await fetch(link, { redirect: "manual" });
    assert.equal(login.status, 303);
    assert.match(login.headers.get("set-cookie") ?? "", /hecate_admin=/);
  } finally {
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
    await rm(home, { recursive: true, force: true });
  }
});

test("hecate start --admin-port shared: one port for plugins and admin (run/url = run/admin-url)", async () => {
  const home = tempDir("shared");
  try {
    const own = await startTestDaemon({ home, args: ["--admin-port", "shared"] });
    try {
      assert.equal(own.adminUrl, own.url);
      assert.equal(readFileSync(join(home, "run", "admin-url"), "utf8").trim(), own.url);
      const ok = await cliJson<{ plugins: unknown[] }>(["plugin", "list", "--url", own.url], { home });
      assert.ok(Array.isArray(ok.plugins));
    } finally {
      assert.equal(await own.stop(), 0);
    }
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});

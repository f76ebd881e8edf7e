/**
 * `hecate plugin dev` (issue 12 point 4) with the real CLI and a real daemon: a save is served within 2 s, a compile
 * error (TypeScript) or a load error (JavaScript) is printed while the last good version keeps serving, fixing it
 * resumes, the plugin's log lines are followed, Ctrl-C leaves the plugin installed and `--remove` removes it.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, type TestContext, test } from "node:test";
import type { PluginView } from "../src/client.js";
import { CLI, cliJson, get, runCli, startTestDaemon, type TestDaemon, tempDir } from "./helpers.js";
import { newProject } from "./projects.js";

let daemon: TestDaemon;
let work: string;
before(async () => {
  work = tempDir("dev");
  daemon = await startTestDaemon();
});
after(async () => {
  await daemon?.stop();
  await rm(work, { recursive: true, force: true });
});

interface Dev {
  child: ChildProcess;
  /** stdout + stderr so far */
  output(): string;
  /** Resolves once the output matches `re` (after `from` characters), rejects after `ms`. */
  waitFor(re: RegExp, ms?: number, from?: number): Promise<void>;
  exited: Promise<number | null>;
}

function startDev(dir: string, args: string[] = []): Dev {
  const child = spawn(process.execPath, [CLI, "plugin", "dev", dir, ...args], {
    env: { ...process.env, HECATE_HOME: daemon.home },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  const waiters = new Set<() => void>();
  const onData = (d: Buffer) => {
    text += d.toString("utf8");
    for (const w of waiters) w();
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    output: () => text,
    exited,
    waitFor(re, ms = 30_000, from = 0) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (re.test(text.slice(from))) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no ${re} within ${ms} ms in the dev output:\n${text}`));
        }, ms);
        waiters.add(check);
        check();
      });
    },
  };
}

/** Polls `url` until its JSON body's `field` equals `want`: the ms it took, or null after 15 s. */
async function servedAfter(url: string, field: string, want: unknown): Promise<number | null> {
  const started = Date.now();
  while (Date.now() - started < 15_000) {
    const r = await get(url).catch(() => ({ status: 0, body: null }));
    if (r.status === 200 && r.body?.[field] === want) return Date.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return null;
}

async function served(dev: Dev, url: string, field: string, want: unknown): Promise<number> {
  const ms = await servedAfter(url, field, want);
  assert.ok(ms !== null, `${url} never answered ${field}=${JSON.stringify(want)}; dev:\n${dev.output()}`);
  return ms;
}

const BUDGET_MS = 2000;
const SAVES = 5;

/**
 * Saves `edit(label)` and checks the route answers it within 2 s. The cores may be shared with other test files and
 * runs (save -> served is ~0.5 s on an idle machine; a CPU-starved one stretches every step, the compile and the
 * daemon's swap alike, to several seconds), so a late answer is retried with a fresh edit after a pause, up to
 * 5 saves: one must make it. Every timing is printed. Returns the label served last.
 */
async function editServedInTime(
  t: TestContext,
  dev: Dev,
  file: string,
  edit: (label: string) => string,
  url: string,
): Promise<string> {
  const timings: string[] = [];
  for (let i = 1; i <= SAVES; i++) {
    if (i > 1) await new Promise((resolve) => setTimeout(resolve, 500));
    const label = `edit ${i}`;
    const mark = dev.output().length;
    writeFileSync(file, edit(label));
    const ms = await served(dev, url, "hello", label);
    await dev.waitFor(/swapped in/, 15_000, mark);
    timings.push(`${ms} ms`);
    if (ms <= BUDGET_MS) {
      t.diagnostic(`save -> served: ${timings.join(", ")}`);
      return label;
    }
  }
  assert.fail(`no save of ${SAVES} was served within ${BUDGET_MS} ms (${timings.join(", ")}); dev:\n${dev.output()}`);
}

/** The route answers `want` every time while the dev loop handles a broken save. */
async function keepsServing(url: string, field: string, want: unknown, until: Promise<void>): Promise<number> {
  let done = false;
  until.finally(() => {
    done = true;
  });
  let n = 0;
  while (!done) {
    const r = await get(url);
    assert.equal(r.status, 200);
    assert.equal(r.body[field], want);
    n++;
  }
  await until;
  return n;
}

test("TypeScript: save -> served within 2 s; a compile error keeps the old version; logs; Ctrl-C leaves it", async (t) => {
  const dir = join(work, "devloop");
  await newProject(dir, "devloop");
  const src = join(dir, "src/index.ts");
  const original = readFileSync(src, "utf8");
  const url = `${daemon.url}/plugin/devloop/api/hello`;

  const dev = startDev(dir);
  t.after(() => dev.child.kill("SIGKILL"));
  await dev.waitFor(/swapped in/, 60_000);
  assert.equal((await get(url)).body.hello, "world");

  // 1. an edit is served within 2 s of saving
  const edited = await editServedInTime(
    t,
    dev,
    src,
    (label) => original.replace('req.query.name ?? "world"', `"${label}"`),
    url,
  );

  // 2. a syntax error: printed, and the old version keeps answering throughout
  let mark = dev.output().length;
  writeFileSync(
    src,
    original
      .replace('req.query.name ?? "world"', '"broken"')
      .replace("export function init(", "export function init(("),
  );
  const reported = dev.waitFor(/error TS\d+[\s\S]*compile failed .*the last good version keeps serving/, 10_000, mark);
  const probes = await keepsServing(url, "hello", edited, reported);
  assert.match(dev.output().slice(mark), /src\/index\.ts[(:]\d+/);
  t.diagnostic(`served the old version ${probes} times while the broken save was compiled and reported`);
  assert.equal((await get(url)).body.hello, edited);

  // 3. fixing it resumes; a route that logs: its line is followed in the dev terminal
  mark = dev.output().length;
  const fixed = original
    .replace('req.query.name ?? "world"', '"fixed"')
    .replace(
      "  return [\n",
      '  return [\n    { method: "GET", path: "/boom", handler: () => { throw new Error("boom from the dev test"); } },\n',
    );
  writeFileSync(src, fixed);
  t.diagnostic(`fix -> served: ${await served(dev, url, "hello", "fixed")} ms`);
  assert.equal((await get(`${daemon.url}/plugin/devloop/api/boom`)).status, 500);
  await dev.waitFor(/\[devloop\].*boom from the dev test/, 10_000, mark);

  // 4. Ctrl-C: the last version stays installed and serving
  dev.child.kill("SIGINT");
  assert.equal(await dev.exited, 0, dev.output());
  assert.match(dev.output(), /devloop stays installed/);
  // the loop's own timings (compile, swap) for the record
  t.diagnostic(
    dev
      .output()
      .match(/\[dev\] (compiled|swapped in|compile failed) \([^)]*\)/g)
      ?.join("; ") ?? "",
  );
  const view = await cliJson<PluginView>(["plugin", "info", "devloop"], { home: daemon.home });
  assert.equal(view.status, "loaded");
  assert.equal((await get(url)).body.hello, "fixed");

  // 5. again with --remove: it upgrades the installed plugin, and Ctrl-C removes it
  const again = startDev(dir, ["--remove"]);
  t.after(() => again.child.kill("SIGKILL"));
  await again.waitFor(/swapped in/, 60_000);
  again.child.kill("SIGINT");
  assert.equal(await again.exited, 0, again.output());
  assert.match(again.output(), /devloop removed/);
  assert.equal((await get(url)).status, 404);
});

test("JavaScript: a load error is printed while the old version serves; fixing it resumes", async (t) => {
  const dir = join(work, "devjs");
  await newProject(dir, "devjs", ["--js"]);
  const src = join(dir, "src/index.js");
  const original = readFileSync(src, "utf8");
  const url = `${daemon.url}/plugin/devjs/api/hello`;

  const dev = startDev(dir);
  t.after(() => dev.child.kill("SIGKILL"));
  await dev.waitFor(/swapped in/, 60_000);
  const edited = await editServedInTime(
    t,
    dev,
    src,
    (label) => original.replace('req.query.name ?? "world"', `"${label}"`),
    url,
  );

  // a syntax error: the pack's import check refuses it before anything is uploaded
  let mark = dev.output().length;
  writeFileSync(src, `${original.replace('req.query.name ?? "world"', '"broken"')}\nexport function (\n`);
  let reported = dev.waitFor(/not valid JavaScript[\s\S]*the last good version keeps serving/, 15_000, mark);
  await keepsServing(url, "hello", edited, reported);
  assert.match(dev.output().slice(mark), /src\/index\.js is not valid JavaScript.*\[unparsable_module\]/);

  // a module that parses but throws while loading: the daemon's load error
  mark = dev.output().length;
  writeFileSync(src, `${original}\nthrow new Error("boom at import");\n`);
  reported = dev.waitFor(/failed to load[\s\S]*the last good version keeps serving/, 15_000, mark);
  await keepsServing(url, "hello", edited, reported);
  assert.match(dev.output().slice(mark), /failed to load \(import\): boom at import/);

  writeFileSync(src, original.replace('req.query.name ?? "world"', '"js fixed"'));
  t.diagnostic(`fix -> served: ${await served(dev, url, "hello", "js fixed")} ms`);
  dev.child.kill("SIGINT");
  assert.equal(await dev.exited, 0, dev.output());

  const missing = await runCli(["plugin", "dev", join(work, "nope"), "--json"], { home: daemon.home });
  assert.equal(missing.code, 2);
  assert.equal(JSON.parse(missing.stdout).error.code, "source_not_found");
});

/**
 * `hecate plugin pack` with npm dependencies, the real binary against a real daemon: a plugin using zod (installed
 * from the npm registry into its own node_modules) and a native addon (better-sqlite3, linked from this repo's
 * node_modules as `npm link` would: built for this Node) installs and serves; two plugins with conflicting majors
 * of one library (is-number 6 and 7, one of them also through is-odd, which wants 6) each get their own; an
 * import the package cannot satisfy fails the pack naming the module; `install DIR` / `upgrade DIR` build first.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { list as tarList } from "tar";
import { cliJson, get, runCli, startTestDaemon, type TestDaemon, tempDir } from "./helpers.js";

const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
let daemon: TestDaemon;
let work: string;

before(async () => {
  daemon = await startTestDaemon();
  work = tempDir("pack-deps");
});
after(async () => {
  await daemon?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

function npm(cwd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const flags = ["--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"];
    execFile("npm", [...args, ...flags], { cwd, timeout: 180_000 }, (err, stdout, stderr) =>
      err
        ? reject(new Error(`npm ${args.join(" ")} failed in ${cwd}: ${err.message}\n${stdout}\n${stderr}`))
        : resolve(),
    );
  });
}

/** A plugin project: manifest.json, package.json and its files (relative path -> text). */
function writeProject(
  dir: string,
  name: string,
  pkg: Record<string, unknown>,
  files: Record<string, string>,
  version = "1.0.0",
): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "manifest.json"),
    JSON.stringify({ name, version, plugin_type: "in_process", callback_module: "dist/index.js" }),
  );
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({ name, version, private: true, type: "module", files: ["dist"], ...pkg }, null, 2),
  );
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    writeFileSync(join(dir, file), text);
  }
}

function addDependency(dir: string, name: string, range: string): void {
  const file = join(dir, "package.json");
  const pkg = JSON.parse(readFileSync(file, "utf8"));
  pkg.dependencies = { ...pkg.dependencies, [name]: range };
  writeFileSync(file, JSON.stringify(pkg, null, 2));
}

async function archiveEntries(file: string): Promise<string[]> {
  const entries: string[] = [];
  await tarList({ file, onReadEntry: (e) => entries.push(e.path) });
  return entries;
}

const MANIFEST_FN = `export function manifest() {
  return JSON.parse(readFileSync(new URL("../manifest.json", import.meta.url), "utf8"));
}
export function init() {}`;

test("a plugin using zod and a native addon (better-sqlite3) packs its dependencies, installs and serves", async () => {
  const dir = join(work, "notes-db");
  const sqliteVersion = JSON.parse(
    readFileSync(join(REPO, "node_modules/better-sqlite3/package.json"), "utf8"),
  ).version;
  writeProject(
    dir,
    "notes-db",
    { dependencies: { zod: "3.25.76" } },
    {
      "dist/index.js": `import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import Database from "better-sqlite3";
import { z } from "zod";
import { HttpError } from "@hecate/sdk";
${MANIFEST_FN.replace("export function init() {}", "")}
const Note = z.object({ text: z.string().min(1) });
let db;
export function init() {
  db = new Database(":memory:");
  db.exec("create table notes (text text not null)");
}
const require = createRequire(import.meta.url);
export function routes() {
  return [
    { method: "POST", path: "/notes", handler: async (req) => {
      const parsed = Note.safeParse(await req.json());
      if (!parsed.success) throw new HttpError(400, "invalid_note", parsed.error.issues.map((i) => i.path.join(".") + ": " + i.code).join(", "));
      db.prepare("insert into notes (text) values (?)").run(parsed.data.text);
      return { status: 201, body: { count: db.prepare("select count(*) as n from notes").get().n, sqlite: db.prepare("select sqlite_version() as v").get().v } };
    } },
    { method: "GET", path: "/where", handler: () => ({ zod: require.resolve("zod"), sqlite: require.resolve("better-sqlite3") }) },
  ];
}
`,
    },
  );
  await npm(dir, ["install"]);
  // better-sqlite3 as `npm link` leaves it: a link to an installed, built copy (this repo's, built for this Node)
  symlinkSync(join(REPO, "node_modules/better-sqlite3"), join(dir, "node_modules/better-sqlite3"), "dir");
  addDependency(dir, "better-sqlite3", `^${sqliteVersion}`);
  // and the SDK as the scaffold links it: it must not be shipped
  addDependency(dir, "@hecate/sdk", "0.1.0");
  assert.equal((await runCli(["plugin", "link-sdk", dir])).code, 0);

  const out = join(work, "notes-db.tar.gz");
  const packed = await cliJson(["plugin", "pack", dir, "-o", out]);
  const names = packed.dependencies.map((d: { name: string }) => d.name);
  for (const n of ["zod", "better-sqlite3", "bindings", "file-uri-to-path"]) assert.ok(names.includes(n), n);
  assert.ok(!names.includes("@hecate/sdk"), "the SDK is never shipped");
  assert.ok(packed.dependencies.find((d: { name: string }) => d.name === "better-sqlite3").native);
  assert.ok(packed.dependencies[0].bytes >= packed.dependencies.at(-1).bytes, "largest first");

  const entries = await archiveEntries(out);
  assert.ok(entries.includes("node_modules/better-sqlite3/build/Release/better_sqlite3.node"));
  assert.ok(entries.includes("node_modules/zod/package.json"));
  assert.ok(!entries.some((e) => e.includes("@hecate/sdk")), "no SDK copy in the archive");
  assert.ok(!entries.some((e) => e.includes("/obj.target/") || e.endsWith(".o")), "no native build intermediates");
  // the daemon's own checks: every shipped file is listed with its digest, nothing unlisted
  const verified = await cliJson(["plugin", "verify", out]);
  assert.equal(verified.files, packed.files);
  assert.equal(entries.filter((e) => !e.endsWith("/")).length, packed.files);

  const installed = await cliJson(["plugin", "install", out], { home: daemon.home });
  assert.equal(installed.status, "loaded");
  const api = `${daemon.url}/plugin/notes-db/api`;
  const post = (body: unknown) =>
    fetch(`${api}/notes`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  const ok = await post({ text: "hello" });
  assert.equal(ok.status, 201);
  const okBody = await ok.json();
  assert.equal(okBody.count, 1);
  assert.match(okBody.sqlite, /^3\.\d+\.\d+$/);
  const bad = await post({ text: "" });
  assert.equal(bad.status, 400);
  assert.match(JSON.stringify(await bad.json()), /text: too_small/);
  // its own dependencies resolve from its own package
  const where = (await get(`${api}/where`)).body;
  const pkgDir = realpathSync(join(daemon.home, "plugins", "notes-db", "package"));
  assert.ok(where.zod.startsWith(join(pkgDir, "node_modules", "zod")), where.zod);
  assert.ok(where.sqlite.startsWith(join(pkgDir, "node_modules", "better-sqlite3")), where.sqlite);
});

test("two plugins with conflicting majors of one library each serve their own version", async () => {
  const code = `import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import isNumber from "is-number";
${MANIFEST_FN}
const require = createRequire(import.meta.url);
const versionFrom = (from) => JSON.parse(readFileSync(createRequire(from).resolve("is-number/package.json"), "utf8")).version;
export function routes() {
  return [{ method: "GET", path: "/v", handler: () => {
    const out = { isNumber: versionFrom(import.meta.url), numeric: isNumber("42") };
    try { out.viaIsOdd = versionFrom(require.resolve("is-odd")); } catch {}
    return out;
  } }];
}
`;
  const six = join(work, "num-six");
  const seven = join(work, "num-seven");
  writeProject(six, "num-six", { dependencies: { "is-number": "6.0.0" } }, { "dist/index.js": code });
  // is-odd@3 depends on is-number ^6: npm nests that copy under is-odd, and so must the package
  writeProject(
    seven,
    "num-seven",
    { dependencies: { "is-number": "7.0.0", "is-odd": "3.0.1" } },
    { "dist/index.js": code },
  );
  await Promise.all([npm(six, ["install"]), npm(seven, ["install"])]);

  // the pack prints the package's size and its largest dependencies
  const human = await runCli(["plugin", "pack", seven, "-o", join(work, "seven.tar.gz")]);
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, /size: [\d.]+ KiB compressed, [\d.]+ KiB in \d+ files/);
  assert.match(human.stdout, /dependencies: 3 dependencies, [\d.]+ KiB; largest: is-number@\d\.0\.0 [\d.]+ KiB, /);
  const packed = await cliJson(["plugin", "pack", seven, "-o", join(work, "seven.tar.gz")]);
  const dests = packed.dependencies.map((d: { dest: string; version: string }) => `${d.dest}@${d.version}`).sort();
  assert.deepEqual(dests, [
    "node_modules/is-number@7.0.0",
    "node_modules/is-odd/node_modules/is-number@6.0.0",
    "node_modules/is-odd@3.0.1",
  ]);

  for (const dir of [six, seven])
    assert.equal((await cliJson(["plugin", "install", dir], { home: daemon.home })).status, "loaded");
  assert.deepEqual((await get(`${daemon.url}/plugin/num-six/api/v`)).body, { isNumber: "6.0.0", numeric: true });
  assert.deepEqual((await get(`${daemon.url}/plugin/num-seven/api/v`)).body, {
    isNumber: "7.0.0",
    numeric: true,
    viaIsOdd: "6.0.0",
  });
});

test("pack fails naming the module when an import cannot be resolved from what the package ships", async () => {
  const dir = join(work, "broken");
  writeProject(
    dir,
    "broken",
    { files: ["dist", "priv"] },
    {
      // browser assets are not the plugin's modules: their imports are the browser's (import maps, URLs)
      "priv/static/app.js": 'import { html } from "lit";\nimport "/plugin/broken/other.js";\nhtml``;\n',
      "dist/index.js": `import { readFileSync } from "node:fs";
import leftPad from "left-pad";
import { helper } from "./helper.js";
import { getConfig } from "@hecate/sdk";
${MANIFEST_FN}
export function routes() { return [{ method: "GET", path: "/x", handler: () => leftPad(helper(getConfig()), 3) }]; }
`,
    },
  );
  const r = await runCli(["plugin", "pack", dir, "--json"]);
  assert.equal(r.code, 7, r.stderr);
  const err = JSON.parse(r.stdout).error;
  assert.equal(err.code, "unresolved_import");
  assert.deepEqual(err.details.modules, ["left-pad", "./helper.js"]);
  assert.match(err.message, /dist\/index\.js imports "left-pad": module "left-pad" is not shipped/);
  assert.equal(existsSync(join(dir, "broken-1.0.0.tar.gz")), false, "nothing written");
  // install DIR packs first: it fails the same way before anything reaches the daemon
  const install = await runCli(["plugin", "install", dir], { home: daemon.home });
  assert.equal(install.code, 7);
  assert.match(install.stderr, /cannot resolve "left-pad", "\.\/helper\.js" from the package/);

  // a dependency in package.json that was never installed is named too
  addDependency(dir, "left-pad", "^1.3.0");
  const missing = JSON.parse((await runCli(["plugin", "pack", dir, "--json"])).stdout).error;
  assert.equal(missing.code, "dependency_missing");
  assert.match(missing.message, /depends on left-pad, which is not installed: run `npm install`/);
});

test("install DIR and upgrade DIR build the project first; a failing build packs nothing", async () => {
  const dir = join(work, "built");
  const build = `import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
mkdirSync("dist", { recursive: true });
writeFileSync("dist/index.js", readFileSync("src/index.js", "utf8").replace("__BUILT__", "built at " + Date.now()));
`;
  const source = (greeting: string) => `import { readFileSync } from "node:fs";
${MANIFEST_FN}
export function routes() { return [{ method: "GET", path: "/hi", handler: () => ({ greeting: ${JSON.stringify(greeting)}, stamp: "__BUILT__" }) }]; }
`;
  writeProject(
    dir,
    "built",
    { scripts: { build: "node build.mjs" } },
    { "build.mjs": build, "src/index.js": source("one") },
  );
  assert.equal(existsSync(join(dir, "dist")), false);
  assert.equal((await cliJson(["plugin", "install", dir], { home: daemon.home })).status, "loaded");
  const hi = () => get(`${daemon.url}/plugin/built/api/hi`).then((r) => r.body);
  assert.equal((await hi()).greeting, "one");
  assert.match((await hi()).stamp, /^built at \d+$/);

  // edit the source only: upgrade DIR rebuilds, the new code is served
  writeFileSync(join(dir, "src/index.js"), source("two"));
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
  writeFileSync(join(dir, "manifest.json"), JSON.stringify({ ...manifest, version: "1.0.1" }));
  const up = await runCli(["plugin", "upgrade", dir], { home: daemon.home });
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stderr, /built with `npm run build`, packed: /);
  assert.equal((await hi()).greeting, "two");

  // a failing build: the error carries its output, nothing is uploaded
  writeFileSync(
    join(dir, "build.mjs"),
    `console.error("src/index.ts(3,1): error TS1005: ';' expected."); process.exit(2);\n`,
  );
  const failed = await runCli(["plugin", "upgrade", dir, "--json"], { home: daemon.home });
  assert.equal(failed.code, 7);
  const err = JSON.parse(failed.stdout).error;
  assert.equal(err.code, "build_failed");
  assert.match(err.message, /`npm run build` failed .*exit 2/);
  assert.match(err.message, /error TS1005/);
  assert.equal((await hi()).greeting, "two", "the last good version keeps serving");
});

test("a linked local package (workspace member, npm link) ships only what it publishes (its package.json files)", async () => {
  const lib = join(work, "shout-lib");
  mkdirSync(join(lib, "lib"), { recursive: true });
  mkdirSync(join(lib, "test"), { recursive: true });
  writeFileSync(
    join(lib, "package.json"),
    JSON.stringify({ name: "shout-lib", version: "2.1.0", type: "module", main: "lib/index.js", files: ["lib"] }),
  );
  writeFileSync(join(lib, "lib/index.js"), "export const shout = (s) => s.toUpperCase() + '!';\n");
  writeFileSync(join(lib, "test/secret.test.js"), "// not published\n");
  writeFileSync(join(lib, "LICENSE"), "MIT\n");
  // an addon whose binary was never built (npm install --ignore-scripts): packed, with a warning
  writeFileSync(join(lib, "binding.gyp"), '{"targets":[]}\n');

  const dir = join(work, "shouter");
  writeProject(
    dir,
    "shouter",
    { dependencies: { "shout-lib": "^2.0.0" } },
    {
      "dist/index.js": `import { readFileSync } from "node:fs";
import { shout } from "shout-lib";
${MANIFEST_FN}
export function routes() { return [{ method: "GET", path: "/shout", handler: (req) => ({ said: shout(String(req.query.s)) }) }]; }
`,
    },
  );
  mkdirSync(join(dir, "node_modules"), { recursive: true });
  symlinkSync(lib, join(dir, "node_modules/shout-lib"), "dir");

  const out = join(work, "shouter.tar.gz");
  const packed = await cliJson(["plugin", "pack", dir, "-o", out]);
  assert.deepEqual(packed.warnings, [
    "shout-lib@2.1.0 is a native addon but no compiled binary (*.node) was found in it: it will fail to load unless its native part is optional; build it with `npm rebuild shout-lib` and pack again",
  ]);
  const shipped = (await archiveEntries(out)).filter((e) => e.startsWith("node_modules/")).sort();
  assert.deepEqual(shipped, [
    "node_modules/shout-lib/LICENSE",
    "node_modules/shout-lib/lib/index.js",
    "node_modules/shout-lib/package.json",
  ]);
  assert.equal((await cliJson(["plugin", "install", out], { home: daemon.home })).status, "loaded");
  assert.deepEqual((await get(`${daemon.url}/plugin/shouter/api/shout?s=hi`)).body, { said: "HI!" });
});

/**
 * `hecate plugin new` (issue 12 points 2 and 6) with the real CLI, npm and a real daemon: TypeScript by default,
 * `--js`, `--container` for both. Each project: npm install -> npm test green -> `npm run install-plugin` (the
 * project's own `hecate`: the PATH of projects.ts has none) -> its route answers. `npm install` of another
 * dependency keeps the SDK link.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { CLI, cliJson, get, runCli, startTestDaemon, type TestDaemon, tempDir } from "./helpers.js";
import { newProject, npm, ok, ROOT, readJson, run } from "./projects.js";

let daemon: TestDaemon;
let work: string;
before(async () => {
  work = tempDir("scaffold");
  daemon = await startTestDaemon();
});
after(async () => {
  await daemon?.stop();
  await rm(work, { recursive: true, force: true });
});

test("TypeScript (default): strict tsconfig, npm test green, installs and serves; npm install keeps the SDK", async () => {
  const dir = join(work, "my-notes");
  await newProject(dir, "my-notes");
  for (const f of ["src/index.ts", "test/plugin.test.ts", "tsconfig.json", "README.md", ".gitignore"]) {
    assert.ok(existsSync(join(dir, f)), f);
  }
  assert.equal(readJson(join(dir, "tsconfig.json")).compilerOptions.strict, true);
  const pkg = readJson(join(dir, "package.json"));
  assert.deepEqual(pkg.files, ["dist/src", "priv"]);
  assert.equal(readJson(join(dir, "manifest.json")).callback_module, "dist/src/index.js");
  // the SDK the project's tests use is the daemon's own copy
  assert.equal(realpathSync(join(dir, "node_modules/@hecate/sdk")), realpathSync(join(ROOT, "packages/sdk")));
  const readme = readFileSync(join(dir, "README.md"), "utf8");
  for (const how of ["npm test", "npm run pack", "npm run install-plugin", "npm run dev"])
    assert.ok(readme.includes(how), how);

  const tested = await npm(dir, ["test"]);
  assert.match(tested.stdout, /# pass 2/);
  assert.match(tested.stdout, /# fail 0/);

  const installed = await npm(dir, ["run", "install-plugin"], { HECATE_HOME: daemon.home });
  assert.match(installed.stdout, new RegExp(`my-notes@0\\.1\\.0 loaded: ${daemon.url}/plugin/my-notes/`));
  assert.deepEqual((await get(`${daemon.url}/plugin/my-notes/api/hello?name=ts`)).body, {
    hello: "ts",
    plugin: "my-notes",
  });
  const note = await fetch(`${daemon.url}/plugin/my-notes/api/notes`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ text: "from the test" }),
  });
  assert.equal(note.status, 201);
  assert.match(String((await get(`${daemon.url}/plugin/my-notes/`)).body), /<h1>my-notes<\/h1>/);
  // its UI, for the app shell: manifest.json's `ui` and priv/static/ui.js, listed by the shell's public endpoint
  const shell = (await get(`${daemon.url}/api/shell/plugins`)).body as { plugins: { name: string; ui?: unknown }[] };
  assert.deepEqual(shell.plugins.find((p) => p.name === "my-notes")?.ui, {
    element: "my-notes-app",
    module: "ui.js",
    url: "/plugin/my-notes/ui.js",
    sandboxed: false,
  });
  assert.match(String((await get(`${daemon.url}/plugin/my-notes/ui.js`)).body), /extends HecateElement/);

  // point 6: installing another dependency (a local package: no registry) keeps @hecate/sdk; the tests still run
  const lib = join(work, "tiny-lib");
  mkdirSync(lib);
  writeFileSync(
    join(lib, "package.json"),
    JSON.stringify({ name: "tiny-lib", version: "1.0.0", type: "module", main: "index.js" }),
  );
  writeFileSync(join(lib, "index.js"), "export const tiny = 1;\n");
  await npm(dir, ["install", lib]);
  assert.equal(realpathSync(join(dir, "node_modules/@hecate/sdk")), realpathSync(join(ROOT, "packages/sdk")));
  assert.match((await ok(run("node", ["--test", "dist/test/"], dir), "node --test")).stdout, /# pass 2/);

  // a type error fails npm test (strict TypeScript, not just transpiled)
  const src = join(dir, "src/index.ts");
  const good = readFileSync(src, "utf8");
  writeFileSync(src, good.replace("config = cfg;", "config = cfg.pluginName;"));
  const broken = await run("npm", ["test"], dir);
  assert.notEqual(broken.code, 0);
  assert.match(broken.stdout + broken.stderr, /src\/index\.ts.*error TS2322/);
});

test("--js: npm test green, installs and serves", async () => {
  const dir = join(work, "js-notes");
  await newProject(dir, "js-notes", ["--js"]);
  assert.ok(existsSync(join(dir, "src/index.js")) && !existsSync(join(dir, "tsconfig.json")));
  assert.equal(readJson(join(dir, "package.json")).devDependencies.typescript, undefined);
  assert.match((await npm(dir, ["test"])).stdout, /# pass 2/);
  await npm(dir, ["run", "install-plugin"], { HECATE_HOME: daemon.home });
  assert.deepEqual((await get(`${daemon.url}/plugin/js-notes/api/hello?name=js`)).body, {
    hello: "js",
    plugin: "js-notes",
  });
});

test("--container (TypeScript): npm test green, installs and answers from its Podman container", async () => {
  const dir = join(work, "box");
  await newProject(dir, "box", ["--container"]);
  assert.deepEqual(readJson(join(dir, "manifest.json")).container.command, ["node", "/plugin/dist/src/main.js"]);
  assert.match((await npm(dir, ["test"])).stdout, /# pass 2/);
  const installed = await cliJson(["plugin", "install", dir], { home: daemon.home });
  assert.equal(installed.type, "container");
  assert.equal(installed.status, "loaded");
  assert.deepEqual((await get(`${daemon.url}/plugin/box/api/hello?name=podman`)).body, {
    hello: "podman",
    from: "a container",
  });
  await cliJson(["plugin", "remove", "box", "--purge-data"], { home: daemon.home });
});

test("--container --js: npm test green, packs src + priv", async () => {
  const dir = join(work, "jsbox");
  await newProject(dir, "jsbox", ["--container", "--js"]);
  assert.match((await npm(dir, ["test"])).stdout, /# pass 2/);
  const box = await cliJson(["plugin", "pack", dir, "-o", join(work, "jsbox.tar.gz")]);
  assert.deepEqual(box.entries, ["manifest.json", "src", "priv", "package.json"]);
  assert.equal((await cliJson(["plugin", "verify", box.file])).name, "jsbox");
});

test("bad names are refused before anything is written; link-sdk re-points an older project", async () => {
  const bad = await runCli(["plugin", "new", "Bad Name", "--dir", join(work, "bad"), "--json"]);
  assert.equal(bad.code, 2);
  assert.equal(JSON.parse(bad.stdout).error.code, "invalid_name");
  assert.equal(existsSync(join(work, "bad")), false);

  // a project from before the file: links (runtime dependency on the SDK, a hand-made link npm install pruned)
  const old = join(work, "old");
  mkdirSync(old);
  writeFileSync(
    join(old, "package.json"),
    JSON.stringify({ name: "old", dependencies: { "@hecate/sdk": "0.1.0", x: "1" } }),
  );
  await ok(run(process.execPath, [CLI, "plugin", "link-sdk", old], work), "link-sdk");
  const pkg = readJson(join(old, "package.json"));
  assert.deepEqual(pkg.dependencies, { x: "1" });
  assert.equal(pkg.devDependencies["@hecate/sdk"], `file:${realpathSync(join(ROOT, "packages/sdk"))}`);
  assert.equal(pkg.devDependencies["@hecate/cli"], `file:${realpathSync(join(ROOT, "packages/cli"))}`);
});

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { pluginPaths } from "@hecate/sdk/paths";
import {
  extractPackage,
  PackageError,
  packPlugin,
  readArchiveManifest,
  recoverPackageDir,
  writeFileManifest,
} from "../src/index.js";
import {
  gz,
  manifestJson,
  removeDir,
  snapshot,
  tarOf,
  tempDir,
  validEntries,
  writeTree,
} from "../src/testing/forge.js";

/** Paths and contents only (modes are normalised on extraction). */
function snapshotOf(dir: string): Record<string, string> {
  return Object.fromEntries(Object.entries(snapshot(dir)).map(([k, v]) => [k, v.replace(/ [0-7]+/, "")]));
}

function pluginSource(dir: string, name: string, version: string, extra: Record<string, string> = {}) {
  writeTree(dir, {
    "manifest.json": JSON.stringify({ name, version }),
    "dist/index.js": `export const version = ${JSON.stringify(version)};\n`,
    "priv/static/index.html": `<h1>${name} ${version}</h1>\n`,
    ...extra,
  });
}

test("extract: a packed plugin lands in {root}/package with its data dir untouched", async () => {
  const home = tempDir();
  try {
    const src = join(home, "src");
    pluginSource(src, "tasks", "1.0.0", { "dist/lib/util.js": "export {};\n" });
    const archive = join(home, "tasks.tar.gz");
    await packPlugin(src, archive);
    const paths = pluginPaths(home, "tasks");
    writeTree(paths.root, { "data/keep.txt": "mine" });

    assert.deepEqual(await readArchiveManifest(archive), { name: "tasks", version: "1.0.0" });
    const result = await extractPackage(archive, paths.package, { expectedName: "tasks", hecateVersion: "0.1.0" });
    assert.equal(result.manifest.version, "1.0.0");
    assert.equal(result.files, 5); // manifest, 2 js, html, hecate-files.json
    assert.ok(result.bytes > 0);
    assert.equal(readFileSync(join(paths.code, "index.js"), "utf8"), 'export const version = "1.0.0";\n');
    assert.ok(existsSync(join(paths.static, "index.html")));
    assert.equal(readFileSync(join(paths.data, "keep.txt"), "utf8"), "mine");
    assert.deepEqual(readdirSync(paths.root).sort(), ["data", "package"]);
  } finally {
    removeDir(home);
  }
});

test("extract: upgrade replaces the whole package dir (no stale files), failure keeps the old one", async () => {
  const home = tempDir();
  try {
    const paths = pluginPaths(home, "tasks");
    const v1 = join(home, "v1");
    pluginSource(v1, "tasks", "1.0.0", { "dist/old-only.js": "//\n" });
    await packPlugin(v1, join(home, "v1.tar.gz"));
    const v2 = join(home, "v2");
    pluginSource(v2, "tasks", "2.0.0");
    await packPlugin(v2, join(home, "v2.tar.gz"));

    await extractPackage(join(home, "v1.tar.gz"), paths.package);
    await extractPackage(join(home, "v2.tar.gz"), paths.package);
    assert.match(readFileSync(join(paths.code, "index.js"), "utf8"), /2\.0\.0/);
    assert.ok(!existsSync(join(paths.code, "old-only.js")), "files of the old version are gone");
    assert.deepEqual(readdirSync(paths.root), ["package"], "no .old-* or .staging-* left");

    const before = snapshot(paths.root);
    writeFileSync(join(home, "bad.tar.gz"), gz(tarOf([...validEntries("tasks"), { name: "../x", data: "x" }])));
    await assert.rejects(extractPackage(join(home, "bad.tar.gz"), paths.package), { code: "path_traversal" });
    assert.deepEqual(snapshot(paths.root), before);
  } finally {
    removeDir(home);
  }
});

test("extract: concurrent extractions into one target leave exactly one complete version", async () => {
  const home = tempDir();
  try {
    const paths = pluginPaths(home, "tasks");
    for (const v of ["1.0.0", "2.0.0"]) {
      pluginSource(join(home, v), "tasks", v);
      await packPlugin(join(home, v), join(home, `${v}.tar.gz`));
    }
    const results = await Promise.allSettled(
      ["1.0.0", "2.0.0", "1.0.0", "2.0.0"].map((v) => extractPackage(join(home, `${v}.tar.gz`), paths.package)),
    );
    assert.ok(results.some((r) => r.status === "fulfilled"));
    const manifest = JSON.parse(readFileSync(paths.manifest, "utf8")) as { version: string };
    assert.match(
      readFileSync(join(paths.code, "index.js"), "utf8"),
      new RegExp(manifest.version.replaceAll(".", "\\.")),
    );
    await recoverPackageDir(paths.root);
    assert.deepEqual(readdirSync(paths.root), ["package"]);
  } finally {
    removeDir(home);
  }
});

test("extract: recoverPackageDir removes staging leftovers and restores a package lost between renames", async () => {
  const home = tempDir();
  try {
    const root = join(home, "plugins", "tasks");
    writeTree(root, {
      ".staging-package-abc123/manifest.json": "{}",
      ".old-package-0123456789ab/manifest.json": manifestJson("tasks"),
      "data/keep.txt": "mine",
    });
    await recoverPackageDir(root);
    assert.deepEqual(readdirSync(root).sort(), ["data", "package"]);
    assert.equal(JSON.parse(readFileSync(join(root, "package", "manifest.json"), "utf8")).name, "tasks");

    mkdirSync(join(root, ".old-package-ba9876543210"));
    await recoverPackageDir(root);
    assert.deepEqual(readdirSync(root).sort(), ["data", "package"], "an old copy beside a live package is removed");
    await recoverPackageDir(join(home, "plugins", "missing"));
  } finally {
    removeDir(home);
  }
});

test("extract: container packages need their image archive, not a callback module", async () => {
  const home = tempDir();
  try {
    const manifest = manifestJson("box", {
      plugin_type: "container",
      container: { image_archive: "image.tar", command: ["/bin/app"] },
    });
    const src = join(home, "src");
    writeTree(src, { "manifest.json": manifest, "image.tar": "oci" });
    await packPlugin(src, join(home, "ok.tar.gz"));
    const res = await extractPackage(join(home, "ok.tar.gz"), join(home, "plugins", "box", "package"));
    assert.equal(res.manifest.plugin_type, "container");

    const src2 = join(home, "src2");
    writeTree(src2, { "manifest.json": manifest });
    await packPlugin(src2, join(home, "noimage.tar.gz"));
    await assert.rejects(
      extractPackage(join(home, "noimage.tar.gz"), join(home, "plugins", "box2", "package")),
      (err) => {
        assert.ok(err instanceof PackageError);
        assert.equal(err.code, "missing_code");
        assert.deepEqual(err.details, { file: "image.tar" });
        return true;
      },
    );
  } finally {
    removeDir(home);
  }
});

test("extract: an archive made by GNU tar from inside the dir (./ prefixes, dir entries, empty files) extracts", async () => {
  const home = tempDir();
  try {
    const src = join(home, "src");
    pluginSource(src, "gnu", "1.0.0", { "priv/static/empty.txt": "" });
    await writeFileManifest(src);
    const archive = join(home, "gnu.tar.gz");
    execFileSync("tar", ["-czf", archive, "-C", src, "."]);
    const target = join(home, "plugins", "gnu", "package");
    const res = await extractPackage(archive, target, { expectedName: "gnu" });
    assert.equal(res.files, 5);
    assert.equal(readFileSync(join(target, "priv", "static", "empty.txt"), "utf8"), "");
    assert.deepEqual(snapshotOf(target), snapshotOf(src));
  } finally {
    removeDir(home);
  }
});

test("extract: a writing pass past its deadline is terminated; staging removed, old package kept", async () => {
  const home = tempDir();
  try {
    const paths = pluginPaths(home, "tasks");
    const src = join(home, "src");
    pluginSource(src, "tasks", "1.0.0");
    await packPlugin(src, join(home, "v1.tar.gz"));
    await extractPackage(join(home, "v1.tar.gz"), paths.package);
    const before = snapshot(home);
    await assert.rejects(extractPackage(join(home, "v1.tar.gz"), paths.package, { timeoutMs: 1 }), (err) => {
      assert.ok(err instanceof PackageError);
      assert.equal(err.code, "extract_timeout");
      assert.match(err.message, /did not finish within 1 ms/);
      return true;
    });
    assert.deepEqual(snapshot(home), before);
  } finally {
    removeDir(home);
  }
});

test("extract: a package that ships its own @hecate/sdk (at any depth of its node_modules) is refused", async () => {
  const home = tempDir();
  try {
    const paths = pluginPaths(home, "tasks");
    for (const [i, sdkDir] of ["node_modules/@hecate/sdk", "node_modules/helper/node_modules/@hecate/sdk"].entries()) {
      const src = join(home, `src-${i}`);
      pluginSource(src, "tasks", "1.0.0", {
        "node_modules/zod/package.json": '{"name":"zod","version":"3.0.0"}\n',
        [`${sdkDir}/package.json`]: '{"name":"@hecate/sdk","version":"0.0.1"}\n',
        [`${sdkDir}/index.js`]: "export const fake = true;\n",
      });
      const archive = join(home, `tasks-${i}.tar.gz`);
      await packPlugin(src, archive);
      await assert.rejects(extractPackage(archive, paths.package), (err: unknown) => {
        assert.ok(err instanceof PackageError);
        assert.equal(err.code, "sdk_shipped");
        assert.match(err.message, new RegExp(`ships its own @hecate/sdk \\(${sdkDir}\\).*hecate plugin pack`));
        return true;
      });
      assert.equal(existsSync(paths.package), false);
    }
    // its own dependencies are fine
    const ok = join(home, "ok");
    pluginSource(ok, "tasks", "1.0.0", { "node_modules/zod/package.json": '{"name":"zod","version":"3.0.0"}\n' });
    await packPlugin(ok, join(home, "ok.tar.gz"));
    assert.equal((await extractPackage(join(home, "ok.tar.gz"), paths.package)).files, 5);
  } finally {
    removeDir(home);
  }
});

test("extract: the default limits admit a package with a realistic node_modules (10,500 files: over the former 10,000-entry cap)", async () => {
  const home = tempDir();
  try {
    const src = join(home, "src");
    pluginSource(src, "tasks", "1.0.0");
    // one library of date-fns' shape: thousands of small modules, in per-function dirs
    for (let d = 0; d < 300; d++) {
      const dir = join(src, "node_modules", "big-lib", `fn${d}`);
      mkdirSync(dir, { recursive: true });
      for (let f = 0; f < 35; f++) writeFileSync(join(dir, `m${f}.js`), `export const v = ${d * 35 + f};\n`);
    }
    const archive = join(home, "big.tar.gz");
    await packPlugin(src, archive);
    const paths = pluginPaths(home, "tasks");
    const result = await extractPackage(archive, paths.package);
    assert.equal(result.files, 10_500 + 4); // + manifest, index.js, index.html, hecate-files.json
  } finally {
    removeDir(home);
  }
});

import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { manifestSchema, PackageError, validateManifest } from "../src/index.js";

const require = createRequire(import.meta.url);

function fieldsOf(fn: () => unknown): { code: string; fields: string[] } {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof PackageError, String(err));
    const details = Array.isArray(err.details)
      ? (err.details as { field: string }[])
      : [err.details as { field: string }];
    return { code: err.code, fields: details.map((d) => d.field) };
  }
  assert.fail("expected a PackageError");
}

test("manifest: a minimal and a full manifest validate", () => {
  assert.deepEqual(validateManifest({ name: "tasks", version: "1.2.3" }), { name: "tasks", version: "1.2.3" });
  const full = {
    name: "container-echo",
    version: "0.1.0-beta.2+build.7",
    description: "x",
    plugin_type: "container",
    callback_module: "dist/main.mjs",
    engines: { hecate: ">=0.1 <1" },
    static: "public",
    settings: { type: "object" },
    icon: "icon.svg",
    group_name: "demo",
    group_icon: "g.svg",
    container: {
      command: ["node", "/plugin/index.mjs"],
      memory_mb: 128,
      cpus: 0.5,
      pids: 64,
      health_path: "/__health",
    },
    homepage: "https://example.org",
  };
  assert.equal(validateManifest(full, { hecateVersion: "0.1.0" }).name, "container-echo");
});

test("manifest: errors name the field", () => {
  assert.deepEqual(
    fieldsOf(() => validateManifest({ version: "1.0.0" })),
    { code: "invalid_manifest", fields: ["/name"] },
  );
  assert.deepEqual(fieldsOf(() => validateManifest({ name: "../x", version: "1.0.0" })).fields, ["/name"]);
  assert.deepEqual(fieldsOf(() => validateManifest({ name: "Tasks", version: "1.0.0" })).fields, ["/name"]);
  assert.deepEqual(fieldsOf(() => validateManifest({ name: "a".repeat(65), version: "1.0.0" })).fields, ["/name"]);
  assert.deepEqual(fieldsOf(() => validateManifest({ name: "tasks", version: "1.0" })).fields, ["/version"]);
  assert.deepEqual(fieldsOf(() => validateManifest({ name: "tasks", version: "01.0.0" })).fields, ["/version"]);
  assert.deepEqual(fieldsOf(() => validateManifest({ name: "t", version: "1.0.0", plugin_type: "vm" })).fields, [
    "/plugin_type",
  ]);
  assert.deepEqual(fieldsOf(() => validateManifest({ name: "t", version: "1.0.0", isolation: "vm" })).fields, [
    "/isolation",
  ]);
  assert.deepEqual(
    fieldsOf(() => validateManifest({ name: "t", version: "1.0.0", plugin_type: "container", isolation: "shared" })),
    { code: "invalid_manifest", fields: ["/isolation"] },
  );
  assert.equal(validateManifest({ name: "t", version: "1.0.0", isolation: "shared" }).isolation, "shared");
  assert.deepEqual(
    fieldsOf(() => validateManifest({ name: "t", version: "1.0.0", callback_module: "/abs.js" })).fields,
    ["/callback_module"],
  );
  assert.deepEqual(fieldsOf(() => validateManifest({ name: "t", version: "1.0.0", static: "a/../../b" })).fields, [
    "/static",
  ]);
  assert.deepEqual(
    fieldsOf(() =>
      validateManifest({ name: "t", version: "1.0.0", container: { memory_mb: -1, command: [], bogus: 1 } }),
    ).fields.sort(),
    ["/container/bogus", "/container/command", "/container/memory_mb"],
  );
  assert.deepEqual(
    fieldsOf(() => validateManifest({ name: "t", version: "1.0.0", engines: { hecate: "not a range" } })),
    {
      code: "invalid_manifest",
      fields: ["/engines/hecate"],
    },
  );
  assert.deepEqual(
    fieldsOf(() => validateManifest("just a string")),
    { code: "invalid_manifest", fields: ["/"] },
  );
});

test("manifest: engines.hecate is checked against the daemon version", () => {
  const m = { name: "t", version: "1.0.0", engines: { hecate: "^2.0.0" } };
  assert.deepEqual(
    fieldsOf(() => validateManifest(m, { hecateVersion: "1.4.0" })),
    {
      code: "engine_mismatch",
      fields: ["/engines/hecate"],
    },
  );
  assert.equal(validateManifest(m, { hecateVersion: "2.3.0" }).name, "t");
  assert.equal(validateManifest(m).name, "t", "no daemon version given: range syntax only");
});

test("manifest: the schema is published by @hecate/sdk and is the one used", () => {
  const path = require.resolve("@hecate/sdk/manifest.schema.json");
  assert.deepEqual(JSON.parse(readFileSync(path, "utf8")), manifestSchema);
  const sdkPkg = JSON.parse(readFileSync(join(dirname(path), "package.json"), "utf8")) as {
    files: string[];
  };
  assert.ok(sdkPkg.files.includes("manifest.schema.json"));
});

test("manifest: every example plugin's manifest.json validates", () => {
  const examples = join(dirname(require.resolve("@hecate/sdk/manifest.schema.json")), "..", "..", "examples");
  const found = readdirSync(examples).filter((d) => existsSync(join(examples, d, "manifest.json")));
  assert.ok(found.length > 0);
  for (const d of found) {
    const manifest = validateManifest(JSON.parse(readFileSync(join(examples, d, "manifest.json"), "utf8")));
    assert.equal(manifest.name, d);
  }
});

test("manifest: ui {element, module} is checked with clear messages", () => {
  const m = (ui: unknown) => ({ name: "p", version: "1.0.0", ui });
  assert.deepEqual(validateManifest(m({ element: "p-app", module: "ui/app.js" })).ui, {
    element: "p-app",
    module: "ui/app.js",
  });
  assert.doesNotThrow(() => validateManifest(m({ element: "my.plugin_x-2", module: "a.mjs" })));
  const messageOf = (ui: unknown) => {
    try {
      validateManifest(m(ui));
    } catch (err) {
      assert.ok(err instanceof PackageError);
      assert.equal(err.code, "invalid_manifest");
      return err.message;
    }
    assert.fail(`accepted ${JSON.stringify(ui)}`);
  };
  for (const element of ["noHyphen", "nohyphen", "Upper-case", "1-starts-with-digit", "-x", "font-face", "a b-c", ""])
    assert.match(messageOf({ element, module: "ui.js" }), /\/ui\/element: must be a valid custom element name/);
  for (const module of ["/abs/ui.js", "../up.js", "a/../../b.js", "a\\b.js", "~/x.js"])
    assert.match(messageOf({ element: "p-app", module }), /\/ui\/module: must be a relative path inside the package/);
  assert.match(messageOf({ element: "p-app", module: "ui.css" }), /\/ui\/module: must be an ES module file/);
  assert.match(messageOf({ element: "p-app" }), /\/ui\/module: /);
  assert.match(messageOf({ element: "p-app", module: "ui.js", extra: 1 }), /\/ui\/extra: unknown field/);
  assert.match(messageOf("p-app"), /\/ui: /);
});

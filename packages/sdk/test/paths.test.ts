import assert from "node:assert/strict";
import { test } from "node:test";
import { isValidPluginName, pluginPaths } from "../src/paths.js";

test("plugin names: lower-case start, [a-z0-9_-], at most 64 chars", () => {
  for (const ok of ["a", "taskboard", "my-plugin_2", "0x", "a".repeat(64)])
    assert.equal(isValidPluginName(ok), true, ok);
  for (const bad of ["", "-a", "_a", "A", "a/b", "..", "a.b", "a b", "a".repeat(65), "é"])
    assert.equal(isValidPluginName(bad), false, bad);
});

test("pluginPaths puts everything under $HECATE_HOME/plugins/{name}", () => {
  const p = pluginPaths("/h", "tb");
  assert.equal(p.root, "/h/plugins/tb");
  assert.equal(p.archive, "/h/plugins/tb/tb.tar.gz");
  assert.equal(p.static, "/h/plugins/tb/package/priv/static");
  assert.equal(p.tmp, "/h/plugins/tb/run/tmp");
  assert.throws(() => pluginPaths("/h", "../x"), /invalid plugin name/);
});

#!/usr/bin/env node
// Runs every compiled test file (`{packages,examples}/*/dist/test/**/*.test.js`) with node:test.
// Node 20's `--test` takes no globs, so we collect the files here.
// Usage: node scripts/run-tests.mjs [workspace-dir-substring ...]   e.g. `node scripts/run-tests.mjs store`
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const filters = process.argv.slice(2);

function walk(dir, out) {
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir)) {
    const p = join(dir, entry);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (entry.endsWith(".test.js")) out.push(p);
  }
  return out;
}

const files = [];
for (const group of ["packages", "examples"]) {
  for (const ws of readdirSync(join(root, group))) {
    const dir = join(root, group, ws);
    if (filters.length && !filters.some((f) => relative(root, dir).includes(f))) continue;
    walk(join(dir, "dist", "test"), files);
  }
}
if (files.length === 0) {
  console.error("no test files found (did `npm run build` run?)");
  process.exit(1);
}
const concurrency = process.env.TEST_CONCURRENCY ?? "2";
const args = ["--test", `--test-concurrency=${concurrency}`, "--test-timeout=300000", ...files];
const result = spawnSync(process.execPath, args, { stdio: "inherit", cwd: root });
process.exit(result.status ?? 1);

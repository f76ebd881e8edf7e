/**
 * `hecate` as a command (issue 12 point 1): scripts/link-cli.sh (run by scripts/setup.sh after the build) and
 * `npm install -g ./packages/cli` put the built CLI on PATH, and it runs from a fresh environment that has nothing
 * but PATH: real npm, real bash, real processes. Each install goes to a temp npm prefix / bin dir.
 */
import assert from "node:assert/strict";
import { chmodSync, chownSync, lstatSync, readFileSync, statSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { CLI, tempDir } from "./helpers.js";
import { BARE_PATH, ROOT, run } from "./projects.js";

/** `hecate --help` and `--version` in a new shell whose environment is PATH only (bin dir, then node's, then /bin). */
/** The unprivileged user of the non-root case (`nobody`'s uid/gid on Debian). */
const NOBODY = 65534;

async function helpInFreshShell(binDir: string): Promise<void> {
  const path = `${binDir}:${BARE_PATH}`;
  const help = await run(
    "/usr/bin/env",
    ["-i", `PATH=${path}`, "bash", "--noprofile", "--norc", "-c", "hecate --help"],
    "/",
  );
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /Usage: hecate/);
  assert.match(help.stdout, /Exit codes:/);
  const where = await run(
    "/usr/bin/env",
    ["-i", `PATH=${path}`, "bash", "--noprofile", "--norc", "-c", "command -v hecate && hecate --version"],
    "/",
  );
  assert.equal(where.code, 0, where.stderr);
  const [found, version] = where.stdout.trim().split("\n");
  assert.equal(found, join(binDir, "hecate"));
  assert.equal(version, JSON.parse(readFileSync(join(ROOT, "packages/cli/package.json"), "utf8")).version);
}

test("the CLI bin starts with #!/usr/bin/env node", () => {
  assert.match(readFileSync(CLI, "utf8").split("\n")[0], /^#!\/usr\/bin\/env node$/);
});

test("scripts/link-cli.sh (setup's step): npm's global bin dir, then `hecate --help` in a fresh shell", async (t) => {
  const prefix = tempDir("prefix");
  t.after(() => rm(prefix, { recursive: true, force: true }));
  // npm_config_prefix: the global prefix npm (and so the script) uses; /usr for root on this machine
  const r = await run("bash", ["scripts/link-cli.sh"], ROOT, { PATH: process.env.PATH, npm_config_prefix: prefix });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`hecate -> ${prefix}/bin/hecate`));
  assert.ok(statSync(join(prefix, "bin", "hecate")).mode & 0o111, "the linked bin is executable");
  await helpInFreshShell(join(prefix, "bin"));
});

test("scripts/link-cli.sh with HECATE_BIN_DIR: a symlink there", async (t) => {
  const dir = tempDir("bindir");
  t.after(() => rm(dir, { recursive: true, force: true }));
  const bin = join(dir, "bin");
  const r = await run("bash", ["scripts/link-cli.sh"], ROOT, { PATH: process.env.PATH, HECATE_BIN_DIR: bin });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(lstatSync(join(bin, "hecate")).isSymbolicLink());
  await helpInFreshShell(bin);
});

test("scripts/link-cli.sh as a user who cannot write npm's prefix (no sudo): ~/.local/bin", async (t) => {
  const home = tempDir("user-home");
  t.after(() => rm(home, { recursive: true, force: true }));
  chownSync(home, NOBODY, NOBODY);
  // a user runs the script in a checkout of their own, where it makes the bin executable; this one is root's
  chmodSync(CLI, 0o755);
  // the user `nobody`, with nothing but PATH and HOME: /usr (npm's prefix here) is not writable, sudo not allowed
  const r = await run(
    "setpriv",
    [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      "--clear-groups",
      "env",
      "-i",
      `PATH=${process.env.PATH}`,
      `HOME=${home}`,
    ].concat(["bash", "scripts/link-cli.sh"]),
    ROOT,
    { PATH: process.env.PATH },
  );
  assert.equal(r.code, 0, r.stderr);
  const bin = join(home, ".local", "bin");
  assert.match(r.stdout, new RegExp(`hecate -> ${bin}/hecate`));
  assert.match(r.stdout, /is not on your PATH; add it/);
  await helpInFreshShell(bin);
});

test("npm install -g ./packages/cli: its dependencies (@hecate/sdk, @hecate/daemon) resolve", async (t) => {
  const prefix = tempDir("global");
  t.after(() => rm(prefix, { recursive: true, force: true }));
  const r = await run("npm", ["install", "-g", "--no-audit", "--no-fund", "--prefix", prefix, "./packages/cli"], ROOT);
  assert.equal(r.code, 0, r.stderr);
  await helpInFreshShell(join(prefix, "bin"));
  // a command that loads the SDK and the daemon's package code, from outside the repo
  const work = tempDir("global-work");
  t.after(() => rm(work, { recursive: true, force: true }));
  const made = await run(join(prefix, "bin", "hecate"), ["plugin", "new", "from-global", "--js", "--json"], work);
  assert.equal(made.code, 0, made.stderr);
  assert.equal(JSON.parse(made.stdout).name, "from-global");
});

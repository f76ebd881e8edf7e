/**
 * Plugin projects made by the real `hecate plugin new`, installed with the real npm. The registry is not reached from
 * tests: `typescript` and `@types/node` (the versions the scaffold names, checked against the repo's) are pointed at
 * this repo's own installed copies before `npm install`; the @hecate links are the scaffold's own `file:` specs.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CLI } from "./helpers.js";

export const ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
/**
 * PATH of a fresh shell that has no global `hecate` even where one is installed (scripts/setup.sh links it into
 * npm's global bin, which is /usr/bin here): a dir of links to just the tools the projects' npm scripts need.
 */
export const BARE_PATH = (() => {
  const dir = mkdtempSync(join(tmpdir(), "hecate-cli-path-"));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  const systemPath = (process.env.PATH ?? "").split(":").concat("/usr/bin", "/bin");
  symlinkSync(process.execPath, join(dir, "node"));
  for (const tool of ["npm", "npx", "sh", "bash", "env"]) {
    const found = systemPath.map((d) => join(d, tool)).find((f) => existsSync(f));
    assert.ok(found, `${tool} not found on PATH`);
    symlinkSync(found, join(dir, tool));
  }
  return dir;
})();

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `file args` in `cwd` with PATH = BARE_PATH (plus `env`), never as a sub-test of ours (no NODE_TEST_CONTEXT). */
export function run(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const { NODE_TEST_CONTEXT: _, ...base } = process.env;
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { cwd, env: { ...base, PATH: BARE_PATH, ...env }, timeout: 180_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) =>
        resolve({
          code: err ? (typeof err.code === "number" ? err.code : 1) : 0,
          stdout: String(stdout),
          stderr: String(stderr),
        }),
    );
  });
}

export async function ok(p: Promise<Run>, what: string): Promise<Run> {
  const r = await p;
  assert.equal(r.code, 0, `${what} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r;
}

// biome-ignore lint/suspicious/noExplicitAny: package.json of any shape
export function readJson(file: string): any {
  return JSON.parse(readFileSync(file, "utf8"));
}

/** The repo's own copy of a dev tool, after checking the scaffold asks for the version the repo builds with. */
function localTool(name: string, spec: string): string {
  const rootSpec = readJson(join(ROOT, "package.json")).devDependencies[name];
  assert.equal(spec, rootSpec, `the scaffold's ${name} matches the repo's`);
  return `file:${join(ROOT, "node_modules", name)}`;
}

/** `hecate plugin new name args... --dir dir`, then `npm install` in it (offline: see above). */
export async function newProject(dir: string, name: string, args: string[] = []): Promise<void> {
  await ok(run(process.execPath, [CLI, "plugin", "new", name, "--dir", dir, ...args], dirname(dir)), "plugin new");
  const file = join(dir, "package.json");
  const pkg = readJson(file);
  for (const tool of ["typescript", "@types/node"]) {
    if (pkg.devDependencies[tool]) pkg.devDependencies[tool] = localTool(tool, pkg.devDependencies[tool]);
  }
  writeFileSync(file, `${JSON.stringify(pkg, null, 2)}\n`);
  await npm(dir, ["install"]);
}

export function npm(dir: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return ok(run("npm", [...args, "--no-audit", "--no-fund"], dir, env), `npm ${args.join(" ")}`);
}

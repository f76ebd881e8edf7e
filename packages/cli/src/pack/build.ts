/**
 * The build step of `hecate plugin pack` (and so of `plugin install DIR` / `plugin upgrade DIR`): the project's own
 * `build` script when package.json has one, else `tsc -b` when a tsconfig.json is there, else nothing. A package is
 * never made from a stale build.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { CliError, EXIT } from "../errors.js";

export interface BuildResult {
  /** What ran, e.g. "npm run build" or "tsc -b"; null when the project has nothing to build. */
  command: string | null;
  ms: number;
}

/** At most this much of a failed build's output goes into the error (the end of it, where the errors are). */
const OUTPUT_TAIL_LINES = 40;

/** The TypeScript compiler the project uses (its own, from its node_modules), else the one beside this CLI. */
function findTsc(projectDir: string): string {
  for (const from of [join(projectDir, "package.json"), import.meta.url]) {
    try {
      return createRequire(from).resolve("typescript/bin/tsc");
    } catch {
      // not installed there
    }
  }
  throw new CliError(
    "typescript_missing",
    `${projectDir} has a tsconfig.json but TypeScript is not installed: run \`npm install --save-dev typescript\` there (or add a "build" script to package.json)`,
    EXIT.PACKAGE_REJECTED,
    { field: "tsconfig.json" },
  );
}

function run(command: string, args: string[], cwd: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    // Output is collected, not streamed: --json keeps stdout for the result, and a failure reports it in the error.
    const child = spawn(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"], env: process.env });
    let output = "";
    const collect = (d: Buffer) => {
      output += d.toString("utf8");
      if (output.length > 1 << 20) output = output.slice(-(1 << 19));
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
  });
}

async function buildScript(projectDir: string): Promise<boolean> {
  const file = join(projectDir, "package.json");
  if (!existsSync(file)) return false;
  try {
    const pkg = JSON.parse(await readFile(file, "utf8")) as { scripts?: Record<string, unknown> };
    return typeof pkg.scripts?.build === "string";
  } catch (err) {
    throw new CliError("invalid_json", `${file} is not valid JSON: ${(err as Error).message}`, EXIT.PACKAGE_REJECTED);
  }
}

/** Builds `projectDir`; a failed build throws `build_failed` with the end of its output. */
export async function buildProject(projectDir: string): Promise<BuildResult> {
  const started = performance.now();
  let command: string;
  let result: { code: number | null; output: string };
  if (await buildScript(projectDir)) {
    command = "npm run build";
    result = await run(process.platform === "win32" ? "npm.cmd" : "npm", ["run", "--silent", "build"], projectDir);
  } else if (existsSync(join(projectDir, "tsconfig.json"))) {
    command = "tsc -b";
    result = await run(process.execPath, [findTsc(projectDir), "-b", projectDir], projectDir);
  } else {
    return { command: null, ms: 0 };
  }
  if (result.code !== 0) {
    const tail = result.output.trimEnd().split("\n").slice(-OUTPUT_TAIL_LINES).join("\n");
    throw new CliError(
      "build_failed",
      `\`${command}\` failed in ${projectDir} (exit ${result.code}); nothing was packed:\n${tail}`,
      EXIT.PACKAGE_REJECTED,
      { command, exitCode: result.code },
    );
  }
  return { command, ms: Math.round(performance.now() - started) };
}

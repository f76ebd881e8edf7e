/**
 * The TypeScript side of `hecate plugin dev`: the project's tsconfig.json compiled by a warm watch program (what
 * `tsc --watch` runs, in this process), so a save is compiled in milliseconds instead of a cold `tsc` start per save.
 * Nothing is emitted while there are errors (noEmitOnError), so dist/ keeps the last good build.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import type * as TS from "typescript";
import { CliError, EXIT } from "../errors.js";

export interface CompileResult {
  errors: number;
  /** From the change the compiler saw (or its start) to the end of the compile. */
  ms: number;
  /** The formatted diagnostics (file:line:col - error TSxxxx: ...), empty when it compiled. */
  diagnostics: string;
}

/** The project's own TypeScript (its node_modules), else the one beside this CLI. */
function loadTypeScript(projectDir: string): typeof TS {
  for (const from of [join(projectDir, "package.json"), import.meta.url]) {
    try {
      return createRequire(from)("typescript") as typeof TS;
    } catch {
      // not installed there
    }
  }
  throw new CliError(
    "typescript_missing",
    `${projectDir} has a tsconfig.json but TypeScript is not installed: run npm install there`,
    EXIT.USAGE,
    { field: "tsconfig.json" },
  );
}

export function hasTsconfig(projectDir: string): boolean {
  return existsSync(join(projectDir, "tsconfig.json"));
}

/**
 * Starts watching and compiling `projectDir/tsconfig.json`; `onResult` runs after every compile (the first one too).
 * Returns a function that stops the watcher.
 */
export function watchTypeScript(
  projectDir: string,
  settleMs: number,
  onResult: (r: CompileResult) => void,
): () => void {
  const ts = loadTypeScript(projectDir);
  const formatHost: TS.FormatDiagnosticsHost = {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => projectDir,
    getNewLine: () => "\n",
  };
  let diagnostics: TS.Diagnostic[] = [];
  let started = performance.now();
  const host = ts.createWatchCompilerHost(
    join(projectDir, "tsconfig.json"),
    // a save re-checks the changed file and its direct importers only (tsc's own watch option); `npm test` and the
    // pack's build still check everything
    { noEmitOnError: true, assumeChangesOnlyAffectDirectDependencies: true },
    ts.sys,
    ts.createEmitAndSemanticDiagnosticsBuilderProgram,
    (d) => diagnostics.push(d),
    (d, _newLine, _options, errorCount) => {
      // "Starting compilation" / "File change detected": a compile begins
      if (d.code === 6031 || d.code === 6032) {
        diagnostics = [];
        started = performance.now();
      }
      if (errorCount === undefined) return; // only the "Found N errors" report ends a compile
      const ms = Math.round(performance.now() - started);
      onResult({ errors: errorCount, ms, diagnostics: ts.formatDiagnostics(diagnostics, formatHost).trimEnd() });
    },
  );
  // tsc --watch waits 250 ms after a change before compiling (to batch a burst of saves); a dev loop that promises
  // "served within 2 s" batches with its own, shorter settle time instead
  const setTimer = host.setTimeout;
  if (setTimer) host.setTimeout = (cb, ms, ...args) => setTimer(cb, Math.min(ms, settleMs), ...args);
  const watch = ts.createWatchProgram(host);
  return () => watch.close();
}

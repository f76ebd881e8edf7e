/**
 * Plugin code is ES modules, always. Node decides whether a `.js` file is ESM from the nearest package.json above
 * it: a package without its own (every package packed before `hecate plugin pack` added one) would otherwise load as
 * whatever a package.json above `$HECATE_HOME` says, e.g. `{"type":"commonjs"}` makes a scaffolded plugin fail.
 *
 * The daemon writes `{"type":"module"}` into the plugin's root dir (`$HECATE_HOME/plugins/{name}/package.json`),
 * BESIDE the extracted package (`{root}/package/`), not inside it: the package's hecate-files.json lists every file
 * of the package dir (a file added there would fail verification), and the root dir is the daemon's own. A
 * package.json the package itself carries is nearer to the code and still decides.
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const ESM_SCOPE_JSON = `{"type":"module"}\n`;

/** Makes `dir` (and every file below it that has no nearer package.json) an ESM package scope. */
export function ensureEsmScope(dir: string): void {
  const file = join(dir, "package.json");
  try {
    if (readFileSync(file, "utf8") === ESM_SCOPE_JSON) return;
  } catch {
    // missing or unreadable: (re)written below
  }
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, ESM_SCOPE_JSON, { mode: 0o644 });
  renameSync(tmp, file);
}

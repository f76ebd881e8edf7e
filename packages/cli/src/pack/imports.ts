/**
 * The pack's static check that a package can load: every import specifier of the plugin's own shipped modules
 * (`.js`/`.mjs` outside node_modules and outside the browser's assets: `priv/`, the static dir; read with
 * es-module-lexer) must
 * resolve from what the package ships: a relative path to a shipped file, a Node builtin, `@hecate/sdk` (provided
 * by the daemon), or a package in the shipped node_modules. A missing one fails the pack naming the module, instead
 * of the daemon's load failing after install. Dynamic imports with a computed specifier cannot be checked statically
 * and are skipped; dependencies' own imports are theirs (they may guard optional ones).
 */
import { existsSync, statSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { isBuiltin } from "node:module";
import { dirname, join, relative, resolve, sep } from "node:path";
import { init, parse } from "es-module-lexer";
import { CliError, EXIT } from "../errors.js";
import { DAEMON_PROVIDED } from "./dependencies.js";

export interface UnresolvedImport {
  /** The importing file, relative to the package root. */
  file: string;
  specifier: string;
  /** The package name of a bare specifier; the specifier itself for a relative one. */
  module: string;
}

/** `zod/v4` -> `zod`, `@scope/pkg/sub` -> `@scope/pkg`. */
export function packageNameOf(specifier: string): string {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Whether `name` is found in a `node_modules` between the importing file's dir and the package root. */
function shippedPackage(root: string, fromDir: string, name: string): boolean {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "node_modules", name, "package.json"))) return true;
    if (dir === root || !dir.startsWith(root + sep)) return false;
  }
}

function unresolved(root: string, file: string, specifier: string): UnresolvedImport | null {
  const spec = specifier.replace(/[?#].*$/, "");
  if (spec.startsWith("./") || spec.startsWith("../") || spec.startsWith("/")) {
    const target = resolve(dirname(file), spec);
    if (target.startsWith(root + sep) && isFile(target)) return null;
    return { file: relative(root, file), specifier, module: specifier };
  }
  if (isBuiltin(spec) || spec.startsWith("#") || /^[a-z][a-z0-9+.-]*:/i.test(spec)) return null; // node:, data:, file:
  const name = packageNameOf(spec);
  if (DAEMON_PROVIDED.has(name) || shippedPackage(root, dirname(file), name)) return null;
  return { file: relative(root, file), specifier, module: name };
}

async function pluginModules(root: string, assetDirs: string[]): Promise<string[]> {
  const out: string[] = [];
  const assets = assetDirs.map((d) => join(root, d) + sep);
  for (const e of await readdir(root, { recursive: true, withFileTypes: true })) {
    const file = join(e.parentPath, e.name);
    if (!e.isFile() || !/\.m?js$/.test(e.name)) continue;
    if (relative(root, file).split(sep).includes("node_modules")) continue;
    if (assets.some((dir) => file.startsWith(dir))) continue; // served to browsers, never loaded by Node
    out.push(file);
  }
  return out.sort();
}

/**
 * Every import of the plugin's modules in `root` (a staged package) that the package cannot satisfy; files under
 * `assetDirs` (relative to root: static assets for browsers) are not modules of the plugin.
 */
export async function findUnresolvedImports(root: string, assetDirs: string[] = []): Promise<UnresolvedImport[]> {
  await init;
  const missing: UnresolvedImport[] = [];
  for (const file of await pluginModules(root, assetDirs)) {
    let imports: ReturnType<typeof parse>[0];
    try {
      [imports] = parse(await readFile(file, "utf8"), file);
    } catch (err) {
      throw new CliError(
        "unparsable_module",
        `${relative(root, file)} is not valid JavaScript: ${(err as Error).message}`,
        EXIT.PACKAGE_REJECTED,
        { file: relative(root, file) },
      );
    }
    for (const imp of imports) {
      if (imp.type === "import-meta" || imp.specifier === undefined) continue;
      if (imp.type !== "dynamic" && imp.typeOnly) continue;
      const miss = unresolved(root, file, imp.specifier);
      if (miss) missing.push(miss);
    }
  }
  return missing;
}

/** Fails the pack with `unresolved_import` naming each module the package does not ship. */
export async function checkImports(root: string, assetDirs: string[] = []): Promise<void> {
  const missing = await findUnresolvedImports(root, assetDirs);
  if (missing.length === 0) return;
  const lines = missing.map((m) =>
    m.module === m.specifier && /^[./]/.test(m.specifier)
      ? `  ${m.file} imports "${m.specifier}", which is not in the package (is it in package.json "files"?)`
      : `  ${m.file} imports "${m.specifier}": module "${m.module}" is not shipped (add it to package.json "dependencies" and npm install it)`,
  );
  const modules = [...new Set(missing.map((m) => m.module))];
  throw new CliError(
    "unresolved_import",
    `cannot resolve ${modules.map((m) => `"${m}"`).join(", ")} from the package:\n${lines.join("\n")}`,
    EXIT.PACKAGE_REJECTED,
    { modules, imports: missing },
  );
}

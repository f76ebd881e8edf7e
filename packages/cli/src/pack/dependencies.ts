/**
 * A plugin's production dependencies, as shipped in its package: a pruned `node_modules` built from the tree the
 * author installed (and tested against), not a fresh `npm install`:
 *  - native addons are shipped as they were built in the project (a reinstall would have to download a prebuilt
 *    binary or compile one, neither of which works offline or without a toolchain);
 *  - it needs no network and no lockfile, and works for a project inside an npm workspace (its dependencies hoisted
 *    to the workspace root) as well as for a standalone one;
 *  - the SDK is never shipped: `@hecate/sdk` always resolves to the daemon's single copy (worker/sdk-link.ts), and
 *    the daemon refuses a package that carries its own (@hecate/package, extract.ts).
 *
 * Resolution is Node's own: a dependency named by a package.json is the nearest `node_modules/<name>` walking up
 * from the (real path of the) package that depends on it. The closure of `dependencies`, `optionalDependencies` and
 * installed `peerDependencies` from the project is then laid out again in the package: each package hoisted to the
 * top `node_modules/` unless a different copy of the same name already sits on its resolution path, in which case it
 * is nested under the package that needs it (so two versions of a library coexist, as npm lays them out).
 * Hand-written (about a hundred lines) rather than @npmcli/arborist: arborist is a large dependency and would
 * still need this walk to handle workspace hoisting and links the same way Node resolves them.
 */
import { existsSync, realpathSync } from "node:fs";
import { cp, readdir, readFile, stat } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import { CliError, EXIT } from "../errors.js";

/** Never shipped: the daemon provides it (one SDK instance per worker, shared with the host). */
export const DAEMON_PROVIDED = new Set(["@hecate/sdk"]);

/** A package dir copied into the package's node_modules tree. */
export interface Placement {
  name: string;
  version: string;
  /** Real path of the installed package in the project's tree. */
  source: string;
  /** Path inside the package, e.g. `node_modules/zod` or `node_modules/a/node_modules/ms`. */
  dest: string;
  /**
   * A linked local package (a workspace member, `npm link`, `file:`): it is a whole project dir, not a published
   * package, so only what it would publish goes in: the paths its package.json `files` names (plus package.json,
   * README, LICENSE), as `npm pack` would. Absent: everything (an installed package already is just that).
   */
  published?: string[];
}

export interface ShippedDependency {
  name: string;
  version: string;
  dest: string;
  files: number;
  bytes: number;
  /** Carries a compiled addon (`*.node`). */
  native: boolean;
  /** Has a binding.gyp but no compiled addon was found: it loads only if its native part is optional. */
  unbuilt?: boolean;
}

interface PackageJson {
  name?: string;
  version?: string;
  files?: unknown;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

async function readPackageJson(dir: string): Promise<PackageJson> {
  const file = join(dir, "package.json");
  try {
    return JSON.parse(await readFile(file, "utf8")) as PackageJson;
  } catch (err) {
    throw new CliError("invalid_dependency", `cannot read ${file}: ${(err as Error).message}`, EXIT.PACKAGE_REJECTED, {
      file,
    });
  }
}

/** Node's lookup of a package dir: the nearest `node_modules/<name>` from `fromDir` up to the file system root. */
function locate(name: string, fromDir: string): string | null {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return realpathSync(candidate);
    if (dirname(dir) === dir) return null;
  }
}

/** The dependency names a package needs at run time, and whether a missing one is an error. */
function runtimeDependencies(pkg: PackageJson): { name: string; required: boolean }[] {
  const out = new Map<string, boolean>();
  for (const name of Object.keys(pkg.peerDependencies ?? {})) out.set(name, false);
  for (const name of Object.keys(pkg.optionalDependencies ?? {})) out.set(name, false);
  for (const name of Object.keys(pkg.dependencies ?? {})) if (!out.has(name)) out.set(name, true);
  return [...out].filter(([name]) => !DAEMON_PROVIDED.has(name)).map(([name, required]) => ({ name, required }));
}

/** The package dirs a `dest` resolves a bare name through, nearest first (its own node_modules, then its parents'). */
function lookupPath(dest: string): string[] {
  const levels = [dest];
  let d = dest;
  while (d !== "") {
    const i = d.lastIndexOf("/node_modules/");
    d = i < 0 ? "" : d.slice(0, i);
    levels.push(d);
  }
  return levels;
}

const MAX_NESTING = 40;

/** See Placement.published: the paths a linked package's `files` names, when it names plain paths (no globs). */
function published(source: string, pkg: PackageJson): string[] | undefined {
  if (source.split(sep).includes("node_modules") || !Array.isArray(pkg.files)) return undefined;
  const paths = pkg.files.map((f) => (typeof f === "string" ? f.replace(/^\.?\//, "").replace(/\/+$/, "") : "*"));
  if (paths.some((f) => f === "" || /[*?{}[\]!]/.test(f))) return undefined; // globs: keep it all
  return ["package.json", ...paths];
}

/** Always published by npm, whatever `files` says. */
const ALWAYS_PUBLISHED = /^(readme|license|licence|copying|notice)(\..*)?$/i;

/** Whether `rel` is a published path, inside one, or a dir on the way to one. */
function isPublished(rel: string, paths: string[]): boolean {
  if (ALWAYS_PUBLISHED.test(rel)) return true;
  return paths.some((f) => rel === f || rel.startsWith(`${f}/`) || f.startsWith(`${rel}/`));
}

/** Computes where every production dependency of `projectDir` goes in the package (see the module comment). */
export async function planDependencies(projectDir: string): Promise<Placement[]> {
  if (!existsSync(join(projectDir, "package.json"))) return [];
  const placed = new Map<string, Placement>();
  const queue: { dest: string; source: string; pkg: PackageJson }[] = [
    { dest: "", source: realpathSync(projectDir), pkg: await readPackageJson(projectDir) },
  ];
  for (let item = queue.shift(); item; item = queue.shift()) {
    for (const { name, required } of runtimeDependencies(item.pkg)) {
      const target = locate(name, item.source);
      if (!target) {
        if (!required) continue;
        const who = item.dest === "" ? "the project" : item.pkg.name;
        throw new CliError(
          "dependency_missing",
          `${who} depends on ${name}, which is not installed: run \`npm install\` in ${projectDir} and pack again`,
          EXIT.PACKAGE_REJECTED,
          { module: name },
        );
      }
      const seen = lookupPath(item.dest)
        .map((level) => placed.get(level === "" ? `node_modules/${name}` : `${level}/node_modules/${name}`))
        .find(Boolean);
      if (seen?.source === target) continue; // already resolvable from here, the very same copy
      const dest = seen && item.dest !== "" ? `${item.dest}/node_modules/${name}` : `node_modules/${name}`;
      if (dest.split("/node_modules/").length > MAX_NESTING) {
        throw new CliError(
          "dependency_cycle",
          `dependencies nest deeper than ${MAX_NESTING} levels at ${dest}`,
          EXIT.FAILURE,
        );
      }
      const pkg = await readPackageJson(target);
      placed.set(dest, {
        name,
        version: pkg.version ?? "0.0.0",
        source: target,
        dest,
        published: published(target, pkg),
      });
      queue.push({ dest, source: target, pkg });
    }
  }
  return [...placed.values()].sort((a, b) => a.dest.localeCompare(b.dest));
}

/** C/C++ sources and headers: what node-gyp compiled the addon from. */
const NATIVE_SOURCES = /\.(c|cc|cpp|cxx|h|hh|hpp|hxx|gyp|gypi)$/;

/**
 * Whether a path of an installed package goes into the package. Left out: its own `node_modules` (nested
 * dependencies are placed by the plan), `.git`, and in a native addon built from source (binding.gyp) what only the
 * build needed: its C/C++ sources and headers, and under build/ everything but the compiled `*.node` files (the
 * only ones loaded at run time).
 */
async function shipped(p: Placement, src: string, native: boolean): Promise<boolean> {
  const parts = relative(p.source, src).split(sep);
  if (parts[0] === "node_modules" || parts[0] === ".git") return false;
  if (p.published && parts[0] !== "" && !isPublished(parts.join("/"), p.published)) return false;
  if (!native) return true;
  const isDir = (await stat(src)).isDirectory();
  if (parts[0] !== "build" || parts.length < 2) return isDir || !NATIVE_SOURCES.test(src);
  if (isDir) return !["obj", "obj.target", ".deps"].includes(parts[parts.length - 1]!);
  return src.endsWith(".node");
}

/** Files, bytes and whether a `*.node` addon is among them, below `dir` (`nested: false` skips node_modules dirs). */
export async function treeSize(dir: string, nested = true): Promise<{ files: number; bytes: number; native: boolean }> {
  let files = 0;
  let bytes = 0;
  let native = false;
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const file = join(e.parentPath, e.name);
    if (!nested && relative(dir, file).split(sep).includes("node_modules")) continue;
    files++;
    bytes += (await stat(file)).size;
    if (e.name.endsWith(".node")) native = true;
  }
  return { files, bytes, native };
}

/** Copies the planned packages into `staging` (links resolved: the package format has none). */
export async function copyDependencies(staging: string, plan: Placement[]): Promise<ShippedDependency[]> {
  const out: ShippedDependency[] = [];
  for (const p of plan) {
    const native = existsSync(join(p.source, "binding.gyp"));
    const dest = join(staging, p.dest);
    await cp(p.source, dest, {
      recursive: true,
      dereference: true,
      filter: (src) => shipped(p, src, native),
    });
    const size = await treeSize(dest, false);
    out.push({
      name: p.name,
      version: p.version,
      dest: p.dest,
      ...size,
      ...(native && !size.native && { unbuilt: true }),
    });
  }
  return out;
}

/**
 * `hecate plugin pack` of a project dir (also what `plugin install DIR` / `upgrade DIR` upload): build it, stage the
 * package's files and its production dependencies (dependencies.ts), check that every import resolves from what is
 * shipped (imports.ts), then write the digests of every staged file (and the signature) with the daemon's own
 * packPlugin. The staged tree is exactly what gets digested and archived: every shipped dependency file is covered.
 */
import { existsSync } from "node:fs";
import { cp, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, isAbsolute, join, normalize, resolve } from "node:path";
import { PackageError, packPlugin, readArchiveManifest, validateManifest } from "@hecate/package";
import type { PluginManifest } from "@hecate/sdk";
import { CliError, EXIT } from "../errors.js";
import { type BuildResult, buildProject } from "./build.js";
import { copyDependencies, planDependencies, type ShippedDependency, treeSize } from "./dependencies.js";
import { checkImports } from "./imports.js";

/** PackageError (the daemon's typed package failures) -> CliError with exit code "package rejected". */
export function packageFailure(err: unknown, what: string): never {
  if (err instanceof PackageError) {
    throw new CliError(err.code, `${what}: ${err.message}`, EXIT.PACKAGE_REJECTED, err.details);
  }
  throw err;
}

export async function readJson(file: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    throw new CliError("missing_manifest", `${what} not found: ${file}`, EXIT.PACKAGE_REJECTED, { field: file });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CliError("invalid_json", `${file} is not valid JSON: ${(err as Error).message}`, EXIT.PACKAGE_REJECTED);
  }
}

/** The package files a container's command names (`/plugin/<file>`: the package is mounted at /plugin). */
function containerCommandFiles(manifest: PluginManifest): string[] {
  const out: string[] = [];
  for (const arg of manifest.container?.command ?? []) {
    const m = /^\/plugin\/([^/]+)/.exec(arg);
    if (m) out.push(m[1]!);
  }
  return out;
}

/**
 * What goes into the package: manifest.json plus package.json "files" (npm's convention for "what gets published"),
 * or by default the callback module's top-level dir (a container's: the files its command runs) and priv/.
 */
async function packageEntries(projectDir: string, manifest: PluginManifest): Promise<string[]> {
  const pkgJson = join(projectDir, "package.json");
  let listed: string[] | undefined;
  if (existsSync(pkgJson)) {
    const files = (JSON.parse(await readFile(pkgJson, "utf8")) as { files?: unknown }).files;
    if (Array.isArray(files) && files.every((f) => typeof f === "string")) listed = files;
  }
  const code =
    manifest.plugin_type === "container" && !manifest.callback_module
      ? containerCommandFiles(manifest)
      : [(manifest.callback_module ?? "dist/index.js").split("/")[0]!];
  const entries = listed ?? [...code, "priv"];
  if (manifest.container?.image_archive) entries.push(manifest.container.image_archive);
  const out = new Set<string>(["manifest.json"]);
  for (const e of entries) {
    const rel = normalize(e).replace(/\/+$/, "");
    if (isAbsolute(rel) || rel.startsWith("..")) {
      throw new CliError("invalid_files", `package file ${JSON.stringify(e)} lies outside the project`, EXIT.USAGE, {
        field: "files",
      });
    }
    if (rel === "node_modules" || rel.startsWith("node_modules/")) {
      throw new CliError(
        "invalid_files",
        `package.json "files" lists ${JSON.stringify(e)}: dependencies are packed from package.json "dependencies", not listed`,
        EXIT.USAGE,
        { field: "files" },
      );
    }
    if (rel === "priv" && !listed && !existsSync(join(projectDir, rel))) continue;
    if (!existsSync(join(projectDir, rel))) {
      throw new CliError(
        "missing_file",
        `${rel} (listed for the package) does not exist in ${projectDir}`,
        EXIT.USAGE,
        {
          field: "files",
        },
      );
    }
    out.add(rel);
  }
  return [...out];
}

export interface PackResult {
  name: string;
  version: string;
  file: string;
  /** Size of the .tar.gz. */
  bytes: number;
  /** Files in the package (digest and signature files included) and their total size. */
  files: number;
  unpackedBytes: number;
  entries: string[];
  signed: boolean;
  build: BuildResult;
  /** Every shipped dependency (one entry per copy), largest first. */
  dependencies: ShippedDependency[];
  /** Things that may fail at load, e.g. a native addon shipped without its compiled binary. */
  warnings: string[];
  ms: number;
}

export interface PackOptions {
  privateKeyPem?: string;
  /** Skip the build step (the project is packed as it is). */
  build?: boolean;
}

/** Type declarations, their maps and tsc's build info: nothing loads them at run time. */
const TYPINGS = /\.d\.[mc]?ts(\.map)?$|\.tsbuildinfo$/;

/** Written into a package that does not carry a package.json of its own. */
export const ESM_PACKAGE_JSON = `{"type":"module"}\n`;

/** Packs a plugin project into `outFile` (digests always; signature when `privateKeyPem` is given). */
export async function packProject(
  projectDir: string,
  outFile: string | undefined,
  opts: PackOptions = {},
): Promise<PackResult> {
  const started = performance.now();
  const dir = resolve(projectDir);
  if (!existsSync(dir)) throw new CliError("source_not_found", `${projectDir} does not exist`, EXIT.USAGE);
  const build = opts.build === false ? { command: null, ms: 0 } : await buildProject(dir);
  let manifest: PluginManifest;
  try {
    manifest = validateManifest(await readJson(join(dir, "manifest.json"), "manifest.json"));
  } catch (err) {
    packageFailure(err, `invalid manifest.json in ${dir}`);
  }
  const entries = await packageEntries(dir, manifest);
  const plan = await planDependencies(dir);
  const out = resolve(outFile ?? join(dir, `${manifest.name}-${manifest.version}.tar.gz`));
  const staging = await mkdtemp(join(tmpdir(), "hecate-pack-"));
  let dependencies: ShippedDependency[] = [];
  let packed: { files: number; bytes: number } = { files: 0, bytes: 0 };
  try {
    // staged copy: only the package's files, symlinks resolved (the format has no links), no compiler by-products
    for (const e of entries) {
      await mkdir(dirname(join(staging, e)), { recursive: true });
      await cp(join(dir, e), join(staging, e), {
        recursive: true,
        dereference: true,
        filter: (src) => !TYPINGS.test(src),
      });
    }
    // Plugin code is ESM: without a package.json of its own, a package's `.js` files would load as whatever a
    // package.json above the daemon's $HECATE_HOME says. (The daemon also guarantees it for older packages.)
    if (!existsSync(join(staging, "package.json"))) {
      await writeFile(join(staging, "package.json"), ESM_PACKAGE_JSON, { mode: 0o644 });
      entries.push("package.json");
    }
    dependencies = await copyDependencies(staging, plan);
    if (dependencies.length > 0) entries.push("node_modules");
    await checkImports(staging, ["priv", manifest.static ?? "priv/static"]);
    await mkdir(dirname(out), { recursive: true });
    const tmpOut = join(staging, "..", `${basename(staging)}.tar.gz`);
    try {
      await packPlugin(staging, tmpOut, { privateKeyPem: opts.privateKeyPem });
      // the daemon's pass-1 checks (entry count, names, depth, case collisions...): refused here, not at install
      await readArchiveManifest(tmpOut);
      packed = await treeSize(staging);
      await rename(tmpOut, out);
    } finally {
      await rm(tmpOut, { force: true });
    }
  } catch (err) {
    packageFailure(err, `cannot pack ${dir}`);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return {
    name: manifest.name,
    version: manifest.version,
    file: out,
    bytes: (await stat(out)).size,
    files: packed.files,
    unpackedBytes: packed.bytes,
    entries,
    signed: Boolean(opts.privateKeyPem),
    build,
    dependencies: dependencies.sort((a, b) => b.bytes - a.bytes || a.dest.localeCompare(b.dest)),
    warnings: dependencies
      .filter((d) => d.unbuilt)
      .map(
        (d) =>
          `${d.name}@${d.version} is a native addon but no compiled binary (*.node) was found in it: it will fail to load unless its native part is optional; build it with \`npm rebuild ${d.name}\` and pack again`,
      ),
    ms: Math.round(performance.now() - started),
  };
}

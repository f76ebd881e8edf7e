/** `hecate plugin new`: copies a template project (packages/cli/templates/) and links the SDK for its tests. */
import { existsSync, readdirSync } from "node:fs";
import { lstat, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureSdkLink } from "@hecate/daemon/runtime/sdk-link";
import { isValidPluginName } from "@hecate/sdk/paths";
import { CliError, EXIT } from "./errors.js";

const TEMPLATES = fileURLToPath(new URL("../../templates/", import.meta.url));

export interface ScaffoldResult {
  name: string;
  dir: string;
  kind: "plugin" | "container";
  files: string[];
  sdkLink: string;
}

/**
 * `node_modules/@hecate/sdk` -> this installation's SDK. The SDK is not on a registry: plugins get it from the daemon
 * at run time, so their tests use the very same copy through this link.
 */
export async function linkSdk(projectDir: string): Promise<string> {
  // the daemon's own link helper renames over a link only: a real dir there (an installed copy) goes first
  const link = join(projectDir, "node_modules", "@hecate", "sdk");
  if (!(await lstat(link).catch(() => null))?.isSymbolicLink()) await rm(link, { recursive: true, force: true });
  return ensureSdkLink(projectDir);
}

async function listFiles(dir: string, base = dir): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(p, base)));
    else out.push(relative(base, p));
  }
  return out;
}

export async function scaffoldPlugin(
  name: string,
  opts: { container: boolean; dir?: string; force?: boolean },
): Promise<ScaffoldResult> {
  if (!isValidPluginName(name)) {
    throw new CliError(
      "invalid_name",
      `invalid plugin name ${JSON.stringify(name)}: use lower-case letters, digits, "_" and "-" (at most 64, starting with a letter or digit)`,
      EXIT.USAGE,
      { field: "name" },
    );
  }
  const dir = resolve(opts.dir ?? name);
  if (existsSync(dir) && readdirSync(dir).length > 0 && !opts.force) {
    throw new CliError(
      "directory_not_empty",
      `${dir} exists and is not empty (use --force to write into it)`,
      EXIT.USAGE,
      {
        field: "dir",
      },
    );
  }
  const kind = opts.container ? "container" : "plugin";
  const templateDir = join(TEMPLATES, kind);
  const files = await listFiles(templateDir);
  for (const file of files) {
    const text = (await readFile(join(templateDir, file), "utf8")).replaceAll("{{name}}", name);
    // npm drops `.gitignore` from published packages, so the template keeps it as `gitignore`
    const target = join(dir, file === "gitignore" ? ".gitignore" : file);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(`${target}.tmp`, text);
    await rename(`${target}.tmp`, target);
  }
  const sdkLink = await linkSdk(dir);
  return { name, dir, kind, files: files.map((f) => (f === "gitignore" ? ".gitignore" : f)).sort(), sdkLink };
}

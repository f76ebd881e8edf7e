/**
 * `hecate plugin new`: a plugin project from the templates (packages/cli/templates/: `common/` for every project,
 * `<kind>/<lang>/` for the sources, `ts/` for TypeScript ones) plus the generated package.json, manifest.json and
 * README (project-files.ts). `hecate plugin link-sdk`: re-points an existing project at this installation.
 */
import { existsSync, readdirSync } from "node:fs";
import { mkdir, readdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { isValidPluginName } from "@hecate/sdk/paths";
import { CliError, EXIT } from "../errors.js";
import {
  hecateDevDependencies,
  type Kind,
  type Lang,
  manifestJson,
  packageJson,
  readme,
  uiElement,
} from "./project-files.js";

const TEMPLATES = fileURLToPath(new URL("../../../templates/", import.meta.url));

export interface ScaffoldResult {
  name: string;
  dir: string;
  kind: Kind;
  lang: Lang;
  files: string[];
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

async function writeAtomic(file: string, text: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
}

export async function scaffoldPlugin(
  name: string,
  opts: { container: boolean; js?: boolean; dir?: string; force?: boolean },
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
  const kind: Kind = opts.container ? "container" : "plugin";
  const lang: Lang = opts.js ? "js" : "ts";
  const layers = ["common", join(kind, lang), ...(lang === "ts" ? ["ts"] : [])];
  const written = new Map<string, string>([
    ["package.json", packageJson(name, kind, lang)],
    ["manifest.json", manifestJson(name, kind, lang)],
    ["README.md", readme(name, kind, lang)],
  ]);
  for (const layer of layers) {
    const layerDir = join(TEMPLATES, layer);
    for (const file of await listFiles(layerDir)) {
      // npm drops `.gitignore` from published packages, so the template keeps it as `gitignore`
      const target = file === "gitignore" ? ".gitignore" : file;
      written.set(
        target,
        (await readFile(join(layerDir, file), "utf8"))
          .replaceAll("{{name}}", name)
          .replaceAll("{{element}}", uiElement(name)),
      );
    }
  }
  for (const [file, text] of written) await writeAtomic(join(dir, file), text);
  return { name, dir, kind, lang, files: [...written.keys()].sort() };
}

/**
 * Points the project's `@hecate/sdk` / `@hecate/cli` devDependencies at this installation (`file:` links, kept by
 * `npm install`); the caller runs `npm install` afterwards. Projects made before these links existed get them too.
 */
export async function linkProject(
  projectDir: string,
): Promise<{ packageJson: string; devDependencies: Record<string, string> }> {
  const file = join(resolve(projectDir), "package.json");
  let pkg: { devDependencies?: Record<string, string>; dependencies?: Record<string, string> };
  try {
    pkg = JSON.parse(await readFile(file, "utf8"));
  } catch (err) {
    throw new CliError("no_package_json", `cannot read ${file}: ${(err as Error).message}`, EXIT.USAGE, {
      field: "dir",
    });
  }
  const links = hecateDevDependencies();
  // the daemon provides the SDK at run time: a runtime dependency on it would be shipped in the package
  if (pkg.dependencies) delete pkg.dependencies["@hecate/sdk"];
  pkg.devDependencies = { ...pkg.devDependencies, ...links };
  await writeAtomic(file, `${JSON.stringify(pkg, null, 2)}\n`);
  return { packageJson: file, devDependencies: links };
}

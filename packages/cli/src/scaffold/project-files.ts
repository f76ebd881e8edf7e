/**
 * The generated files of a plugin project that depend on its kind and language: package.json (scripts, the file:
 * links to this installation's SDK and CLI), manifest.json and the README. The sources come from templates/.
 */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { isValidElementName } from "@hecate/sdk";
import { sdkPackageDir } from "@hecate/sdk/paths";

export type Kind = "plugin" | "container";
export type Lang = "ts" | "js";

/** The versions hecate itself builds with (root package.json): a scaffolded project compiles like the repo does. */
const TYPESCRIPT = "~5.9.3";
const TYPES_NODE = "^20.19.0";

/** Real path of this CLI's package dir (the `@hecate/cli` a project's `hecate` scripts run). */
export function cliPackageDir(): string {
  return realpathSync(fileURLToPath(new URL("../../../", import.meta.url)));
}

/**
 * devDependencies that point at THIS hecate installation. `file:` dirs are symlinked by npm and recorded in
 * package.json, so `npm install` keeps them (a hand-made link was pruned by every install), the SDK is the very copy
 * the daemon gives plugins at run time, and `node_modules/.bin/hecate` runs the scripts without a global `hecate`.
 * The SDK is never shipped in a package: the daemon provides it.
 */
export function hecateDevDependencies(): Record<string, string> {
  return { "@hecate/cli": `file:${cliPackageDir()}`, "@hecate/sdk": `file:${sdkPackageDir()}` };
}

export function packageJson(name: string, kind: Kind, lang: Lang): string {
  const ts = lang === "ts";
  const pkg = {
    name,
    version: "0.1.0",
    private: true,
    type: "module",
    description: kind === "container" ? "A hecate container plugin" : "A hecate plugin",
    files: [ts ? "dist/src" : "src", "priv"],
    scripts: {
      ...(ts ? { build: "tsc -p tsconfig.json" } : {}),
      test: ts ? "tsc -p tsconfig.json && node --test dist/test/" : "node --test test/",
      pack: "hecate plugin pack .",
      "install-plugin": "hecate plugin install .",
      upgrade: "hecate plugin upgrade .",
      dev: "hecate plugin dev .",
    },
    dependencies: {},
    devDependencies: {
      ...hecateDevDependencies(),
      ...(ts ? { "@types/node": TYPES_NODE, typescript: TYPESCRIPT } : {}),
    },
  };
  return `${JSON.stringify(pkg, null, 2)}\n`;
}

/** The custom element of the scaffold's UI (priv/static/ui.js): `{name}-app`, prefixed when the name starts with a digit. */
export function uiElement(name: string): string {
  return isValidElementName(`${name}-app`) ? `${name}-app` : `hecate-${name}-app`;
}

export function manifestJson(name: string, kind: Kind, lang: Lang): string {
  const ui = { element: uiElement(name), module: "ui.js" };
  const out = lang === "ts" ? "dist/src" : "src";
  const manifest =
    kind === "container"
      ? {
          name,
          version: "0.1.0",
          description: "A hecate container plugin",
          plugin_type: "container",
          container: {
            command: ["node", `/plugin/${out}/main.js`],
            memory_mb: 128,
            cpus: 0.5,
            pids: 64,
            health_path: "/__health",
          },
          ui,
        }
      : {
          name,
          version: "0.1.0",
          description: "A hecate plugin",
          plugin_type: "in_process",
          callback_module: `${out}/index.js`,
          ui,
        };
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

export function readme(name: string, kind: Kind, lang: Lang): string {
  const ts = lang === "ts";
  const module = kind === "container" ? `src/plugin.${lang}` : `src/index.${lang}`;
  const intro =
    kind === "container"
      ? `A hecate container plugin, scaffolded by \`hecate plugin new ${name} --container${ts ? "" : " --js"}\`. It runs in
its own Podman container on hecate's Node base image (no network, read-only root filesystem, memory/cpu/pids limits
from manifest.json), serving \`${module}\` through \`@hecate/sdk/container\` (\`src/main.${lang}\`).`
      : `A hecate plugin, scaffolded by \`hecate plugin new ${name}${ts ? "" : " --js"}\`. The daemon runs \`${module}\` in its
own worker thread.`;
  return `# ${name}

${intro}

## Run, pack, install

    npm install                    # once: links @hecate/sdk and @hecate/cli from your hecate installation${ts ? ", TypeScript" : ""}
    npm test                       # ${ts ? "compiles (tsc, strict) and runs" : "runs"} test/*.test.${lang} against the plugin in-process (createTestHarness)
    npm run pack                   # -> ${name}-0.1.0.tar.gz: the package.json "files" + manifest.json, with a SHA-256
                                   #    file manifest (\`npx hecate plugin pack . --key my.key\` signs it)
    npm run install-plugin         # packs and installs into the running daemon, prints the plugin's URL
    npm run upgrade                # packs and swaps the new version in (zero downtime)

## Develop

    npm run dev                    # hecate plugin dev .: ${ts ? "rebuilds and " : ""}hot-swaps the plugin into the running daemon on every
                                   # save, prints ${ts ? "compile and " : ""}load errors (the last good version keeps serving) and the
                                   # plugin's log lines; Ctrl-C leaves the last version installed (--remove removes it)

Routes live in \`${module}\` and are mounted at \`/plugin/${name}/api/\`; \`priv/static/\` is served at
\`/plugin/${name}/\`.${ts ? " The TypeScript sources compile to `dist/` (tsconfig.json, strict); the package ships `dist/src`." : ""}

## Dependencies

\`@hecate/sdk\` is provided by the daemon at run time: never add it to \`dependencies\`. The devDependencies
\`@hecate/sdk\` and \`@hecate/cli\` are \`file:\` links to the hecate installation that created this project (its
types, the test harness and the \`hecate\` command the npm scripts run), so \`npm install\` keeps them. If that
installation moves, \`hecate plugin link-sdk\` points them at the current one (then run \`npm install\`).
Libraries the plugin uses at run time go into \`dependencies\` (\`npm install <name>\`).
`;
}

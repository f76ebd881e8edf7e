import { realpathSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Every standard path of one plugin under `$HECATE_HOME/plugins/{name}/`.
 * The daemon and plugins both use this, so nobody builds a plugin path by hand.
 */
export interface PluginPaths {
  /** `$HECATE_HOME/plugins/{name}` */
  root: string;
  /** The uploaded package: `{root}/{name}.tar.gz` */
  archive: string;
  /**
   * The extracted package (manifest.json, dist/, priv/): `{root}/package`. Replaced as a whole by one rename at
   * install/upgrade, so the plugin's own data beside it (store, sqlite, data) is never touched by extraction.
   */
  package: string;
  /** Extracted code (the original's `ebin/`): `{package}/dist` */
  code: string;
  /** `{package}/manifest.json` */
  manifest: string;
  /** Static assets served at `/plugin/{name}/`: `{package}/priv/static` */
  static: string;
  /** `{package}/priv` */
  priv: string;
  /** SQLite read models: `{root}/sqlite` */
  sqlite: string;
  /** Event store data: `{root}/store` */
  store: string;
  /** pid files, sockets, temp files: `{root}/run` */
  run: string;
  /** Plugin-owned files (uploads etc.): `{root}/data` */
  data: string;
  /** Scratch space, emptied on load: `{root}/run/tmp` */
  tmp: string;
}

/** Plugin names: lower-case, digits, `_` and `-`, starting with a letter or digit, at most 64 chars. */
export const PLUGIN_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

export function isValidPluginName(name: string): boolean {
  return PLUGIN_NAME_PATTERN.test(name);
}

/** `$HECATE_HOME`, default `~/.hecate`. */
export function hecateHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.HECATE_HOME && env.HECATE_HOME.length > 0 ? env.HECATE_HOME : join(homedir(), ".hecate");
}

export function pluginPaths(home: string, name: string): PluginPaths {
  if (!isValidPluginName(name)) throw new Error(`invalid plugin name ${JSON.stringify(name)}`);
  const root = join(home, "plugins", name);
  const run = join(root, "run");
  const pkg = join(root, "package");
  return {
    root,
    archive: join(root, `${name}.tar.gz`),
    package: pkg,
    code: join(pkg, "dist"),
    manifest: join(pkg, "manifest.json"),
    static: join(pkg, "priv", "static"),
    priv: join(pkg, "priv"),
    sqlite: join(root, "sqlite"),
    store: join(root, "store"),
    run,
    data: join(root, "data"),
    tmp: join(run, "tmp"),
  };
}

/**
 * Real path of this `@hecate/sdk` package's directory: what the daemon links plugins to
 * (`$HECATE_HOME/node_modules/@hecate/sdk`) and what a scaffolded project depends on.
 */
export function sdkPackageDir(): string {
  return realpathSync(fileURLToPath(new URL("../..", import.meta.url))); // this file is {package}/dist/src/paths.js
}

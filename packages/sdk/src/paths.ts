import { homedir } from "node:os";
import { join } from "node:path";

/**
 * Every standard path of one plugin under `$HECATE_HOME/plugins/{name}/`.
 * The daemon and plugins both use this, so nobody builds a plugin path by hand.
 */
export interface PluginPaths {
  /** `$HECATE_HOME/plugins/{name}` */
  root: string;
  /** The uploaded package: `{root}/{name}.tar.gz` */
  archive: string;
  /** Extracted code (the original's `ebin/`): `{root}/dist` */
  code: string;
  /** `{root}/manifest.json` (extracted from the package) */
  manifest: string;
  /** Static assets served at `/plugin/{name}/`: `{root}/priv/static` */
  static: string;
  /** `{root}/priv` */
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
  return {
    root,
    archive: join(root, `${name}.tar.gz`),
    code: join(root, "dist"),
    manifest: join(root, "manifest.json"),
    static: join(root, "priv", "static"),
    priv: join(root, "priv"),
    sqlite: join(root, "sqlite"),
    store: join(root, "store"),
    run,
    data: join(root, "data"),
    tmp: join(run, "tmp"),
  };
}

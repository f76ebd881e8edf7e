/**
 * Plugins live under `$HECATE_HOME/plugins/{name}/dist`, outside any node_modules tree, yet `import "@hecate/sdk"`.
 * We keep a symlink `$HECATE_HOME/node_modules/@hecate/sdk` -> the daemon's own installed sdk package dir: Node's
 * resolution walks up from the plugin file and finds it, with no loader hook (hooks run on a separate thread in
 * Node 20 and would have to be registered in every worker). Node's ESM resolver follows symlinks to the real path
 * (no --preserve-symlinks), so the plugin and the worker host load the very same module URLs: ONE sdk instance per
 * worker, and `getConfig()` in the plugin sees the config the host set.
 *
 * A package's own dependencies (`hecate plugin pack` ships them in `{package}/node_modules`) are nearer to its code,
 * so Node finds them first; `$HECATE_HOME/node_modules` holds nothing but this link, so a plugin never picks up a
 * library it did not ship. The SDK itself is never shipped: the pack leaves it out and the daemon refuses a package
 * that carries a copy (`sdk_shipped`, @hecate/package extract.ts), which would otherwise shadow this link.
 */
import { mkdirSync, readlinkSync, renameSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { sdkPackageDir } from "@hecate/sdk/paths";

/** Creates or repairs `$HECATE_HOME/node_modules/@hecate/sdk` (atomic rename over a stale link). */
export function ensureSdkLink(home: string): string {
  const target = sdkPackageDir();
  const scope = join(home, "node_modules", "@hecate");
  const link = join(scope, "sdk");
  mkdirSync(scope, { recursive: true });
  try {
    if (readlinkSync(link) === target) return link;
  } catch {
    // missing or not a link: (re)create below
  }
  const tmp = `${link}.${process.pid}.tmp`;
  symlinkSync(target, tmp, "dir");
  renameSync(tmp, link);
  return link;
}

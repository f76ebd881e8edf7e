/**
 * The package operations the lifecycle uses (PackageOps), bound to a home's trust policy: the daemon's one adapter
 * over extract / integrity / manifest.
 */
import { chmod, lstat, readdir } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import {
  extractPackage,
  loadTrustPolicy,
  readArchiveManifest,
  recoverPackageDir,
  validateManifest,
  verifyPackageDir,
} from "@hecate/package";
import type { PackageOps } from "./loader.js";

/** This daemon's version (packages/daemon/package.json): what a manifest's `engines.hecate` is checked against. */
export const HECATE_VERSION: string = (createRequire(import.meta.url)("../../../package.json") as { version: string })
  .version;

/**
 * `requireSignature` overrides the home's policy when set. The policy is read at every use: a key dropped into
 * trusted-keys/ counts from the next install, without a restart. Throws now on a broken key file (fails the start,
 * not the first install).
 */
export function packageOps(home: string, requireSignature?: boolean): PackageOps {
  const trust = () => {
    const policy = loadTrustPolicy(home);
    return requireSignature === undefined ? policy : { ...policy, requireSignature };
  };
  trust();
  return {
    extractPackage: async (archive, target, o) => {
      const r = await extractPackage(archive, target, {
        trust: trust(),
        hecateVersion: HECATE_VERSION,
        expectedName: o?.expectedName,
      });
      await ownerOnly(target); // extraction applies the archive's modes (0644/0755): the home stays 0600/0700
      return r;
    },
    readArchiveManifest: (archive) => readArchiveManifest(archive),
    verifyPackageDir: (dir) => verifyPackageDir(dir, trust()),
    validateManifest: (v) => validateManifest(v, { hecateVersion: HECATE_VERSION }),
    recoverPackageDir,
  };
}

/**
 * Drops group/other (and setuid/setgid/sticky) bits of a tree the daemon wrote; symlinks are left alone. Async: a
 * large package never blocks the event loop.
 */
async function ownerOnly(path: string): Promise<void> {
  const st = await lstat(path);
  if (st.isSymbolicLink()) return;
  if (st.mode & 0o7077) await chmod(path, st.mode & 0o700);
  if (st.isDirectory()) for (const e of await readdir(path)) await ownerOnly(join(path, e));
}

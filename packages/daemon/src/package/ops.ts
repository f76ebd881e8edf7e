/**
 * The package operations the lifecycle uses (PackageOps), bound to a home's trust policy: the daemon's one adapter
 * over extract / integrity / manifest.
 */
import type { PackageOps } from "../lifecycle/loader.js";
import { extractPackage, readArchiveManifest, recoverPackageDir } from "./extract.js";
import { loadTrustPolicy, verifyPackageDir } from "./integrity.js";
import { HECATE_VERSION, validateManifest } from "./manifest.js";

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
    extractPackage: (archive, target, o) =>
      extractPackage(archive, target, { trust: trust(), hecateVersion: HECATE_VERSION, expectedName: o?.expectedName }),
    readArchiveManifest: (archive) => readArchiveManifest(archive),
    verifyPackageDir: (dir) => verifyPackageDir(dir, trust()),
    validateManifest: (v) => validateManifest(v, { hecateVersion: HECATE_VERSION }),
    recoverPackageDir,
  };
}

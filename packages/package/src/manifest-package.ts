/**
 * The package dir of a plugin whose code lives in its OCI image (installed from `oci://`): only `manifest.json` (the
 * image's `io.hecate.manifest` label with `container.image` pinned to the pulled digest) and its
 * `hecate-files.json`, laid out like an extracted package (staging dir, digests written, swapped in), so the loader
 * verifies and reads it exactly as any other package.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { PluginManifest } from "@hecate/sdk";
import { swapInto } from "./extract.js";
import { writeFileManifest } from "./integrity.js";

export async function writeManifestPackage(
  targetDir: string,
  manifest: PluginManifest,
): Promise<{ files: number; bytes: number }> {
  const staging = join(dirname(targetDir), `.staging-${randomBytes(6).toString("hex")}`);
  mkdirSync(staging, { recursive: true });
  try {
    const text = `${JSON.stringify(manifest, null, 2)}\n`;
    writeFileSync(join(staging, "manifest.json"), text, { mode: 0o644 });
    await writeFileManifest(staging);
    chmodSync(staging, 0o755);
    await swapInto(staging, targetDir);
    return { files: 1, bytes: Buffer.byteLength(text) };
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
}

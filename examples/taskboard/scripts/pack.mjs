#!/usr/bin/env node
// Packs the plugin into dist-pkg/taskboard.tar.gz in hecate's package format:
//   manifest.json (from src/manifest.ts), dist/src/ (the compiled callback module, no maps/typings), priv/static/,
//   hecate-files.json (sha256 of every file; written by packPlugin), optionally hecate-files.sig.
// Usage: node scripts/pack.mjs [out.tar.gz]   (default dist-pkg/taskboard.tar.gz). Run `npm run build` at the repo root first.
// Sign with HECATE_SIGNING_KEY=/path/to/ed25519-private.pem.
// The SDK is not bundled: in-process plugins import @hecate/sdk from $HECATE_HOME/node_modules (linked by the daemon).
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { packPlugin } from "@hecate/package";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const compiled = join(root, "dist", "src");

/**
 * Packs the built plugin into `out`. `version` overrides the manifest's (tests build an upgrade this way).
 * Returns packPlugin's `{ file, files, bytes }`.
 */
export async function packTaskboard(out, { version, privateKeyPem } = {}) {
  if (!existsSync(join(compiled, "index.js")))
    throw new Error("examples/taskboard is not built: run `npm run build` at the repository root first");
  // A fresh staging dir per run, so concurrent packs (tests) never share one.
  const stage = join(root, "dist-pkg", `stage-${process.pid}-${Date.now()}`);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  try {
    const { manifest } = await import(pathToFileURL(join(compiled, "manifest.js")).href);
    const m = version ? { ...manifest, version } : manifest;
    writeFileSync(join(stage, "manifest.json"), `${JSON.stringify(m, null, 2)}\n`);
    cpSync(compiled, join(stage, "dist", "src"), { recursive: true, filter: (src) => !/\.(map|d\.ts)$/.test(src) });
    cpSync(join(root, "priv"), join(stage, "priv"), { recursive: true });
    return await packPlugin(stage, out, privateKeyPem ? { privateKeyPem } : {});
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const keyFile = process.env.HECATE_SIGNING_KEY;
  const out = process.argv[2] ?? join(root, "dist-pkg", "taskboard.tar.gz");
  mkdirSync(dirname(resolve(out)), { recursive: true });
  try {
    const r = await packTaskboard(out, { privateKeyPem: keyFile ? readFileSync(keyFile, "utf8") : undefined });
    console.log(`packed ${r.files} files into ${r.file} (${r.bytes} bytes)${keyFile ? ", signed" : ""}`);
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  }
}

#!/usr/bin/env node
// Packs the plugin into dist-pkg/taskboard.tar.gz in hecate's package format:
//   manifest.json (from src/manifest.ts), dist/ (the compiled callback module, no maps/typings), priv/static/,
//   hecate-files.json (sha256 of every file; written by packPlugin), optionally hecate-files.sig.
// Usage: node scripts/pack.mjs [out.tar.gz]   (default dist-pkg/taskboard.tar.gz). Run `npm run build` at the repo root first. Sign with HECATE_SIGNING_KEY=/path/to/ed25519-private.pem.
// The SDK is not bundled: in-process plugins import @hecate/sdk from $HECATE_HOME/node_modules (linked by the daemon).
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { packPlugin } from "@hecate/daemon/package/integrity";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const compiled = join(root, "dist", "src");
if (!existsSync(join(compiled, "index.js"))) {
  console.error("examples/taskboard is not built: run `npm run build` at the repository root first");
  process.exit(1);
}
const outDir = join(root, "dist-pkg");
// A fresh staging dir per run, so concurrent packs (tests) never share one.
const stage = join(outDir, `stage-${process.pid}`);
rmSync(stage, { recursive: true, force: true });
mkdirSync(stage, { recursive: true });

const { manifest } = await import(pathToFileURL(join(compiled, "manifest.js")).href);
writeFileSync(join(stage, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
cpSync(compiled, join(stage, "dist"), { recursive: true, filter: (src) => !/\.(map|d\.ts)$/.test(src) });
cpSync(join(root, "priv"), join(stage, "priv"), { recursive: true });

const keyFile = process.env.HECATE_SIGNING_KEY;
const out = process.argv[2] ?? join(outDir, `${manifest.name}.tar.gz`);
const r = await packPlugin(stage, out, keyFile ? { privateKeyPem: readFileSync(keyFile, "utf8") } : {});
rmSync(stage, { recursive: true, force: true });
console.log(`packed ${r.files} files into ${r.file} (${r.bytes} bytes)${keyFile ? ", signed" : ""}`);

#!/usr/bin/env node
// Writes manifest.json (from the compiled src/manifest.ts) at the project root: the last step of `npm run build`,
// so that `hecate plugin pack examples/taskboard` (which builds first) packs the manifest of the code it ships.
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { manifest } = await import(pathToFileURL(join(root, "dist", "src", "manifest.js")).href);
writeFileSync(join(root, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);

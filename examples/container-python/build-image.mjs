// Builds this plugin's image from the host's python3 (no registry) and saves it as image.tar (OCI archive) next to
// the manifest: `node examples/container-python/build-image.mjs` (needs podman and a built @hecate/daemon).
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildPythonImageArchive } from "@hecate/daemon";

const here = dirname(fileURLToPath(import.meta.url));
await buildPythonImageArchive(join(here, "image.tar"), "localhost/hecate-example-python:0.1.0");
console.log(`wrote ${join(here, "image.tar")}`);

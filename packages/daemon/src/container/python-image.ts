/**
 * A Python runtime image built from the host's python3 (no registry): the interpreter, its `ldd` libraries and the
 * stdlib minus tests/tooling, saved as an OCI archive a container plugin package can ship (`container.image_archive`).
 * Used by examples/container-python and the daemon's tests of non-Node plugins.
 */
import { realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildHostImage } from "./base-image.js";
import { PodmanClient } from "./podman.js";

export async function buildPythonImageArchive(
  archive: string,
  ref: string,
  python = "/usr/bin/python3",
  podman = new PodmanClient({ socketPath: join(tmpdir(), "unused-podman.sock") }), // CLI only
): Promise<void> {
  const real = realpathSync(python); // e.g. /usr/bin/python3.11
  const version = real.match(/python(\d+\.\d+)$/)?.[1];
  if (!version) throw new Error(`cannot tell the Python version of ${real}`);
  const stdlib = `/usr/lib/python${version}`;
  await buildHostImage(podman, {
    ref,
    binaries: [python],
    dirs: [
      {
        path: stdlib,
        exclude: [
          "test",
          "idlelib",
          "tkinter",
          "turtledemo",
          "ensurepip",
          "lib2to3",
          "pydoc_data",
          "site-packages",
          "dist-packages",
          `config-${version}-x86_64-linux-gnu`,
        ],
      },
    ],
    mkdirs: ["plugin", "run/plugin"],
    changes: [`ENTRYPOINT ["${python}"]`, "ENV PYTHONDONTWRITEBYTECODE=1", "WORKDIR /plugin"],
    labels: { "hecate.base": "python", "hecate.python_version": version },
  });
  rmSync(archive, { force: true });
  await podman.saveImage(ref, archive);
}

/**
 * OCI install bench: install -> healthy of a ~100 MB container plugin image from a local registry (docker-registry
 * on 127.0.0.1) through the daemon (resolve, pull through Podman's API with progress events, package laid out,
 * hardened container created and started, health check, routes mounted) vs the same by hand: `podman pull` +
 * `podman run` (hardened like the daemon's) -> first 200 from the health path on its socket. Same image, same run,
 * alternating rounds; the image is removed before every round so each pull downloads its layers.
 * Prints `BENCH_JSON {...}` last.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildHostImage, PodmanClient } from "../src/container/index.js";
import { startDaemon } from "../src/daemon.js";
import { imageManifest, removeLocalImages, startRegistry } from "../test/container/registry-helpers.js";

const ROUNDS = Number(process.env.BENCH_OCI_ROUNDS ?? 3);
const NAME = "bench-oci";
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

const SERVER = `
import { createServer } from "node:http";
import { rmSync } from "node:fs";
const sock = "/run/plugin/plugin.sock";
rmSync(sock, { force: true });
createServer((req, res) => res.end("ok")).listen(sock);
process.on("SIGTERM", () => process.exit(0));
`;

function podman(args: string[]): string {
  return execFileSync("podman", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

/** GET /__health over the socket until 200. */
async function healthy(sock: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const q = request({ socketPath: sock, path: "/__health" }, (r) => {
        r.resume();
        resolve(r.statusCode === 200);
      });
      q.on("error", () => resolve(false));
      q.end();
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`no healthy answer on ${sock}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "hecate-bench-oci-"));
  chmodSync(work, 0o755);
  const registry = await startRegistry();
  const root = `localhost/hecate-bench-oci-root:${process.pid}`;
  const ref = `${registry.host}/bench/oci:1`;
  try {
    // A ~100 MB image none of whose layers is local: the host's node (a rootfs of its own, not the base image's
    // layer) plus the plugin server, then the manifest label on top.
    const app = join(work, "app");
    mkdirSync(app);
    writeFileSync(join(app, "index.mjs"), SERVER);
    chmodSync(app, 0o755);
    const helper = new PodmanClient({ socketPath: join(work, "unused.sock") });
    await buildHostImage(helper, {
      ref: root,
      binaries: [process.execPath],
      dirs: [{ path: app }],
      mkdirs: ["plugin", "run/plugin"],
      changes: [`ENTRYPOINT ["${process.execPath}"]`, "WORKDIR /plugin"],
    });
    const manifest = imageManifest(NAME, "1.0.0", { command: [process.execPath, join(app, "index.mjs")] });
    writeFileSync(join(work, "Containerfile"), `FROM ${root}\n`);
    podman([
      "build",
      "-q",
      "-t",
      ref,
      "--label",
      `io.hecate.manifest=${JSON.stringify(manifest)}`,
      "-f",
      join(work, "Containerfile"),
      work,
    ]);
    podman(["push", "-q", "--tls-verify=false", ref]);
    const size = Number(podman(["image", "inspect", ref, "--format", "{{.Size}}"]));
    podman(["rmi", "-f", ref, root]);

    const daemon = await startDaemon({
      home: join(work, "home"),
      port: 0,
      logLevel: "silent",
      containers: true,
      trustOwnProcessOnSocket: true,
    });
    const api = (method: string, path: string, body?: unknown) =>
      fetch(`${daemon.adminUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${daemon.token}`, ...(body ? { "content-type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
    const manual: number[] = [];
    const hecate: number[] = [];
    try {
      for (let i = 0; i < ROUNDS; i++) {
        // by hand: pull + hardened run -> healthy
        const sockDir = join(work, `sock-${i}`);
        mkdirSync(sockDir);
        chmodSync(sockDir, 0o777);
        let t = performance.now();
        podman(["pull", "-q", "--tls-verify=false", ref]);
        const id = podman([
          "run",
          "-d",
          "--init",
          "--network=none",
          "--user",
          "1000:1000",
          "--read-only",
          "--cap-drop=all",
          "--security-opt=no-new-privileges",
          "--memory=128m",
          "--cpus=0.5",
          "--pids-limit=64",
          "-v",
          `${sockDir}:/run/plugin`,
          ref,
          join(app, "index.mjs"),
        ]);
        await healthy(join(sockDir, "plugin.sock"));
        manual.push(performance.now() - t);
        podman(["rm", "-f", "-t", "0", id]);
        removeLocalImages(registry.host);

        // hecate: install oci:// -> LOADED (its health check passed, routes mounted)
        t = performance.now();
        const r = await api("POST", "/admin/api/plugins?wait=loaded", { oci: `oci://${ref}` });
        if (r.status !== 201) throw new Error(`install failed: ${r.status} ${await r.text()}`);
        await r.arrayBuffer();
        hecate.push(performance.now() - t);
        const h = await fetch(`${daemon.url}/plugin/${NAME}/api/x`);
        if (h.status !== 200) throw new Error(`plugin answered ${h.status}`);
        await h.arrayBuffer();
        await (await api("DELETE", `/admin/api/plugins/${NAME}?purge=1`)).arrayBuffer();
        removeLocalImages(registry.host);
        console.log(`round ${i + 1}: by hand ${manual[i].toFixed(0)} ms, hecate ${hecate[i].toFixed(0)} ms`);
      }
    } finally {
      await daemon.close();
    }
    const result = {
      rounds: ROUNDS,
      image_mb: +(size / 1e6).toFixed(1),
      manual_pull_run_healthy_ms_p50: +median(manual).toFixed(0),
      hecate_install_healthy_ms_p50: +median(hecate).toFixed(0),
      ratio_manual_vs_hecate_oci_install: +(median(manual) / median(hecate)).toFixed(3),
    };
    console.log(
      `oci install -> healthy (${result.image_mb} MB image): hecate p50 ${result.hecate_install_healthy_ms_p50} ms, ` +
        `podman pull + run by hand p50 ${result.manual_pull_run_healthy_ms_p50} ms`,
    );
    console.log(`BENCH_JSON ${JSON.stringify({ bench: "oci-install", ...result })}`);
  } finally {
    removeLocalImages(registry.host);
    try {
      podman(["rmi", "-f", root]);
    } catch {}
    await registry.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

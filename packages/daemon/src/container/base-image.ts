/**
 * Images built from host files (no registry is reachable): copy binaries and the shared libraries `ldd` lists into a
 * rootfs dir, add /etc/passwd and /etc/group, and `podman import` a tar of it. The Node base image is tagged by the
 * host's Node version, so it is rebuilt only when Node changes.
 */
import { execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { PodmanClient } from "./podman.js";

export interface HostImageSpec {
  /** Image reference, e.g. `localhost/hecate-node-base:20.20.2`. */
  ref: string;
  /** Host executables copied to the same path (plus their `ldd` libraries). Symlinks are kept as symlinks. */
  binaries: string[];
  /** Host directories copied as they are (e.g. a Python stdlib); `exclude` names are skipped at any depth. */
  dirs?: { path: string; exclude?: string[] }[];
  /** Empty dirs created in the image (mount points on a read-only rootfs). */
  mkdirs?: string[];
  /** `--change` instructions, e.g. `ENTRYPOINT ["/usr/bin/node"]`. */
  changes?: string[];
  labels?: Record<string, string>;
}

/** Shared libraries an ELF file needs, by `ldd` (absolute paths; the vdso has none). */
export function lddLibraries(file: string): string[] {
  let out: string;
  try {
    out = execFileSync("ldd", [file], { encoding: "utf8" });
  } catch {
    return []; // static binary or not an ELF file
  }
  const libs: string[] = [];
  for (const line of out.split("\n")) {
    const m = line.match(/=>\s*(\/\S+)/) ?? line.match(/^\s*(\/\S+)\s+\(/);
    if (m) libs.push(m[1]);
  }
  return libs;
}

/** Copies a file to the same path under root; a symlink is copied as a symlink plus its target. */
function copyHostFile(root: string, file: string): void {
  const dest = join(root, file);
  mkdirSync(dirname(dest), { recursive: true });
  const real = realpathSync(file);
  if (real !== file) {
    copyHostFile(root, real);
    try {
      symlinkSync(real, dest);
    } catch {}
    return;
  }
  try {
    statSync(dest);
  } catch {
    copyFileSync(file, dest);
  }
}

export async function buildHostImage(podman: PodmanClient, spec: HostImageSpec): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "hecate-rootfs-"));
  const root = join(work, "rootfs");
  try {
    const elfs = [...spec.binaries];
    for (const d of spec.dirs ?? []) {
      const exclude = new Set(d.exclude ?? []);
      cpSync(d.path, join(root, d.path), {
        recursive: true,
        verbatimSymlinks: true,
        filter: (src) => !exclude.has(src.slice(src.lastIndexOf("/") + 1)),
      });
      for (const f of walk(join(root, d.path))) if (f.endsWith(".so")) elfs.push(f.slice(root.length));
    }
    for (const b of spec.binaries) copyHostFile(root, b);
    const libs = new Set<string>();
    for (const e of elfs) for (const l of lddLibraries(e)) libs.add(l);
    // The dynamic loader must sit at its well-known path too.
    for (const l of libs) copyHostFile(root, l);
    for (const d of ["etc", "tmp", "var/tmp", ...(spec.mkdirs ?? [])]) mkdirSync(join(root, d), { recursive: true });
    // runc gives a tmpfs the mode of its mount point in the image: 1777 makes the container's /tmp and /var/tmp
    // usable by the plugin's uid.
    for (const d of ["tmp", "var/tmp"]) chmodSync(join(root, d), 0o1777);
    writeFileSync(
      join(root, "etc/passwd"),
      "root:x:0:0:root:/:/sbin/nologin\nplugin:x:1000:1000:plugin:/:/sbin/nologin\n",
    );
    writeFileSync(join(root, "etc/group"), "root:x:0:\nplugin:x:1000:\n");
    const changes = [...(spec.changes ?? [])];
    for (const [k, v] of Object.entries(spec.labels ?? {})) changes.push(`LABEL ${k}=${v}`);
    // go+rX: the image is readable by the plugin's uid whatever the daemon's umask (0077) made of the copies.
    const tar = spawn("tar", ["-C", root, "--mode=go+rX", "-cf", "-", "."], { stdio: ["ignore", "pipe", "inherit"] });
    await podman.importImage(tar.stdout, spec.ref, changes);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function walk(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** Where the SDK and its runtime deps are mounted in Node containers (ESM resolution walks up to `/node_modules`). */
export const CONTAINER_NODE_MODULES = "/node_modules";

/** The host dir of package `name` as Node would resolve it from `fromDir` (package.json may be hidden by exports). */
function packageDir(name: string, fromDir: string): string | undefined {
  for (const base of createRequire(join(fromDir, "package.json")).resolve.paths(name) ?? []) {
    const dir = join(base, name);
    if (existsSync(join(dir, "package.json"))) return realpathSync(dir);
  }
  return undefined;
}

/**
 * `@hecate/sdk` and the closure of its runtime dependencies as [package name, host dir] pairs, nearest first, to be
 * bind-mounted read-only at `/node_modules/<name>` in Node containers. Walking package.json files (instead of a fixed
 * list) keeps containers working when the SDK gains a dependency. Flat like a hoisted install: when two versions of
 * one name are in the closure the one nearest to the SDK wins. Type-only packages (@types/*) are left out.
 */
export function sdkModuleMounts(fromDir: string): [string, string][] {
  const sdk = packageDir("@hecate/sdk", fromDir);
  if (!sdk) throw new Error(`@hecate/sdk is not resolvable from ${fromDir}`);
  const found = new Map<string, string>([["@hecate/sdk", sdk]]);
  const queue = [sdk];
  for (let dir = queue.shift(); dir; dir = queue.shift()) {
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { dependencies?: object };
    for (const name of Object.keys(pkg.dependencies ?? {})) {
      if (name.startsWith("@types/") || found.has(name)) continue;
      const depDir = packageDir(name, dir);
      if (!depDir) continue; // a shim of a Node builtin (e.g. "buffer"): nothing to mount
      found.set(name, depDir);
      queue.push(depDir);
    }
  }
  return [...found];
}

/** Bumped when the image's layout changes (2: /tmp and /var/tmp 1777, modes independent of the umask). */
const BASE_LAYOUT = 2;

export function nodeBaseImageRef(nodeVersion = process.versions.node): string {
  return `localhost/hecate-node-base:${nodeVersion}-${BASE_LAYOUT}`;
}

/** Builds `localhost/hecate-node-base:<node version>` from the host's node binary unless it exists already. */
export async function ensureNodeBaseImage(podman: PodmanClient, nodeBin = process.execPath): Promise<string> {
  const ref = nodeBaseImageRef();
  if (await podman.imageExists(ref)) return ref;
  await buildHostImage(podman, {
    ref,
    binaries: [nodeBin],
    mkdirs: [
      "plugin",
      "run/plugin",
      `${CONTAINER_NODE_MODULES.slice(1)}/@hecate/sdk`,
      `${CONTAINER_NODE_MODULES.slice(1)}/ws`,
      // Mount points of the other SDK dependencies are made by the runtime (runc) at start.
    ],
    changes: [`ENTRYPOINT ["${nodeBin}"]`, "WORKDIR /plugin"],
    labels: { "hecate.base": "node", "hecate.node_version": process.versions.node },
  });
  return ref;
}

/**
 * Host mounts the daemon (root) makes for container plugins, so nothing a plugin writes lands on the host's disk
 * without a bound and nothing it writes can be executed:
 * - the socket dir: a small tmpfs (size and inode count capped), noexec,nosuid,nodev, mode 0700, owned by the
 *   plugin's uid;
 * - the data dir (`container.writable_data`): a sparse ext4 image per plugin (`plugins/{name}/data.img`) loop-mounted
 *   at `plugins/{name}/data`, noexec,nosuid,nodev: the image's size is the plugin's disk quota (ENOSPC past it).
 *
 * Node has no mount(2) binding and no well-kept npm package offers one; util-linux `mount`/`umount` (always present
 * where Podman runs) are called instead, asynchronously (a mount or mkfs never blocks the daemon's event loop). Mount
 * points are read from /proc/self/mountinfo.
 */
import { execFile } from "node:child_process";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

const MOUNT_FLAGS = "noexec,nosuid,nodev";

/** /proc/self/mountinfo escapes space, tab, newline and backslash as `\ooo`. */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** Every mount point of this mount namespace (field 5 of /proc/self/mountinfo). */
export function mountPoints(): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => unescapeMountPath(line.split(" ")[4]));
}

export function isMountPoint(dir: string): boolean {
  return mountPoints().includes(dir);
}

/** Runs a util-linux / e2fsprogs command; exit codes in `ok` (default 0) count as success. */
async function run(cmd: string, args: string[], ok: number[] = [0]): Promise<void> {
  try {
    await execFileAsync(cmd, args, { timeout: 60_000 });
  } catch (err) {
    if (ok.includes((err as { code?: number }).code ?? -1)) return;
    const stderr = String((err as { stderr?: string }).stderr ?? "").trim();
    throw new Error(`${cmd} ${args.join(" ")} failed: ${stderr || (err as Error).message}`);
  }
}

/**
 * Unmounts every mount stacked on `dir` (lazily: a busy mount is detached now and freed when its last user goes).
 * Never walks the directory's content: a plugin-owned tree is never traversed by the daemon.
 */
export async function unmountAll(dir: string): Promise<void> {
  for (let i = 0; i < 8 && isMountPoint(dir); i++) await run("umount", ["-l", dir]);
}

/**
 * The socket dir: a fresh tmpfs of `sizeBytes` (and at most `inodes` entries), mode 0700, owned by `uid`.
 * A previous mount on `dir` is detached first.
 */
export async function mountSocketDir(dir: string, uid: number, sizeBytes = 1024 * 1024, inodes = 64): Promise<void> {
  await unmountAll(dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const opts = `size=${sizeBytes},nr_inodes=${inodes},mode=0700,uid=${uid},gid=${uid},${MOUNT_FLAGS}`;
  await run("mount", ["-t", "tmpfs", "-o", opts, "hecate-plugin-run", dir]);
}

/** Unmounts a socket dir and removes the (then empty) mount point. */
export async function releaseSocketDir(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  await unmountAll(dir);
  try {
    rmdirSync(dir);
  } catch {
    // Not empty: a socket dir of a version that did not use a tmpfs (plain dir on the host disk). It is under
    // run/containers (root 0700) and the container that owned it is gone, so nothing can change it any more.
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Size in MiB of a data image, from its apparent size. */
function imageSizeMb(image: string): number {
  return Math.round(statSync(image).size / (1024 * 1024));
}

/**
 * The data dir as a loop-mounted ext4 image of `quotaMb` MiB (sparse: only what the plugin writes takes host disk).
 * Idempotent: an image already mounted there is kept (a swap, an adopted container, a daemon restart after a crash).
 * A larger quota grows the image when it is not mounted (e2fsck + resize2fs on the file: online growth needs
 * CAP_SYS_RESOURCE, which root lacks on these machines), so during a swap it applies from the next load; a smaller
 * one keeps the image's size (shrinking could lose data). Data of a plain data dir (before quotas) is copied into
 * the image once.
 */
export async function mountDataImage(image: string, dir: string, quotaMb: number, uid: number): Promise<void> {
  const created = !existsSync(image);
  if (created) {
    const fd = openSync(image, "wx", 0o600);
    closeSync(fd);
    try {
      await run("truncate", ["-s", `${quotaMb}M`, image]);
      // -m 0: no blocks reserved for root (the quota is the plugin's); root_owner: the fs root belongs to the plugin.
      await run("mkfs.ext4", ["-q", "-F", "-m", "0", "-E", `root_owner=${uid}:${uid}`, image]);
    } catch (err) {
      rmSync(image, { force: true });
      throw err;
    }
    await migratePlainDataDir(image, dir);
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const grow = !isMountPoint(dir) && quotaMb > imageSizeMb(image);
  if (grow) {
    await run("e2fsck", ["-f", "-p", image], [0, 1]); // 1: errors corrected (e.g. the lost+found we remove, recreated)
    await run("truncate", ["-s", `${quotaMb}M`, image]);
    await run("resize2fs", [image]);
  }
  if (!isMountPoint(dir)) {
    await run("mount", ["-o", `loop,${MOUNT_FLAGS}`, image, dir]);
    // lost+found of mkfs / e2fsck (root 0700) would only puzzle the plugin; e2fsck recreates it when it needs one.
    if (created || grow) rmSync(join(dir, "lost+found"), { recursive: true, force: true });
  }
  chmodSync(dir, 0o700); // the image's root (mkfs makes it 0755)
}

/**
 * A data dir with files from before quotas: its content is copied into the new image (`cp -a` copies symlinks as
 * symlinks), and the plain dir is set aside as `data.pre-quota` (in the root-owned plugin dir, out of the container's
 * reach; a purge removes it). It is not deleted here: an old container may still be writing to it during a swap, and
 * walking a tree its owner is changing is how a root `rm -r` gets tricked.
 */
async function migratePlainDataDir(image: string, dir: string): Promise<void> {
  if (!existsSync(dir) || isMountPoint(dir) || readdirSync(dir).length === 0) return;
  const staging = join(dirname(dir), ".data-migrate");
  await unmountAll(staging);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { mode: 0o700 });
  await run("mount", ["-o", `loop,${MOUNT_FLAGS}`, image, staging]);
  try {
    await run("cp", ["-a", `${dir}/.`, staging]);
  } finally {
    await unmountAll(staging);
    rmdirSync(staging);
  }
  renameSync(dir, `${dir}.pre-quota`);
}

/** Mount points below `root` (e.g. stale ones of a killed daemon), deepest first. */
export function mountsUnder(root: string): string[] {
  const prefix = root.endsWith("/") ? root : `${root}/`;
  return mountPoints()
    .filter((m) => m.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

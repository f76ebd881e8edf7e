/**
 * Which container images the installed plugins hold, and the release of those nobody holds any more.
 *
 * Podman's storage is one per machine and knows nothing of plugins, so each plugin's holdings are recorded beside
 * it: `plugins/{name}/images.json` lists the image ids (and refs) its containers were created from, written by the
 * ContainerPlugins when it creates a container (before the create: a failed start still counts) and narrowed to
 * the running generation's image once a load or an upgrade's swap succeeded. Whatever the image's origin (an archive
 * in the package, an image already present, an image pulled from a registry): it is the image the container spec
 * carries.
 *
 * An image is released (removed through the Podman API, without force) when the plugin holding it lets it go: the
 * old generation's image after a successful swap, every image of a removed plugin. It stays when another installed
 * plugin holds it (its record has the id, or its manifest's `container.image` names one of the image's refs: an
 * installed plugin that never ran yet), and Podman itself refuses to remove an image a container (of any hecate
 * instance, or anyone else) still uses (409: kept, not an error).
 *
 * Hecate's Node base image (`localhost/hecate-node-base:*`, built from the host's node) is never recorded nor
 * released: it is the daemon's, shared by every Node plugin of every hecate instance on the machine, rebuilt only
 * when Node changes; another instance's deactivated plugin may need it at any time and this daemon cannot see that.
 *
 * Known limit: a plugin of ANOTHER hecate home on the same machine that holds the same image but runs no container
 * is not seen; its next load loads the image again (from its archive, or its registry).
 */
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isValidPluginName } from "@hecate/sdk";
import type { PodmanClient } from "./podman.js";

export const IMAGE_RECORD = "images.json";
const BASE_IMAGE_PREFIX = "localhost/hecate-node-base:";

export interface HeldImage {
  /** Podman's image id (64 hex digits, no `sha256:` prefix). */
  id: string;
  /** The reference the container spec carried. */
  ref: string;
}

export function isNodeBaseImage(ref: string): boolean {
  return ref.startsWith(BASE_IMAGE_PREFIX);
}

const normalId = (id: string) => id.replace(/^sha256:/, "");

/** The images a plugin holds (its `images.json`; none when absent or unreadable). */
export function readHeld(pluginDir: string): HeldImage[] {
  try {
    const raw = JSON.parse(readFileSync(join(pluginDir, IMAGE_RECORD), "utf8")) as { images?: unknown };
    if (!Array.isArray(raw.images)) return [];
    return raw.images.filter(
      (i): i is HeldImage => !!i && typeof i.id === "string" && typeof i.ref === "string" && i.id !== "",
    );
  } catch {
    return [];
  }
}

/** Replaces the plugin's record (atomically: written beside, renamed); an empty list removes it. */
export function writeHeld(pluginDir: string, images: HeldImage[]): void {
  const file = join(pluginDir, IMAGE_RECORD);
  if (images.length === 0) {
    rmSync(file, { force: true });
    return;
  }
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ version: 1, images }, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

/** Adds an image to the plugin's record (no-op when it is there already). */
export function addHeld(pluginDir: string, image: HeldImage): void {
  const held = readHeld(pluginDir);
  if (!held.some((h) => h.id === image.id)) writeHeld(pluginDir, [...held, image]);
}

/** What the plugins of `pluginsDir` other than `except` hold: image ids from their records, refs from manifests. */
export function heldByOthers(pluginsDir: string, except: string): { ids: Set<string>; refs: Set<string> } {
  const ids = new Set<string>();
  const refs = new Set<string>();
  for (const name of existsSync(pluginsDir) ? readdirSync(pluginsDir) : []) {
    if (name === except || !isValidPluginName(name)) continue;
    const dir = join(pluginsDir, name);
    for (const h of readHeld(dir)) ids.add(h.id);
    try {
      const m = JSON.parse(readFileSync(join(dir, "package", "manifest.json"), "utf8")) as {
        container?: { image?: unknown };
      };
      if (typeof m.container?.image === "string") refs.add(m.container.image);
    } catch {}
  }
  return { ids, refs };
}

/** How an image is removed: Podman's API when its service answers, else its CLI (same storage). */
export interface ImageStore {
  /** Podman's image id and names of `ref`, or null when there is no such image. */
  inspect(ref: string): Promise<{ id: string; names: string[] } | null>;
  /** Removes the image without force: "in_use" when a container uses it, "absent" when it is gone already. */
  remove(id: string): Promise<"removed" | "in_use" | "absent">;
}

export function apiImageStore(podman: PodmanClient): ImageStore {
  return {
    async inspect(ref) {
      const { status, data } = await podman.api<{ Id: string; RepoTags?: string[] | null }>(
        "GET",
        `/images/${encodeURIComponent(ref)}/json`,
        undefined,
        { okStatuses: [404] },
      );
      return status === 404 ? null : { id: normalId(data.Id), names: data.RepoTags ?? [] };
    },
    async remove(id) {
      const { status } = await podman.api("DELETE", `/images/${encodeURIComponent(id)}`, undefined, {
        okStatuses: [404, 409],
      });
      return status === 404 ? "absent" : status === 409 ? "in_use" : "removed";
    },
  };
}

/** The CLI form, for a daemon whose Podman service is not running (no container plugin loaded since its start). */
export function cliImageStore(bin = "podman"): ImageStore {
  const run = (args: string[]) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) =>
      execFile(bin, args, { timeout: 60_000 }, (e, out, err) =>
        resolve({ code: e ? (typeof e.code === "number" ? e.code : 1) : 0, out, err }),
      ),
    );
  return {
    async inspect(ref) {
      const r = await run(["image", "inspect", "--format", '{{.Id}} {{join .RepoTags ","}}', ref]);
      if (r.code !== 0) return null;
      const [id, names = ""] = r.out.trim().split(" ");
      return { id: normalId(id), names: names ? names.split(",") : [] };
    },
    async remove(id) {
      const r = await run(["image", "rm", id]);
      if (r.code === 0) return "removed";
      if (/in use|being used|has dependent/i.test(r.err)) return "in_use";
      if (/not known|no such image|image not known/i.test(r.err)) return "absent";
      throw new Error(`podman image rm ${id}: ${r.err.trim()}`);
    },
  };
}

export interface ReleaseOutcome {
  removed: HeldImage[];
  /** Kept: held by another plugin, used by a container, or the Node base image. */
  kept: { image: HeldImage; why: "held" | "in_use" | "base" }[];
}

/**
 * Releases `images` of `plugin` (dir `{pluginsDir}/{plugin}`): each one no other plugin holds is removed (without
 * force). Never throws for an image in use; a Podman failure is thrown after the other images were tried.
 */
export async function releaseImages(
  store: ImageStore,
  pluginsDir: string,
  plugin: string,
  images: HeldImage[],
): Promise<ReleaseOutcome> {
  const out: ReleaseOutcome = { removed: [], kept: [] };
  const others = heldByOthers(pluginsDir, plugin);
  let failure: unknown;
  for (const image of images) {
    if (isNodeBaseImage(image.ref)) {
      out.kept.push({ image, why: "base" });
      continue;
    }
    try {
      const now = await store.inspect(image.id);
      if (!now) continue; // gone already
      if (others.ids.has(image.id) || [image.ref, ...now.names].some((n) => others.refs.has(n))) {
        out.kept.push({ image, why: "held" });
        continue;
      }
      const r = await store.remove(image.id);
      if (r === "removed") out.removed.push(image);
      else if (r === "in_use") out.kept.push({ image, why: "in_use" });
    } catch (err) {
      failure ??= err;
    }
  }
  if (failure) throw failure;
  return out;
}

/**
 * A plugin was removed: releases every image it holds and deletes its record. Uses Podman's API when its service
 * answers on `$HECATE_HOME/run/podman.sock`, else the CLI (never starts a service of its own).
 */
export async function releaseRemovedPlugin(home: string, plugin: string): Promise<ReleaseOutcome> {
  const pluginsDir = join(home, "plugins");
  const dir = join(pluginsDir, plugin);
  const held = readHeld(dir);
  if (held.length === 0) return { removed: [], kept: [] };
  const { PodmanClient } = await import("./podman.js");
  const podman = new PodmanClient({ socketPath: join(home, "run", "podman.sock") });
  try {
    const store = (await podman.ping()) ? apiImageStore(podman) : cliImageStore();
    const r = await releaseImages(store, pluginsDir, plugin, held);
    writeHeld(dir, []);
    return r;
  } finally {
    await podman.close();
  }
}

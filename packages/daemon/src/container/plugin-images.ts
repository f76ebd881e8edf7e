/**
 * The image a plugin's container is created from (the package's archive, an image already present, or hecate's own
 * Node base image), and the plugin's record of the images it holds (image-refs.ts): an image is held before its
 * container is created, and released after a load or swap once no generation of the plugin runs it any more.
 */

import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { ensureNodeBaseImage } from "./base-image.js";
import { type Emit, type Entry, hostLayout } from "./container-entry.js";
import { ContainerPluginError, type ContainerPluginSpec } from "./container-types.js";
import { addHeld, apiImageStore, type HeldImage, readHeld, releaseImages, writeHeld } from "./image-refs.js";
import type { PodmanClient } from "./podman.js";

export class PluginImages {
  private baseImage: Promise<string> | undefined;

  constructor(
    private readonly podman: PodmanClient,
    private readonly emit: Emit,
  ) {}

  /** The Node base image (built once from the host's node when missing). */
  ensureBaseImage(): Promise<string> {
    this.baseImage ??= ensureNodeBaseImage(this.podman).catch((err) => {
      this.baseImage = undefined;
      throw err;
    });
    return this.baseImage;
  }

  /** The image `spec`'s container is created from (`nodeBase`: the Node base image); the manifest is checked. */
  async resolve(spec: ContainerPluginSpec): Promise<{ image: string; nodeBase: boolean }> {
    const c = spec.manifest.container ?? {};
    if (c.image_archive) {
      const pkg = hostLayout(spec).package;
      const archive = resolve(pkg, c.image_archive);
      if (!archive.startsWith(`${pkg}/`) || !existsSync(archive))
        throw new ContainerPluginError(spec.name, "invalid_manifest", `image_archive ${c.image_archive} not found`);
      if (c.image && (await this.podman.imageExists(c.image))) return { image: c.image, nodeBase: false };
      const names = await this.podman.loadImage(archive);
      const image = c.image ?? names[0];
      if (!image) throw new ContainerPluginError(spec.name, "image_failed", "podman load reported no image name");
      return { image, nodeBase: false };
    }
    if (c.image) {
      if (!(await this.podman.imageExists(c.image)))
        throw new ContainerPluginError(spec.name, "image_failed", `image ${c.image} is not present (no registry)`);
      return { image: c.image, nodeBase: false };
    }
    if (!c.command?.length)
      throw new ContainerPluginError(spec.name, "invalid_manifest", "container.command is required on the base image");
    return { image: await this.ensureBaseImage(), nodeBase: true };
  }

  /** Records the image a container is about to be created from as held by its plugin (image-refs.ts). */
  async hold(spec: ContainerPluginSpec, ref: string): Promise<HeldImage | undefined> {
    const found = await apiImageStore(this.podman).inspect(ref);
    if (!found) return undefined; // the create reports the missing image
    const image = { id: found.id, ref };
    addHeld(spec.dir, image);
    return image;
  }

  /**
   * After a successful load or swap: the plugin holds only the running generation's image now; every other image
   * it held is released unless another plugin holds it (an image a container still uses stays recorded, for the next
   * release). Best effort: a failure is a plugin log line, never a failed load.
   */
  async settle(entry: Entry): Promise<void> {
    const { spec } = entry;
    const current = entry.image;
    const others = readHeld(spec.dir).filter((h) => h.id !== current?.id);
    if (others.length === 0) return;
    let inUse: HeldImage[] = [];
    try {
      const r = await releaseImages(apiImageStore(this.podman), dirname(spec.dir), spec.name, others);
      inUse = r.kept.filter((k) => k.why === "in_use").map((k) => k.image);
      if (r.removed.length)
        this.emit({
          type: "log",
          plugin: spec.name,
          level: "info",
          msg: `released image ${r.removed.map((i) => i.ref).join(", ")} (no other plugin uses it)`,
        });
    } catch (err) {
      inUse = others;
      this.emit({
        type: "log",
        plugin: spec.name,
        level: "warn",
        msg: `image release failed: ${(err as Error).message}`,
      });
    }
    writeHeld(spec.dir, [...(current ? [current] : []), ...inUse]);
  }
}

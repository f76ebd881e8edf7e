/**
 * What earlier runs of this daemon instance left (kill -9, a crash mid-operation): a plugin's running container of
 * the same spec is adopted at its load when it answers its health check; every other container of this instance
 * that belongs to no loaded plugin is removed, with stale socket dirs and data images left mounted. Containers are
 * found by this instance's label and touched only by the ids Podman lists, never by pid; other instances'
 * containers are never touched.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { KeyedSerial } from "../util/keyed-serial.js";
import { containerName, type Entry, generationOf, type MakeEntry, socketDirOf } from "./container-entry.js";
import type { ContainerRunner } from "./container-runner.js";
import type { ContainerSpecs } from "./container-spec.js";
import { type ContainerPluginSpec, LABEL_INSTANCE, LABEL_PLUGIN, LABEL_SPEC } from "./container-types.js";
import { mountsUnder, releaseSocketDir, unmountAll } from "./host-mounts.js";
import type { ContainerSummary, PodmanClient } from "./podman.js";

export interface LeftoversParts {
  home: string;
  podman: PodmanClient;
  instanceId: string;
  /** The loaded plugins' entries (ContainerPlugins' own map: read only here). */
  loaded: ReadonlyMap<string, Entry>;
  /** The per-plugin queue of load/swap/unload/restart. */
  locks: Pick<KeyedSerial, "run">;
  makeEntry: MakeEntry;
  specs: Pick<ContainerSpecs, "hash">;
  runner: Pick<ContainerRunner, "verifiedLink">;
}

export class Leftovers {
  constructor(private readonly parts: LeftoversParts) {}

  /**
   * Existing containers of this plugin and instance: the newest running one with the same spec that answers its
   * health check is adopted; every other one is removed (by container id from Podman's own list, never by pid).
   */
  async adoptOrClear(spec: ContainerPluginSpec): Promise<{ adopted?: Entry; nextGeneration: number }> {
    const { podman, instanceId } = this.parts;
    const found = (await podman.listContainers(`${LABEL_INSTANCE}=${instanceId}`))
      .filter((c) => c.Labels[LABEL_PLUGIN] === spec.name)
      .sort((a, b) => generationOf(b) - generationOf(a));
    const nextGeneration = Math.max(0, ...found.map(generationOf)) + 1;
    let adopted: Entry | undefined;
    const hash = this.parts.specs.hash(spec);
    for (const c of found) {
      if (!adopted && c.State === "running" && c.Labels[LABEL_SPEC] === hash) {
        const entry = this.parts.makeEntry(spec, generationOf(c), c.Id, containerName(c));
        const info = await podman.inspectContainer(c.Id);
        const uid = Number(info?.Config.User.split(":")[0]);
        if (Number.isInteger(uid) && uid > 0) entry.uid = uid; // the uid it really runs as
        // Verified exactly like a new container's socket: an untrusted one is never adopted.
        const link = this.parts.runner.verifiedLink(entry, true);
        if (link && (await link.probe(entry.healthPath, 2000))) {
          entry.link = link;
          adopted = entry;
          continue;
        }
        await link?.close(0);
      }
      await podman.removeContainer(c.Id);
      await releaseSocketDir(socketDirOf(this.parts.home, spec.name, generationOf(c)));
    }
    return { adopted, nextGeneration };
  }

  /**
   * Removes every container of this instance that belongs to no loaded plugin (and socket dirs nobody uses, and
   * data images of plugins that are not loaded). Returns the names of removed containers.
   */
  async sweep(): Promise<string[]> {
    const { home, podman, instanceId, loaded, locks } = this.parts;
    const removed: string[] = [];
    const found = await podman.listContainers(`${LABEL_INSTANCE}=${instanceId}`);
    const byPlugin = new Map<string, ContainerSummary[]>();
    for (const c of found) {
      const name = c.Labels[LABEL_PLUGIN] ?? "";
      byPlugin.set(name, [...(byPlugin.get(name) ?? []), c]);
    }
    const socketRoot = join(home, "run", "containers");
    for (const dir of existsSync(socketRoot) ? readdirSync(socketRoot) : []) {
      const name = dir.slice(0, dir.lastIndexOf("."));
      if (!byPlugin.has(name)) byPlugin.set(name, []);
    }
    for (const [name, containers] of byPlugin) {
      // Per plugin and in its queue: a load running now keeps its container and socket dir.
      await locks.run(name, async () => {
        const keep = loaded.get(name);
        for (const c of containers) {
          if (c.Id === keep?.containerId) continue;
          await podman.removeContainer(c.Id);
          removed.push(containerName(c));
        }
        await this.removeStaleSocketDirs(name, keep);
      });
    }
    // Data images of plugins that are not loaded (left mounted by a killed daemon).
    for (const dir of mountsUnder(join(home, "plugins"))) {
      const m = /^([^/]+)\/data$/.exec(dir.slice(join(home, "plugins").length + 1));
      if (m) await locks.run(m[1], async () => loaded.has(m[1]) || (await unmountAll(dir)));
    }
    return removed;
  }

  /** Socket dirs `run/containers/{name}.{generation}` of this plugin except the loaded one's. */
  private async removeStaleSocketDirs(name: string, keep: Entry | undefined): Promise<void> {
    const root = join(this.parts.home, "run", "containers");
    if (!existsSync(root)) return;
    for (const dir of readdirSync(root)) {
      if (dir.slice(0, dir.lastIndexOf(".")) !== name) continue;
      const path = join(root, dir);
      if (path !== keep?.socketDir) await releaseSocketDir(path);
    }
  }
}

/**
 * What ContainerPlugins (container-plugins.ts) knows of one plugin's container, shared by its parts: the Entry, how
 * a new one is made (socket dir, uid, spec hash), the plugin's dirs on the host, and what callers are shown of it.
 */
import { join, relative } from "node:path";
import { pluginPaths } from "@hecate/sdk/paths";
import {
  type ContainerEvent,
  type ContainerPluginSpec,
  LABEL_GENERATION,
  type LoadedContainer,
} from "./container-types.js";
import type { HeldImage } from "./image-refs.js";
import type { ContainerSummary } from "./podman.js";
import type { SocketLink } from "./socket-link.js";

/** The socket's name in its socket dir (`/run/plugin` in the container). */
export const SOCKET_NAME = "plugin.sock";
const DEFAULT_HEALTH_PATH = "/__health";

export interface Entry {
  spec: ContainerPluginSpec;
  specHash: string;
  generation: number;
  containerId: string;
  containerName: string;
  socketDir: string;
  /** The plugin's socket in its socket dir: never connected to by path, only opened (and verified) once. */
  socketPath: string;
  uid: number;
  /** Proxy and health probe on the verified socket; set once the container answered its health check. */
  link?: SocketLink;
  healthPath: string;
  /** True while we stop/restart it ourselves: its exit is not a crash. */
  expectingExit: boolean;
  restarting: boolean;
  restarts: number[];
  healthFails: number;
  failed: boolean;
  /** Stops following the container's output. */
  logs?: AbortController;
  /** The image it was created from (not set for the Node base image, which is never released: image-refs.ts). */
  image?: HeldImage;
}

/** How the parts report ContainerPlugins' events (`onEvent`; a throwing listener is ignored). */
export type Emit = (e: ContainerEvent) => void;

/** A new entry of `spec` for container `containerId` (empty until created) of that generation. */
export type MakeEntry = (
  spec: ContainerPluginSpec,
  generation: number,
  containerId: string,
  containerName: string,
) => Entry;

/**
 * Entries with their socket dir under `home`, the plugin's own uid (from `uidBase`, past the uids of the other
 * `loaded` plugins) and the spec hash `hash` gives.
 */
export function entryMaker(o: {
  home: string;
  uidBase: number;
  loaded: ReadonlyMap<string, Entry>;
  hash: (spec: ContainerPluginSpec) => string;
}): MakeEntry {
  return (spec, generation, containerId, containerName) => {
    const socketDir = socketDirOf(o.home, spec.name, generation);
    const socketPath = join(socketDir, SOCKET_NAME);
    return {
      spec,
      specHash: o.hash(spec),
      generation,
      containerId,
      containerName,
      socketDir,
      socketPath,
      uid: uidFor(spec.name, o.uidBase, o.loaded),
      healthPath: spec.manifest.container?.health_path ?? DEFAULT_HEALTH_PATH,
      expectingExit: false,
      restarting: false,
      restarts: [],
      healthFails: 0,
      failed: false,
    };
  };
}

function uidFor(name: string, base: number, loaded: ReadonlyMap<string, Entry>): number {
  // Stable per plugin name (fnv-1a), probing past uids already used by other loaded plugins.
  let h = 0x811c9dc5;
  for (const ch of Buffer.from(name)) h = Math.imul(h ^ ch, 0x01000193) >>> 0;
  const used = new Set([...loaded.values()].filter((e) => e.spec.name !== name).map((e) => e.uid));
  let uid = base + (h % 50_000);
  while (used.has(uid)) uid = base + ((uid - base + 1) % 50_000);
  return uid;
}

/** `run/containers/{name}.{generation}`: one socket dir per container, so a swap never reuses a live one. */
export function socketDirOf(home: string, name: string, generation: number): string {
  return join(home, "run", "containers", `${name}.${generation}`);
}

/** The plugin's package and data dirs under its root (the `pluginPaths` layout, rooted at `spec.dir`). */
export function hostLayout(spec: ContainerPluginSpec): { package: string; data: string } {
  const p = pluginPaths("/", spec.name);
  return { package: join(spec.dir, relative(p.root, p.package)), data: join(spec.dir, relative(p.root, p.data)) };
}

export function describe(e: Entry): LoadedContainer {
  return {
    name: e.spec.name,
    containerId: e.containerId,
    containerName: e.containerName,
    socketPath: e.socketPath,
    uid: e.uid,
    generation: e.generation,
    image: imageOf(e.spec),
  };
}

function imageOf(spec: ContainerPluginSpec): string {
  return spec.manifest.container?.image ?? (spec.manifest.container?.image_archive ? "(archive)" : "hecate-node-base");
}

export function generationOf(c: ContainerSummary): number {
  const g = Number(c.Labels[LABEL_GENERATION]);
  return Number.isInteger(g) && g > 0 ? g : 0;
}

export function containerName(c: ContainerSummary): string {
  return c.Names[0]?.replace(/^\//, "") ?? c.Id;
}

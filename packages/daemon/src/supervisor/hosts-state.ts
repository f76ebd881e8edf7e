/**
 * What the parts of PluginHosts (plugin-hosts.ts) share: where each plugin runs, and the few flags every new main
 * host boots with. Each part gets this object (and narrow handles on the others), never the whole PluginHosts.
 */
import type { ContainerPluginSpec } from "../container/container-plugins.js";
import type { PluginSpec } from "../worker/plugin-worker.js";

/** The main host: it receives the plugin listener's connections (isolated hosts get ids from 2 on). */
export const MAIN = 1;

export type Hosted =
  | { kind: "worker"; spec: PluginSpec }
  /** `isolation: "shared"`: on the host's main thread (see host/shared/shared-host.ts). */
  | { kind: "shared"; spec: PluginSpec }
  | { kind: "container"; spec: ContainerPluginSpec };

/** Plugin code in a host process (a worker thread, or the main thread): movable into an isolated host. */
export function inProcess(h: Hosted | undefined): h is Extract<Hosted, { kind: "worker" | "shared" }> {
  return h?.kind === "worker" || h?.kind === "shared";
}

/** An in-process plugin's static dir (served by the main host for an isolated plugin too). */
export function staticDirOf(h: Hosted): string | undefined {
  return inProcess(h) ? h.spec.staticDir : undefined;
}

export interface Placement {
  hosted: Hosted;
  hostId: number;
}

export interface HostsState {
  /** The loaded plugins and the host each runs in. */
  readonly placed: Map<string, Placement>;
  /** Set by close(): no host starts any more. */
  closed: boolean;
  /** `/ready` on the plugin listener, and the installed plugins not loaded: every new main host boots with them. */
  ready: boolean;
  inactive: Record<string, string>;
}

/** The plugins placed on host `hostId`. */
export function placedOn(state: HostsState, hostId: number): [string, Placement][] {
  return [...state.placed].filter(([, p]) => p.hostId === hostId);
}

/** The parts' way to emit PluginHosts' events (see the list there). */
export type Emit = (event: string, ...args: unknown[]) => void;

/** A `log` event of the supervisor itself (no plugin). */
export function logSupervisor(emit: Emit, level: "warn" | "error", msg: string): void {
  emit("log", { plugin: "-", level, msg });
}

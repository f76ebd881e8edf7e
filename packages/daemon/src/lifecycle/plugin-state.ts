/**
 * The `plugin` aggregate's state: its status bit flags (`Flags`, `flagNames`, `hasFlag`, `statusName`), the
 * `PluginState` it folds to and `initialPluginState`. The commands are in plugin-commands.ts, the events in
 * plugin-events.ts, the rules in decide.ts, the fold in evolve.ts, the aggregate itself in aggregate.ts.
 */

/** Status bit flags (the original's names; EXTRACTED, LOADED and FAILED are ours). */
export const Flags = {
  INSTALLED: 1,
  REMOVED: 1 << 1,
  EXTRACTING: 1 << 2,
  ACTIVATED: 1 << 3,
  DEACTIVATED: 1 << 4,
  RUNNING: 1 << 5,
  STOPPED: 1 << 6,
  PULLING: 1 << 7,
  CONFIRMED_UP: 1 << 8,
  CONFIRMED_DOWN: 1 << 9,
  EXTRACTED: 1 << 10,
  LOADED: 1 << 11,
  FAILED: 1 << 12,
} as const;
export type FlagName = keyof typeof Flags;

/** The names of the flags set in `status`. */
export function flagNames(status: number): FlagName[] {
  return (Object.keys(Flags) as FlagName[]).filter((k) => (status & Flags[k]) !== 0);
}

/** True when the flag set `s` has any of the bits `f` (for the rules and the fold; `hasFlag` takes a state). */
export const has = (s: number, f: number) => (s & f) !== 0;

/** True when the plugin's status has flag `f` (one of `Flags`). */
export const hasFlag = (s: PluginState, f: number): boolean => has(s.status, f);

export type PluginType = "in_process" | "container";

export interface LastError {
  stage: string;
  code: string;
  message: string;
  at: string;
}

export interface PluginState {
  status: number;
  plugin_id: string | null;
  name: string | null;
  plugin_type: PluginType;
  callback_module: string | null;
  oci_image: string | null;
  /** Where the package came from ("upload", the operator's path, or the URL it was downloaded from). */
  package_url: string | null;
  installed_version: string | null;
  license_id: string | null;
  icon: string | null;
  group_name: string | null;
  group_icon: string | null;
  installed_at: string | null;
  upgraded_at: string | null;
  removed_at: string | null;
  extracted_at: string | null;
  activated_at: string | null;
  deactivated_at: string | null;
  started_at: string | null;
  stopped_at: string | null;
  loaded_at: string | null;
  updated_at: string | null;
  /** Bumped by every install / upgrade: process-manager work for an older package is stale and skipped. */
  generation: number;
  /** Bumped by every activation: a load for an older activation is stale and skipped. */
  activation: number;
  /** Version actually loaded (differs from installed_version while an upgrade is in flight). */
  loaded_version: string | null;
  routes: { method: string; path: string }[];
  last_error: LastError | null;
  restarts: number;
  /**
   * The operator's settings in their stored form (secrets encrypted: see settings.ts), from the last
   * plugin_settings_changed_v1. Kept across upgrades; a (re)install starts without.
   */
  settings: Record<string, unknown>;
  /** The registry image of a plugin installed from `oci://` (reference, digest, layers), null otherwise. */
  oci: OciSource | null;
  /** The image pull in flight (container plugins installed from an OCI registry), null when none. */
  pull: OciPullProgress | null;
}

/** Where an OCI pull is: layers and bytes (bytes count the layers known to be complete). */
export interface OciPullProgress {
  generation: number;
  reference: string;
  digest: string;
  layers_total: number;
  layers_done: number;
  bytes_total: number;
  bytes_done: number;
}

/** The registry image a plugin installed from `oci://` comes from: the reference as given, pinned by digest. */
export interface OciSource {
  reference: string;
  image: string;
  digest: string;
  layers: number;
  bytes: number;
}

export const initialPluginState: PluginState = {
  status: 0,
  plugin_id: null,
  name: null,
  plugin_type: "in_process",
  callback_module: null,
  oci_image: null,
  package_url: null,
  installed_version: null,
  license_id: null,
  icon: null,
  group_name: null,
  group_icon: null,
  installed_at: null,
  upgraded_at: null,
  removed_at: null,
  extracted_at: null,
  activated_at: null,
  deactivated_at: null,
  started_at: null,
  stopped_at: null,
  loaded_at: null,
  updated_at: null,
  generation: 0,
  activation: 0,
  loaded_version: null,
  routes: [],
  last_error: null,
  restarts: 0,
  settings: {},
  oci: null,
  pull: null,
};

export type PluginStatusName =
  | "installed"
  | "pulling"
  | "extracting"
  | "extracted"
  | "activated"
  | "loaded"
  | "deactivated"
  | "failed"
  | "removed";

/** One word for the flag set (the view's `status`). */
export function statusName(status: number): PluginStatusName {
  if (has(status, Flags.REMOVED)) return "removed";
  if (has(status, Flags.FAILED)) return "failed";
  if (has(status, Flags.PULLING)) return "pulling";
  if (has(status, Flags.EXTRACTING)) return "extracting";
  if (has(status, Flags.LOADED)) return "loaded";
  if (has(status, Flags.ACTIVATED)) return "activated";
  if (has(status, Flags.DEACTIVATED)) return "deactivated";
  if (has(status, Flags.EXTRACTED)) return "extracted";
  return "installed";
}

/**
 * The `plugin` aggregate (stream `plugin-{name}` in the daemon's `plugins` store): the original's lifecycle with its
 * exact command / event / status names, plus failure events of our own so users can see why something failed.
 *
 * Its parts: the state and status flags (plugin-state.ts), the commands (plugin-commands.ts), the events
 * (plugin-events.ts), the command rules (decide.ts) and the fold (evolve.ts). This module is their one entry point:
 * the rest of the daemon imports the aggregate's names from here.
 */
import type { AggregateDefinition } from "@hecate/store";
import { decide } from "./decide.js";
import { evolve } from "./evolve.js";
import type { PluginCommand } from "./plugin-commands.js";
import type { PluginEvent } from "./plugin-events.js";
import { initialPluginState, type PluginState } from "./plugin-state.js";

export { acceptsInstall } from "./decide.js";
export type {
  PackageInfo,
  PackageRejection,
  PluginCommand,
  PluginCommandType,
  RejectionCode,
  SettingsChange,
} from "./plugin-commands.js";
export type { PluginEvent } from "./plugin-events.js";
export {
  type FlagName,
  Flags,
  flagNames,
  hasFlag,
  initialPluginState,
  type LastError,
  type OciPullProgress,
  type OciSource,
  type PluginState,
  type PluginStatusName,
  type PluginType,
  statusName,
} from "./plugin-state.js";

export const pluginAggregate: AggregateDefinition<PluginState, PluginCommand, PluginEvent> = {
  name: "plugin",
  initialState: initialPluginState,
  evolve,
  decide,
  snapshotEvery: 50,
  // 2: PluginState.settings (a version-1 snapshot lacks it: it is folded again from the events).
  // 3: PluginState.oci / pull (OCI installs).
  snapshotVersion: 3,
};

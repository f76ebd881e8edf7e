/**
 * Execution and health of container plugins on the `plugin` aggregate (the original's start_plugin_execution /
 * stop_plugin_execution and confirm_container_up / confirm_container_down).
 *
 * - `executionStep` (a process-manager step, so crash safe): a container plugin's load confirmed -> RUNNING; taken
 *   down (deactivated, failed for good, disabled, quarantined) -> STOPPED.
 * - `watchContainerHealth`: the health watcher. ContainerPlugins probes each container (health path, Podman's
 *   exit events) and restarts it within a budget; its transitions reach the supervisor as the plugin hosts' events:
 *   `crashed` / `disabled` -> confirm_container_down_v1, `restarted` (healthy again) -> confirm_container_up_v1, and
 *   a started execution (the load passed the health check) -> confirm_container_up_v1. The aggregate records only
 *   transitions (up when CONFIRMED_UP records nothing).
 */
import type { EventEmitter } from "node:events";
import type { ProcessManagerContext, RecordedEvent } from "@hecate/store";
import { Flags, hasFlag, type PluginCommand, type PluginEvent, type PluginState } from "./aggregate.js";

export async function executionStep(
  e: RecordedEvent,
  name: string,
  s: PluginState,
  ctx: ProcessManagerContext,
  dispatch: (name: string, cmd: PluginCommand, ctx: ProcessManagerContext) => Promise<unknown>,
): Promise<void> {
  if (s.plugin_type !== "container" || hasFlag(s, Flags.REMOVED)) return;
  const ev = e as unknown as PluginEvent;
  const running = hasFlag(s, Flags.RUNNING);
  switch (ev.type) {
    case "plugin_load_confirmed_v1":
      if (!running && hasFlag(s, Flags.LOADED))
        await dispatch(name, { type: "start_plugin_execution_v1", data: {} }, ctx);
      return;
    case "plugin_deactivated_v1":
    case "plugin_disabled_v1":
    case "plugin_quarantined_v1":
    case "plugin_load_failed_v1":
      if (running && !hasFlag(s, Flags.LOADED))
        await dispatch(name, { type: "stop_plugin_execution_v1", data: { reason: ev.type.replace(/_v1$/, "") } }, ctx);
      return;
    default:
      return;
  }
}

export interface HealthTarget {
  state(name: string): PluginState | undefined;
  /** Records confirm_container_up_v1 / confirm_container_down_v1 (refusals, e.g. not running, are dropped). */
  reportContainerHealth(name: string, up: boolean, reason: string): void;
}

/** Wires the health watcher: plugin-host events and lifecycle events -> health confirmations on transitions. */
export function watchContainerHealth(hosts: EventEmitter, lifecycle: EventEmitter & HealthTarget): () => void {
  const isContainer = (name: string) => lifecycle.state(name)?.plugin_type === "container";
  const down = (name: string, reason: string) => {
    if (isContainer(name)) lifecycle.reportContainerHealth(name, false, reason);
  };
  const onCrashed = (name: string, reason: string) => down(name, `crashed: ${reason}`);
  const onDisabled = (name: string, reason: string) => down(name, `disabled: ${reason}`);
  const onRestarted = (name: string) => {
    if (isContainer(name)) lifecycle.reportContainerHealth(name, true, "restarted");
  };
  const onEvent = (e: { plugin: string; type: string }) => {
    if (e.type === "plugin_execution_started_v1" && isContainer(e.plugin))
      lifecycle.reportContainerHealth(e.plugin, true, "started");
  };
  hosts.on("crashed", onCrashed);
  hosts.on("disabled", onDisabled);
  hosts.on("restarted", onRestarted);
  lifecycle.on("event", onEvent);
  return () => {
    hosts.off("crashed", onCrashed);
    hosts.off("disabled", onDisabled);
    hosts.off("restarted", onRestarted);
    lifecycle.off("event", onEvent);
  };
}

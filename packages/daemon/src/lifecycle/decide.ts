/**
 * The `plugin` aggregate's command rules. `decide` is pure: side effects (extraction, loading, unloading, deleting
 * files) happen in the process manager (steps.ts), which reports their outcome back as commands
 * (extract_plugin_package_v1 carries the result of the extraction, confirm_plugin_loaded_v1 / fail_plugin_load_v1
 * the result of the load).
 */
import { isValidPluginName } from "@hecate/sdk";
import { type Rejection, reject } from "@hecate/store";
import type { PackageInfo, PluginCommand, RejectionCode } from "./plugin-commands.js";
import type { PluginEvent } from "./plugin-events.js";
import { Flags, has, type PluginState } from "./plugin-state.js";

const now = () => new Date().toISOString();

function invalid(message: string, field: string): Rejection<RejectionCode> {
  return reject("invalid_command", message, { field });
}

function checkPackage(p: PackageInfo | undefined): Rejection<RejectionCode> | null {
  if (!p || typeof p !== "object") return invalid("command data is required", "data");
  if (typeof p.name !== "string" || !isValidPluginName(p.name))
    return reject("invalid_plugin_name", `invalid plugin name ${JSON.stringify(p.name)}: [a-z0-9][a-z0-9_-]{0,63}`, {
      field: "name",
    });
  if (typeof p.version !== "string" || p.version === "") return invalid("version is required", "version");
  if (p.plugin_type !== "in_process" && p.plugin_type !== "container")
    return invalid(`plugin_type must be "in_process" or "container"`, "plugin_type");
  if (typeof p.source !== "string") return invalid("source is required", "source");
  return null;
}

const installed = (s: PluginState) => has(s.status, Flags.INSTALLED) && !has(s.status, Flags.REMOVED);

/**
 * Whether `install_plugin_v1` is accepted: nothing installed (never, or removed), or the last attempt FAILED and the
 * plugin is neither ACTIVATED nor LOADED (e.g. its extraction was refused: digest_mismatch, not_gzip, ...), so
 * nothing runs that an install could clobber. Such an install is a fresh attempt (new generation; the stream keeps
 * the failed history). A healthy, activated or loaded plugin still needs upgrade.
 */
export function acceptsInstall(s: PluginState): boolean {
  if (!installed(s)) return true;
  return has(s.status, Flags.FAILED) && !has(s.status, Flags.ACTIVATED | Flags.LOADED);
}

/** The events `cmd` records on state `s`, or why it is refused. */
export function decide(cmd: PluginCommand, s: PluginState): PluginEvent[] | Rejection<RejectionCode> {
  const at = now();
  switch (cmd.type) {
    case "install_plugin_v1": {
      const bad = checkPackage(cmd.data);
      if (bad) return bad;
      if (!acceptsInstall(s))
        return reject("plugin_already_installed", `plugin ${cmd.data.name} is already installed (use upgrade)`);
      return [{ type: "plugin_installed_v1", data: { ...cmd.data, generation: s.generation + 1, at } }];
    }
    case "upgrade_plugin_v1": {
      const bad = checkPackage(cmd.data);
      if (bad) return bad;
      if (!installed(s)) return reject("plugin_not_installed", `plugin ${cmd.data.name} is not installed`);
      if (s.name !== cmd.data.name) return invalid(`package is for ${cmd.data.name}, not ${s.name}`, "name");
      return [
        {
          type: "plugin_upgraded_v1",
          data: { ...cmd.data, generation: s.generation + 1, previous_version: s.installed_version ?? "", at },
        },
      ];
    }
    case "remove_plugin_v1":
      if (!installed(s)) return reject("plugin_not_installed", `plugin ${s.name ?? ""} is not installed`);
      return [{ type: "plugin_removed_v1", data: { purge: cmd.data?.purge === true, at } }];
    case "extract_plugin_package_v1":
    case "fail_plugin_extract_v1":
      if (!installed(s)) return reject("plugin_not_installed", "plugin is not installed");
      if (cmd.data.generation !== s.generation || !has(s.status, Flags.EXTRACTING))
        return reject("stale_command", `package generation ${cmd.data.generation} is not the one being extracted`);
      return cmd.type === "extract_plugin_package_v1"
        ? [{ type: "plugin_package_extracted_v1", data: { ...cmd.data, at } }]
        : [{ type: "plugin_extract_failed_v1", data: { ...cmd.data, at } }];
    case "activate_plugin_v1":
      if (!installed(s)) return reject("plugin_not_installed", "plugin is not installed");
      if (!has(s.status, Flags.EXTRACTED)) return reject("plugin_not_extracted", "the package is not extracted yet");
      // A failed activation may be retried; a healthy one may not be repeated.
      if (has(s.status, Flags.ACTIVATED) && !has(s.status, Flags.FAILED))
        return reject("plugin_already_activated", `plugin ${s.name} is already activated`);
      return [{ type: "plugin_activated_v1", data: { activation: s.activation + 1, at } }];
    case "deactivate_plugin_v1":
      if (!installed(s) || !has(s.status, Flags.ACTIVATED))
        return reject("plugin_not_activated", `plugin ${s.name ?? ""} is not activated`);
      return [{ type: "plugin_deactivated_v1", data: { at } }];
    case "confirm_plugin_loaded_v1":
    case "fail_plugin_load_v1":
      if (!installed(s) || !has(s.status, Flags.ACTIVATED))
        return reject("plugin_not_activated", "plugin is not activated");
      if (cmd.data.activation !== s.activation)
        return reject("stale_command", `activation ${cmd.data.activation} is not the current one`);
      if (cmd.type === "confirm_plugin_loaded_v1") {
        // A boot-time reload of a plugin already marked loaded with this version changes nothing.
        if (cmd.data.boot && has(s.status, Flags.LOADED) && s.loaded_version === cmd.data.version) return [];
        const { boot: _boot, ...data } = cmd.data;
        return [{ type: "plugin_load_confirmed_v1", data: { ...data, at } }];
      }
      return [{ type: "plugin_load_failed_v1", data: { ...cmd.data, at } }];
    case "confirm_plugin_unloaded_v1":
      if (!installed(s) || has(s.status, Flags.ACTIVATED))
        return reject("plugin_already_activated", "plugin is activated again");
      return [{ type: "plugin_unload_confirmed_v1", data: { at } }];
    case "report_plugin_crash_v1":
      if (!installed(s) || !has(s.status, Flags.ACTIVATED))
        return reject("plugin_not_activated", "plugin is not activated");
      return [{ type: "plugin_crashed_v1", data: { reason: String(cmd.data?.reason ?? ""), at } }];
    case "disable_plugin_v1":
      if (!installed(s) || !has(s.status, Flags.ACTIVATED))
        return reject("plugin_not_activated", "plugin is not activated");
      return [{ type: "plugin_disabled_v1", data: { reason: String(cmd.data?.reason ?? ""), at } }];
    case "quarantine_plugin_v1":
      if (!installed(s) || !has(s.status, Flags.ACTIVATED))
        return reject("plugin_not_activated", "plugin is not activated");
      return [{ type: "plugin_quarantined_v1", data: { reason: String(cmd.data?.reason ?? ""), at } }];
    case "reject_plugin_package_v1":
      if (!installed(s)) return reject("plugin_not_installed", `plugin ${s.name ?? ""} is not installed`);
      if (typeof cmd.data?.code !== "string" || typeof cmd.data.message !== "string")
        return invalid("code and message are required", "code");
      return [{ type: "plugin_package_rejected_v1", data: { ...cmd.data, at } }];
    case "change_plugin_settings_v1": {
      if (!installed(s)) return reject("plugin_not_installed", `plugin ${s.name ?? ""} is not installed`);
      const d = cmd.data;
      if (!d || typeof d.values !== "object" || d.values === null || Array.isArray(d.values))
        return invalid("values must be an object", "values");
      return [
        {
          type: "plugin_settings_changed_v1",
          data: {
            values: d.values,
            changed: d.changed ?? [],
            unset: d.unset ?? [],
            reset: d.reset === true,
            at,
          },
        },
      ];
    }
    case "start_oci_pull_v1":
    case "report_oci_pull_progress_v1":
    case "complete_oci_pull_v1":
    case "fail_oci_pull_v1":
    case "cancel_oci_pull_v1":
      return decidePull(cmd, s, at);
    case "start_plugin_execution_v1":
    case "stop_plugin_execution_v1":
    case "confirm_container_up_v1":
    case "confirm_container_down_v1":
      return decideExecution(cmd, s, at);
    default:
      return invalid(`unknown command ${JSON.stringify((cmd as { type: unknown }).type)}`, "type");
  }
}

type PullCommand = Extract<
  PluginCommand,
  { type: `${"start" | "report" | "complete" | "fail" | "cancel"}_oci_pull${string}` }
>;

/** The pull rules: start while PULLING -> already_pulling; progress / complete / fail / cancel when not -> not_pulling. */
function decidePull(cmd: PullCommand, s: PluginState, at: string): PluginEvent[] | Rejection<RejectionCode> {
  if (!installed(s)) return reject("plugin_not_installed", `plugin ${s.name ?? ""} is not installed`);
  const pulling = has(s.status, Flags.PULLING);
  if (cmd.type === "start_oci_pull_v1") {
    if (pulling) return reject("already_pulling", `plugin ${s.name} is already pulling its image`);
    const src = s.oci;
    if (!src || cmd.data.generation !== s.generation || !has(s.status, Flags.EXTRACTING))
      return reject("stale_command", `package generation ${cmd.data.generation} is not waiting for a pull`);
    return [
      {
        type: "oci_pull_started_v1",
        data: {
          generation: s.generation,
          reference: src.reference,
          image: src.image,
          digest: src.digest,
          layers: src.layers,
          bytes: src.bytes,
          at,
        },
      },
    ];
  }
  if (!pulling) return reject("not_pulling", `plugin ${s.name} is not pulling an image`);
  if (cmd.type === "cancel_oci_pull_v1") {
    const first = !has(s.status, Flags.LOADED) && s.loaded_version === null;
    return [
      {
        type: "oci_pull_cancelled_v1",
        data: { generation: s.generation, reason: String(cmd.data?.reason ?? "cancelled"), first_install: first, at },
      },
    ];
  }
  if (cmd.data.generation !== s.generation)
    return reject("stale_command", `pull of generation ${cmd.data.generation} is not the current one`);
  switch (cmd.type) {
    case "report_oci_pull_progress_v1":
      return [{ type: "oci_pull_progressed_v1", data: { ...cmd.data, at } }];
    case "complete_oci_pull_v1":
      return [{ type: "oci_pull_completed_v1", data: { ...cmd.data, at } }];
    default:
      return [{ type: "oci_pull_failed_v1", data: { ...cmd.data, at } }];
  }
}

type ExecutionCommand = Extract<
  PluginCommand,
  {
    type:
      | "start_plugin_execution_v1"
      | "stop_plugin_execution_v1"
      | "confirm_container_up_v1"
      | "confirm_container_down_v1";
  }
>;

/**
 * Execution of a container plugin: start when RUNNING -> plugin_already_running, stop when not -> plugin_not_running.
 * The health confirmations record transitions only: up when already CONFIRMED_UP (or down when CONFIRMED_DOWN)
 * records nothing.
 */
function decideExecution(cmd: ExecutionCommand, s: PluginState, at: string): PluginEvent[] | Rejection<RejectionCode> {
  if (!installed(s)) return reject("plugin_not_installed", `plugin ${s.name ?? ""} is not installed`);
  const running = has(s.status, Flags.RUNNING);
  switch (cmd.type) {
    case "start_plugin_execution_v1":
      if (running) return reject("plugin_already_running", `plugin ${s.name} is already running`);
      return [{ type: "plugin_execution_started_v1", data: { at } }];
    case "stop_plugin_execution_v1":
      if (!running) return reject("plugin_not_running", `plugin ${s.name} is not running`);
      return [{ type: "plugin_execution_stopped_v1", data: { reason: String(cmd.data?.reason ?? ""), at } }];
    case "confirm_container_up_v1":
      if (!running) return reject("plugin_not_running", `plugin ${s.name} is not running`);
      return has(s.status, Flags.CONFIRMED_UP) ? [] : [{ type: "container_confirmed_up_v1", data: { at } }];
    default:
      if (!running) return reject("plugin_not_running", `plugin ${s.name} is not running`);
      return has(s.status, Flags.CONFIRMED_DOWN)
        ? []
        : [{ type: "container_confirmed_down_v1", data: { reason: String(cmd.data?.reason ?? ""), at } }];
  }
}

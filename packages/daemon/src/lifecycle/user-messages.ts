/**
 * What the user is told, in their words, when a lifecycle command cannot be done or a plugin's URL cannot be served:
 * what state the plugin is in and the `hecate` command that gets them further. The admin API sends these as its
 * errors' `message` (the CLI and the admin page print them); codes stay as they are (`plugin_not_activated`...).
 */
import type { PluginStatusName } from "./aggregate.js";

const cmd = (s: string) => `hecate plugin ${s}`;

/** Why a plugin in `status` is not serving (deactivated, failed, starting...) and what to do: the 503 of its URLs. */
export function inactiveMessage(name: string, status: PluginStatusName | undefined): string {
  switch (status) {
    case "deactivated":
      return `plugin ${name} is not active (it is deactivated); activate it with: ${cmd(`activate ${name}`)}`;
    case "failed":
      return (
        `plugin ${name} is not active (its last install, upgrade or load failed); see why with: ${cmd(`info ${name}`)}` +
        `, then activate it with: ${cmd(`activate ${name}`)} or install a fixed version`
      );
    case "installed":
    case "extracting":
    case "extracted":
    case "activated":
      return `plugin ${name} is not active yet (it is ${status}, starting); try again in a moment, or follow it with: ${cmd(`info ${name}`)}`;
    case "removed":
    case undefined:
      return notInstalled(name);
    default:
      return `plugin ${name} is not active (it is ${status}); see its state with: ${cmd(`info ${name}`)}`;
  }
}

function notInstalled(name: string): string {
  return `plugin ${name} is not installed; install it with: ${cmd("install <package.tar.gz | project dir>")} (installed plugins: ${cmd("list")})`;
}

/** Installed plugins that are not loaded, with their 503 message (for the plugin router; loaded ones are served). */
export function inactivePlugins(views: { name: string; status: PluginStatusName }[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of views)
    if (v.status !== "loaded" && v.status !== "removed") out[v.name] = inactiveMessage(v.name, v.status);
  return out;
}

/** The message for a lifecycle command on plugin `name` refused with `code` while it is `status`; undefined: keep. */
export function rejectionMessage(name: string, code: string, status: PluginStatusName | undefined): string | undefined {
  switch (code) {
    case "plugin_not_installed":
    case "plugin_not_found":
      return notInstalled(name);
    case "plugin_not_activated":
      return inactiveMessage(name, status);
    case "plugin_already_activated":
      return (
        `plugin ${name} is already active (it is ${status ?? "activated"}); to restart it: ` +
        `${cmd(`deactivate ${name}`)}, then ${cmd(`activate ${name}`)}`
      );
    case "plugin_not_extracted":
      return status === "failed"
        ? `plugin ${name} cannot be activated: its package was not installed (see why with: ${cmd(`info ${name}`)}); install it again with: ${cmd("install <package>")}`
        : `plugin ${name} cannot be activated yet: its package is still being installed; try again in a moment`;
    case "plugin_already_installed":
      return `plugin ${name} is already installed; to replace it use: ${cmd("upgrade <package.tar.gz | project dir>")} (or remove it first: ${cmd(`remove ${name}`)})`;
    default:
      return undefined;
  }
}

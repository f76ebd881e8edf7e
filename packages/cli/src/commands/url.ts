/**
 * `hecate plugin install https://…/x.tar.gz [--sha256 HEX]` and `hecate plugin upgrade --name NAME https://…`: the
 * daemon downloads the package itself (size cap, deadline, redirect limit, TLS verified; plain http:// only to a
 * loopback host) and checks the pin before the archive is read; the CLI only sends the URL.
 */
import type { PluginView } from "../client.js";
import { CliError, EXIT } from "../errors.js";
import { type CommandContext, pluginUrl, rejected } from "./plugin.js";

function body(url: string, sha256: string | undefined): { json: { url: string; sha256?: string } } {
  return { json: { url, ...(sha256 !== undefined ? { sha256 } : {}) } };
}

function printed(ctx: CommandContext, view: PluginView): void {
  const url = pluginUrl(ctx, view);
  ctx.out.result({ ...view, url }, () => ctx.out.line(`${view.name}@${view.version} ${view.status}: ${url}`));
}

export async function urlInstallCommand(
  ctx: CommandContext,
  url: string,
  opts: { wait: boolean; sha256?: string },
): Promise<void> {
  ctx.out.progress(`Installing from ${url} (downloaded by the daemon${opts.sha256 ? ", sha256 pinned" : ""})`);
  const path = `/admin/api/plugins?wait=${opts.wait ? "loaded" : "none"}`;
  printed(ctx, await ctx.client.call<PluginView>("POST", path, body(url, opts.sha256)).catch(rejected));
}

export async function urlUpgradeCommand(
  ctx: CommandContext,
  url: string,
  opts: { name?: string; sha256?: string; resetSettings?: boolean },
): Promise<void> {
  if (!opts.name)
    throw new CliError("name_required", "upgrading from a URL needs the plugin's name: --name NAME", EXIT.USAGE);
  ctx.out.progress(`Upgrading ${opts.name} from ${url} (downloaded by the daemon)`);
  const path = `/admin/api/plugins/${encodeURIComponent(opts.name)}/upgrade${opts.resetSettings ? "?reset_settings=1" : ""}`;
  printed(ctx, await ctx.client.call<PluginView>("POST", path, body(url, opts.sha256)).catch(rejected));
}

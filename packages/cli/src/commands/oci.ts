/**
 * Container plugins from OCI registries: `hecate plugin install oci://REGISTRY/REPO[:TAG|@sha256:DIGEST]`,
 * `hecate plugin upgrade NAME oci://…`, `hecate plugin cancel NAME` (the pull's progress bar: pull-progress.ts).
 */
import type { PluginView } from "../client.js";
import { CliError, EXIT } from "../errors.js";
import { type CommandContext, pluginUrl, rejected, withProgress } from "./plugin.js";

/** The plugin name is known only once the daemon resolved the image: follow every plugin's events until then. */
const ANY = "*";

export async function ociInstallCommand(ctx: CommandContext, source: string, opts: { wait: boolean }): Promise<void> {
  ctx.out.progress(`Installing from ${source}`);
  const path = `/admin/api/plugins?wait=${opts.wait ? "loaded" : "none"}`;
  const view = await withProgress(ctx, ANY, () =>
    ctx.client.call<PluginView>("POST", path, { json: { oci: source } }),
  ).catch(rejected);
  done(ctx, view);
}

export async function ociUpgradeCommand(
  ctx: CommandContext,
  name: string | undefined,
  source: string,
  opts: { resetSettings?: boolean },
): Promise<void> {
  if (!name)
    throw new CliError("usage", "an image upgrade names the plugin: hecate plugin upgrade NAME oci://…", EXIT.USAGE);
  ctx.out.progress(`Upgrading ${name} from ${source}`);
  const path = `/admin/api/plugins/${encodeURIComponent(name)}/upgrade${opts.resetSettings ? "?reset_settings=1" : ""}`;
  const view = await withProgress(ctx, name, () =>
    ctx.client.call<PluginView>("POST", path, { json: { oci: source } }),
  ).catch(rejected);
  done(ctx, view);
}

export async function cancelCommand(ctx: CommandContext, name: string): Promise<void> {
  const view = await ctx.client.call<PluginView>("POST", `/admin/api/plugins/${encodeURIComponent(name)}/cancel`);
  ctx.out.result(view, () =>
    ctx.out.line(
      view.status === "removed"
        ? `${name}: pull cancelled; nothing was installed`
        : `${name}: pull cancelled; ${view.version} ${view.status} as before`,
    ),
  );
}

function done(ctx: CommandContext, view: PluginView): void {
  const url = pluginUrl(ctx, view);
  ctx.out.result({ ...view, url }, () =>
    ctx.out.line(`${view.name}@${view.version} ${view.status} (${view.image ?? "-"}): ${url}`),
  );
}

/** `hecate plugin install|list|info|activate|deactivate|upgrade|remove|logs`: thin front ends of the admin API. */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Transform } from "node:stream";
import type { AdminClient, LifecycleEvent, LogLine, PluginListAnswer, PluginView, StoredEvent } from "../client.js";
import { CliError, EXIT } from "../errors.js";
import { formatLogLine, type Output, pluginDetails, pluginTable } from "../output.js";
import type { PreparedArchive } from "../packaging.js";
import { pullPrinter } from "./pull-progress.js";

/** The package tooling (ajv, tar) is only loaded by the commands that upload a package. */
const prepareArchive: typeof import("../packaging.js").prepareArchive = async (...args) =>
  (await import("../packaging.js")).prepareArchive(...args);

export interface CommandContext {
  client: AdminClient;
  out: Output;
  /** Public base URL of the daemon (to print plugin URLs), when known. */
  baseUrl: string | undefined;
}

const STEP_LABELS: Record<string, string> = {
  plugin_installed_v1: "installed",
  plugin_upgraded_v1: "upgraded",
  plugin_package_extracted_v1: "package extracted and verified",
  plugin_extract_failed_v1: "extraction failed",
  plugin_activated_v1: "activated",
  plugin_load_confirmed_v1: "loaded",
  plugin_load_failed_v1: "load failed",
  plugin_deactivated_v1: "deactivated",
  plugin_unload_confirmed_v1: "unloaded",
  plugin_removed_v1: "removed",
};

function stepLabel(e: LifecycleEvent): string {
  const label =
    STEP_LABELS[e.type] ??
    e.type
      .replace(/^plugin_/, "")
      .replace(/_v\d+$/, "")
      .replaceAll("_", " ");
  const message = (e.data as { message?: unknown } | null)?.message;
  const why = typeof message === "string" ? `: ${message}` : "";
  return `${label}${why}`;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function pluginUrl(ctx: CommandContext, view: PluginView): string {
  return ctx.baseUrl ? new URL(view.url, ctx.baseUrl).href : view.url;
}

/**
 * Runs `action` while following `/admin/api/events`, printing each lifecycle step of `name` as it happens.
 * The stream is open before the action starts, so no step is missed; after the action answered, the steps still on
 * the wire are awaited (briefly) until one shows the status the action ended in.
 */
export async function withProgress<T extends { status?: string } | { view: { status?: string } }>(
  ctx: CommandContext,
  name: string,
  action: () => Promise<T>,
): Promise<T> {
  if (ctx.out.json) return action();
  let follow = name;
  const started = Date.now();
  const abort = new AbortController();
  let lastStatus: string | undefined;
  let onStatus: (() => void) | undefined;
  const pull = pullPrinter((text) => ctx.out.progress(text));
  const events = await ctx.client.stream("/admin/api/events", abort.signal);
  const follower = (async () => {
    for await (const msg of events) {
      if (msg.event !== "lifecycle") continue;
      let e: LifecycleEvent;
      try {
        e = JSON.parse(msg.data);
      } catch {
        continue;
      }
      // "*" (an image install: the daemon tells the name): the plugin whose install is seen first
      if (follow === "*" && e.type === "plugin_installed_v1") follow = e.plugin;
      if (e.plugin !== follow) continue;
      const failed = e.type.endsWith("_failed_v1");
      if (!pull(e, `(+${Date.now() - started} ms)`))
        ctx.out.progress(`  ${failed ? "✗" : "✓"} ${stepLabel(e)} (+${Date.now() - started} ms)`);
      lastStatus = e.view?.status;
      onStatus?.();
    }
  })().catch(() => {});
  try {
    const untilStatus = (finalStatus: string | undefined) =>
      !finalStatus || lastStatus === finalStatus
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, 2000);
            onStatus = () => {
              if (lastStatus === finalStatus) {
                clearTimeout(timer);
                resolve();
              }
            };
          });
    let result: T;
    try {
      result = await action();
    } catch (err) {
      // a refused package / failed load: show the failing step too before the error
      await untilStatus(failedView(err)?.status);
      throw err;
    }
    await untilStatus("view" in result ? result.view.status : result.status);
    return result;
  } finally {
    abort.abort();
    await follower;
  }
}

async function upload(
  ctx: CommandContext,
  prepared: PreparedArchive,
  path: string,
): Promise<{ view: PluginView; bytes: number }> {
  const size = (await stat(prepared.file)).size;
  let sent = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      sent += chunk.length;
      cb(null, chunk);
    },
  });
  ctx.out.progress(`  … uploading ${prepared.name}@${prepared.version} (${formatBytes(size)})`);
  const view = await ctx.client.call<PluginView>("POST", path, {
    stream: createReadStream(prepared.file).pipe(counter),
    contentType: "application/gzip",
  });
  return { view, bytes: sent };
}

/** The plugin's view a lifecycle failure carries in its details (the daemon's 422 answers). */
function failedView(err: unknown): PluginView | undefined {
  const details = err instanceof CliError ? (err.details as { plugin?: PluginView } | undefined) : undefined;
  return details?.plugin && typeof details.plugin === "object" ? details.plugin : undefined;
}

export function rejected(err: unknown): never {
  const view = failedView(err);
  if (err instanceof CliError && view?.status === "failed") {
    // the aggregate stays (status failed, listed with its last error); say how to get out of it. A plugin that never
    // got to run (not ACTIVATED / LOADED) may simply be installed again (the daemon's lifecycle rule).
    const ran = view.flags?.some((f) => f === "ACTIVATED" || f === "LOADED");
    const retry = ran
      ? "`hecate plugin upgrade <source>`"
      : "`hecate plugin install <source>` again (or `hecate plugin upgrade <source>`)";
    throw new CliError(
      err.code,
      `${err.message}\n  ${view.name} is now listed as failed: fix the package and run ${retry}, or \`hecate plugin remove ${view.name}\``,
      EXIT.PACKAGE_REJECTED,
      err.details,
      err.status,
    );
  }
  if (err instanceof CliError && err.status === 422 && err.exitCode !== EXIT.PACKAGE_REJECTED) {
    throw new CliError(err.code, err.message, EXIT.PACKAGE_REJECTED, err.details, err.status);
  }
  throw err;
}

export async function installCommand(
  ctx: CommandContext,
  source: string,
  opts: { wait: boolean; key?: string; build?: boolean; sha256?: string },
): Promise<void> {
  if (isPackageUrl(source)) return (await import("./url.js")).urlInstallCommand(ctx, source, opts);
  if (isOci(source)) return (await import("./oci.js")).ociInstallCommand(ctx, source, opts);
  const prepared = await prepareArchive(source, { signingKey: opts.key, build: opts.build });
  try {
    ctx.out.progress(`Installing ${prepared.name} from ${prepared.description}`);
    const path = `/admin/api/plugins?wait=${opts.wait ? "loaded" : "none"}`;
    const { view } = await withProgress(ctx, prepared.name, () => upload(ctx, prepared, path)).catch(rejected);
    const url = pluginUrl(ctx, view);
    ctx.out.result({ ...view, url }, () => {
      ctx.out.line(`${view.name}@${view.version} ${view.status}: ${url}`);
    });
  } finally {
    await prepared.cleanup();
  }
}

export async function upgradeCommand(
  ctx: CommandContext,
  source: string,
  opts: { key?: string; build?: boolean; resetSettings?: boolean; name?: string; sha256?: string },
): Promise<void> {
  if (isPackageUrl(source)) return (await import("./url.js")).urlUpgradeCommand(ctx, source, opts);
  if (isOci(source)) return (await import("./oci.js")).ociUpgradeCommand(ctx, opts.name, source, opts);
  const prepared = await prepareArchive(source, { signingKey: opts.key, build: opts.build });
  try {
    ctx.out.progress(`Upgrading ${prepared.name} to ${prepared.version} from ${prepared.description}`);
    const path = `/admin/api/plugins/${encodeURIComponent(prepared.name)}/upgrade${opts.resetSettings ? "?reset_settings=1" : ""}`;
    const { view } = await withProgress(ctx, prepared.name, () => upload(ctx, prepared, path)).catch(rejected);
    const url = pluginUrl(ctx, view);
    ctx.out.result({ ...view, url }, () => ctx.out.line(`${view.name}@${view.version} ${view.status}: ${url}`));
  } finally {
    await prepared.cleanup();
  }
}

/** An http(s):// source: the daemon downloads it (commands/url.ts). */
const isPackageUrl = (source: string) => /^https?:\/\//i.test(source);
/** An oci:// image: the daemon pulls it (commands/oci.ts). */
const isOci = (source: string) => source.startsWith("oci://");

export async function listCommand(ctx: CommandContext): Promise<void> {
  const { plugins, cluster } = await ctx.client.call<PluginListAnswer>("GET", "/admin/api/plugins");
  ctx.out.result({ plugins, ...(cluster ? { cluster } : {}) }, () => ctx.out.line(pluginTable(plugins, cluster)));
}

export async function infoCommand(ctx: CommandContext, name: string): Promise<void> {
  const n = encodeURIComponent(name);
  const view = await ctx.client.call<PluginView>("GET", `/admin/api/plugins/${n}`);
  const { events } = await ctx.client.call<{ events: StoredEvent[] }>("GET", `/admin/api/plugins/${n}/events`);
  ctx.out.result({ ...view, events }, () => ctx.out.line(pluginDetails(view, events, ctx.baseUrl)));
}

export async function transitionCommand(
  ctx: CommandContext,
  name: string,
  action: "activate" | "deactivate",
): Promise<void> {
  const n = encodeURIComponent(name);
  const view = await withProgress(ctx, name, () =>
    ctx.client.call<PluginView>("POST", `/admin/api/plugins/${n}/${action}`),
  ).catch(rejected);
  ctx.out.result(view, () =>
    ctx.out.line(
      `${view.name}@${view.version} ${view.status}${view.status === "loaded" ? `: ${pluginUrl(ctx, view)}` : ""}`,
    ),
  );
}

export async function removeCommand(ctx: CommandContext, name: string, opts: { purgeData: boolean }): Promise<void> {
  const n = encodeURIComponent(name);
  const result = await ctx.client.call<{ removed: boolean; purged: boolean }>(
    "DELETE",
    `/admin/api/plugins/${n}${opts.purgeData ? "?purge=1" : ""}`,
  );
  ctx.out.result({ name, ...result }, () =>
    ctx.out.line(`${name} removed${result.purged ? " (data purged)" : " (data kept; --purge-data deletes it)"}`),
  );
}

export async function logsCommand(ctx: CommandContext, name: string, opts: { follow: boolean; tail: number }) {
  const n = encodeURIComponent(name);
  const print = (l: LogLine) => {
    if (ctx.out.json) process.stdout.write(`${JSON.stringify(l)}\n`);
    else ctx.out.line(formatLogLine(l));
  };
  if (!opts.follow) {
    const { logs } = await ctx.client.call<{ logs: LogLine[] }>(
      "GET",
      `/admin/api/plugins/${n}/logs?tail=${opts.tail}`,
    );
    if (ctx.out.json) ctx.out.result({ logs });
    else for (const l of logs) print(l);
    return;
  }
  // --follow: one JSON line per log line with --json (a stream has no single result document)
  const abort = new AbortController();
  const stop = () => abort.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    await followLogs(ctx, name, { tail: opts.tail, signal: abort.signal, print });
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
}

/** Streams `name`'s log lines (the last `tail` first) to `print` until `signal` aborts or the daemon ends the stream. */
export async function followLogs(
  ctx: CommandContext,
  name: string,
  opts: { tail: number; signal: AbortSignal; print: (l: LogLine) => void },
): Promise<void> {
  const n = encodeURIComponent(name);
  const stream = await ctx.client.stream(`/admin/api/plugins/${n}/logs?follow=1&tail=${opts.tail}`, opts.signal);
  for await (const msg of stream) {
    try {
      opts.print(JSON.parse(msg.data) as LogLine);
    } catch {
      // not a log line (keep-alive or an unknown event)
    }
  }
}

/**
 * `hecate plugin dev [dir]`: the edit-save-see loop against the running daemon. The project is installed (or
 * upgraded) once, then every save is compiled (TypeScript: a warm watch compiler, dev-compiler.ts) and swapped in
 * through the very path `hecate plugin upgrade DIR` takes (pack, upload, zero-downtime swap). Compile errors and load
 * failures are printed while the last good version keeps serving; the plugin's log lines are followed meanwhile.
 * Ctrl-C (SIGINT / SIGTERM) stops watching and leaves the last version installed (`--remove` removes it).
 */
import { type FSWatcher, readFileSync, statSync, watch } from "node:fs";
import { join, resolve, sep } from "node:path";
import type { LogLine, PluginView } from "../client.js";
import { CliError, EXIT } from "../errors.js";
import { formatLogLine, type Output, printError } from "../output.js";
import { hasTsconfig, watchTypeScript } from "./dev-compiler.js";
import { type CommandContext, followLogs, installCommand, removeCommand, upgradeCommand } from "./plugin.js";

/** Saves closer together than this are one change (editors write a file in several steps). */
const SETTLE_MS = 40;

/** Paths whose changes are not sources: dependencies, build output, packages, VCS data, editor droppings. */
function ignored(rel: string, typescript: boolean): boolean {
  const top = rel.split(sep)[0];
  if (["node_modules", "dist", ".git"].includes(top)) return true;
  if (/\.tar\.gz$|\.tsbuildinfo$|~$|\.swp$|\.tmp$|^\.#/.test(rel)) return true;
  // TypeScript sources are the compiler's to watch: it reports when a compile finished
  return typescript && /\.[mc]?tsx?$/.test(rel);
}

/** The plugin's name from manifest.json; undefined while there is none yet (a build may write it). */
function manifestName(dir: string): string | undefined {
  try {
    const name = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")).name;
    return typeof name === "string" ? name : undefined;
  } catch {
    return undefined; // missing or unreadable: the pack reports what is wrong with it
  }
}

/**
 * The output of one swap: its result line only. `json: true` for the install / upgrade commands also skips their
 * step-by-step progress (an extra event stream per save); a failure still arrives as their error, with its reason.
 */
function swapOutput(out: Output, onView: (v: PluginView) => void): Output {
  return {
    json: true,
    line: () => {},
    progress: () => {},
    result: (value) => {
      const v = value as PluginView & { url: string };
      onView(v);
      // with --json the dev loop prints one JSON object per line (swaps and log lines), like `logs --follow --json`
      if (out.json) process.stdout.write(`${JSON.stringify(value)}\n`);
      else out.line(`${v.name}@${v.version} ${v.status}: ${v.url}`);
    },
  };
}

export async function devCommand(ctx: CommandContext, dirArg: string, opts: { remove?: boolean; key?: string }) {
  const dir = resolve(dirArg);
  if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new CliError("source_not_found", `${dirArg} is not a plugin project directory`, EXIT.USAGE, { field: "dir" });
  }
  const typescript = hasTsconfig(dir);
  // The warm compiler below is the project's whole build when its build script is plain tsc (the scaffold's): the
  // pack then skips a cold `npm run build` on every save. Any other build script runs as `plugin upgrade DIR` would.
  const build = typescript && plainTscBuild(dir) ? false : undefined;
  const out = ctx.out;
  const say = (text: string) => out.progress(`[dev] ${text}`);
  let name: string | undefined;
  const swapCtx: CommandContext = {
    ...ctx,
    out: swapOutput(out, (v) => {
      name = v.name;
    }),
  };
  let installed = false;
  let compiled = !typescript; // nothing is swapped in before the first successful compile
  let running: Promise<void> | undefined;
  let again = false;
  const logs = new AbortController();

  const printLog = (l: LogLine) => {
    if (out.json) process.stdout.write(`${JSON.stringify(l)}\n`);
    else out.line(formatLogLine(l));
  };

  /** The first swap: an upgrade when the plugin is installed already (from an earlier `dev` run), else an install. */
  async function installOrUpgrade(): Promise<void> {
    const known = manifestName(dir);
    const view = known
      ? await ctx.client
          .call<PluginView>("GET", `/admin/api/plugins/${encodeURIComponent(known)}`)
          .catch((err) => (err instanceof CliError && err.exitCode === EXIT.NOT_FOUND ? null : Promise.reject(err)))
      : null;
    if (view) return upgradeCommand(swapCtx, dir, { key: opts.key, build });
    try {
      await installCommand(swapCtx, dir, { wait: true, key: opts.key, build });
    } catch (err) {
      // no manifest.json before the build wrote it: the package named a plugin that is installed already
      if (!(err instanceof CliError && err.code === "plugin_already_installed")) throw err;
      await upgradeCommand(swapCtx, dir, { key: opts.key, build });
    }
  }

  async function swapOnce(): Promise<void> {
    const started = Date.now();
    try {
      if (!installed) {
        await installOrUpgrade();
        installed = true;
        if (name) {
          followLogs(ctx, name, { tail: 0, signal: logs.signal, print: printLog }).catch((err) => {
            if (!logs.signal.aborted) say(`log stream ended: ${(err as Error).message}`);
          });
        }
      } else {
        await upgradeCommand(swapCtx, dir, { key: opts.key, build });
      }
      say(`swapped in (${Date.now() - started} ms); watching ${dir}`);
    } catch (err) {
      printError(err, out.json);
      say(installed ? "the last good version keeps serving; fix it and save again" : "fix it and save again");
    }
  }

  /** One swap at a time; changes during a swap make exactly one more afterwards. */
  function swap(): void {
    if (!compiled) return;
    if (running) {
      again = true;
      return;
    }
    running = swapOnce().finally(() => {
      running = undefined;
      if (again) {
        again = false;
        swap();
      }
    });
  }

  let settle: NodeJS.Timeout | undefined;
  const changed = () => {
    clearTimeout(settle);
    settle = setTimeout(swap, SETTLE_MS);
  };
  // fs.watch is recursive on Linux since Node 20 (inotify): enough for a project tree, no watcher library needed
  const watcher: FSWatcher = watch(dir, { recursive: true }, (_event, file) => {
    if (file && !ignored(String(file), typescript)) changed();
  });
  const stopCompiler = typescript
    ? watchTypeScript(dir, SETTLE_MS, (r) => {
        if (r.errors > 0) {
          out.progress(r.diagnostics);
          say(
            `compile failed (${r.errors} error${r.errors === 1 ? "" : "s"}, ${r.ms} ms): ${installed ? "the last good version keeps serving" : "nothing installed yet"}`,
          );
          return;
        }
        compiled = true;
        say(`compiled (${r.ms} ms)`);
        swap(); // the compiler already waited for the save to settle
      })
    : () => {};
  if (!typescript) swap();
  say(
    `watching ${dir}${typescript ? " (TypeScript: compiled on save)" : ""}; Ctrl-C stops (the plugin stays installed${opts.remove ? ": --remove removes it" : ""})`,
  );

  await new Promise<void>((done) => {
    process.once("SIGINT", done);
    process.once("SIGTERM", done);
  });
  watcher.close();
  stopCompiler();
  clearTimeout(settle);
  again = false;
  await running;
  logs.abort();
  const target = name ?? manifestName(dir);
  if (target && opts.remove) {
    // also a plugin whose first load failed (installed, listed as failed); nothing to do when it never got installed
    await removeCommand(ctx, target, { purgeData: false }).catch((err) => {
      if (!(err instanceof CliError && err.exitCode === EXIT.NOT_FOUND)) throw err;
    });
  } else if (target && installed) {
    say(`stopped: ${target} stays installed (\`hecate plugin remove ${target}\` removes it)`);
  }
}

/** True when the project's build script is absent or a plain `tsc` run (nothing a watch compiler would not do). */
function plainTscBuild(dir: string): boolean {
  let script: unknown;
  try {
    script = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).scripts?.build;
  } catch {
    return true; // no package.json: the pack's own build is tsc too
  }
  return (
    script === undefined || (typeof script === "string" && /^tsc( (-b|--build|-p \S+|--project \S+))?\s*$/.test(script))
  );
}

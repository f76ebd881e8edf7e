/**
 * Worker side of "a plugin's child processes die with it" (the main side is child-reaper.ts).
 *
 * Before the plugin's code is imported, the worker host wraps what starts a process in `node:child_process`
 * (ChildProcess.prototype.spawn, which spawn / exec / execFile / fork all go through, and spawnSync) so that they
 *   - start every child with `detached: true`: the child leads a process group of its own (pgid = its pid), so the
 *     whole group (its own children too: `sh -c "sleep 1000 &"`) can be signalled with one `kill(-pgid)`;
 *   - report its pgid to the main thread at once (`child-spawned`), so the main thread can kill the group when the
 *     worker ends for whatever reason (unload, swap, crash, watchdog), and `child-gone` once the group is empty.
 * The prototype is shared by every import of the module (ESM named imports, default import, require);
 * `syncBuiltinESMExports()` makes `import { spawnSync } from "node:child_process"` see its wrapper. (A Node module
 * loader hook would also work, but hooks run on a thread of their own in Node 20 and must be registered per worker;
 * patching the builtin is two synchronous assignments.) execSync / execFileSync are not covered: they have returned
 * once their command ends, and do not tell its pid; a process such a command leaves in the background is not tracked.
 *
 * On a graceful stop (`stopAll`, before the worker reports `terminated`) the groups are signalled here: SIGTERM,
 * SIGKILL after the grace period, and the worker waits for its direct children to exit, so they are reaped (waited
 * for) by this thread's event loop. A child whose worker is gone can be killed but not reaped by anyone else in the
 * daemon (libuv waits only for the pids its own loop spawned), so it stays a zombie until the daemon exits.
 *
 * Not a sandbox: a plugin runs in the daemon's process and can reach the process bindings directly. This is about
 * well-meaning plugins that forget to stop what they started.
 */
import type { ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { createRequire, syncBuiltinESMExports } from "node:module";

/** Worker -> main thread (posted on the worker's parentPort, alongside the SDK protocol's messages). */
export type ChildReport = { t: "child-spawned"; pgid: number } | { t: "child-gone"; pgid: number };

export function isChildReport(m: unknown): m is ChildReport {
  const t = (m as { t?: unknown } | null)?.t;
  return (t === "child-spawned" || t === "child-gone") && Number.isSafeInteger((m as { pgid?: unknown }).pgid);
}

type AnyFn = (...args: unknown[]) => unknown;

/** True while at least one process of group `pgid` exists (a zombie counts). */
export function groupExists(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * The groups of `pgids` with a member that still runs. A zombie member does not count: a killed child whose worker
 * is gone, or an orphan that an init which does not reap (e.g. a container's PID 1) never waits for, would otherwise
 * keep every wait below running to its deadline. On Linux the members are found in /proc.
 */
export function liveGroups(pgids: Iterable<number>): Set<number> {
  const candidates = new Set([...pgids].filter(groupExists));
  if (candidates.size === 0 || process.platform !== "linux") return candidates;
  const live = new Set<number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, "latin1");
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid pgrp ...": comm may contain anything, so split after its closing parenthesis
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ", 3);
    const g = Number(pgrp);
    if (candidates.has(g) && state !== "Z" && state !== "X") live.add(g);
  }
  return live;
}

/** Sends `signal` to every process of group `pgid`; false when the group is empty. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * `spawnSync(command, args?, options?)` arguments with `detached: true` set in the options object (copied, never
 * mutated), inserted at the options position when the caller passed none.
 */
export function withDetached(call: readonly unknown[]): unknown[] {
  const out = [...call];
  const i = Array.isArray(out[1]) || (out[1] == null && out.length > 1) ? 2 : 1;
  const o = out[i];
  if (o !== null && typeof o === "object" && !Array.isArray(o)) out[i] = { ...o, detached: true };
  else if (o == null && i < out.length) out[i] = { detached: true };
  else out.splice(i, 0, { detached: true });
  return out;
}

export interface ChildGuard {
  /** Process groups started by the plugin that may still have members. */
  readonly groups: ReadonlySet<number>;
  /** SIGTERM every group, SIGKILL what is left after `graceMs`; resolves once the direct children have exited. */
  stopAll(graceMs: number): Promise<void>;
}

/** Installs the wrappers on `node:child_process` (CommonJS exports and the ESM named exports). Once per worker. */
export function guardChildProcesses(report: (m: ChildReport) => void): ChildGuard {
  const require = createRequire(import.meta.url);
  const cp = require("node:child_process") as Record<string, AnyFn>;
  const groups = new Set<number>();
  /** Direct children not yet exited (only these can be waited for here). */
  const running = new Map<number, ChildProcess>();

  const adopt = (pid: number | undefined, child?: ChildProcess) => {
    if (pid === undefined || pid <= 0) return;
    groups.add(pid);
    report({ t: "child-spawned", pgid: pid });
    const forget = () => {
      running.delete(pid);
      // The leader is gone; its group may live on (a backgrounded grandchild). Drop it only once nothing of it runs,
      // so a recycled pid is never signalled as this plugin's group.
      if (groups.has(pid) && liveGroups([pid]).size === 0) {
        groups.delete(pid);
        report({ t: "child-gone", pgid: pid });
      }
    };
    if (child) {
      running.set(pid, child);
      child.once("exit", forget);
    } else forget();
  };

  // spawn, exec, execFile and fork all end in ChildProcess.prototype.spawn with normalised options (exec and
  // execFile pass only some of their options on: `detached` cannot be given through them).
  const proto = (cp.ChildProcess as unknown as { prototype: { spawn: (this: ChildProcess, o: object) => unknown } })
    .prototype;
  const spawnChild = proto.spawn;
  proto.spawn = function (this: ChildProcess, options: object) {
    const err = spawnChild.call(this, { ...options, detached: true });
    adopt(this.pid, this);
    return err;
  };
  const spawnSync = cp.spawnSync!;
  cp.spawnSync = Object.defineProperty(
    function (this: unknown, ...args: unknown[]) {
      const r = spawnSync.apply(this, withDetached(args)) as { pid?: number };
      adopt(r.pid); // the child has exited; a grandchild it left behind in its group has not
      return r;
    },
    "name",
    { value: "spawnSync" },
  );
  syncBuiltinESMExports();

  return {
    groups,
    async stopAll(graceMs) {
      if (groups.size === 0) return;
      for (const g of groups) signalGroup(g, "SIGTERM");
      const done = () => running.size === 0 && liveGroups(groups).size === 0;
      await until(done, graceMs);
      for (const g of liveGroups(groups)) signalGroup(g, "SIGKILL");
      // SIGKILL cannot be caught: the direct children exit now and are reaped by this loop.
      await until(() => running.size === 0, 500);
    },
  };
}

/** Polls `cond` every 20 ms until it holds or `ms` have passed. */
async function until(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

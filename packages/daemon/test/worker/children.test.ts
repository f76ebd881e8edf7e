/**
 * Issue 11 point 7: every process a plugin starts (spawn / exec / execFile / fork / spawnSync, through ESM named imports
 * and the default export alike), and the processes those start, are killed when the plugin is unloaded, swapped
 * out (upgrade) or crashes (a throw in a timer, process.exit). Real `sleep 1000` processes, checked in /proc.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { withDetached } from "../../src/worker/child-guard.js";
import { type Env, json, raw, setup, writePlugin } from "./helpers.js";

const PLUGIN = (name: string, version: string) => `
import { spawn, execFile, fork, spawnSync } from "node:child_process";
import cp from "node:child_process";
import { promisify } from "node:util";
const pids = [];
// a direct child, and sh with a grandchild in the background (its pid read from sh's stdout)
function startPair() {
  pids.push(spawn("sleep", ["1000"], { stdio: "ignore" }).pid);
  return new Promise((resolve, reject) => {
    const sh = cp.spawn("sh", ["-c", "sleep 1000 & echo $!; wait"], { stdio: ["ignore", "pipe", "ignore"] });
    pids.push(sh.pid);
    sh.on("error", reject);
    sh.stdout.once("data", (d) => { pids.push(Number(String(d).trim())); resolve(); });
  });
}
export function manifest() { return { name: ${JSON.stringify(name)}, version: ${JSON.stringify(version)} }; }
export async function init() { await startPair(); }
export function routes() {
  return [
    { method: "GET", path: "/spawn", handler: async () => {
        await startPair();
        pids.push(cp.exec("exec sleep 1000").pid);
        pids.push(execFile("sleep", ["1000"], () => {}).pid);
        pids.push(fork(new URL("./child.cjs", import.meta.url).pathname, [], { stdio: "ignore" }).pid);
        // spawnSync returns at once; the grandchild it leaves behind stays in its process group
        const r = spawnSync("sh", ["-c", "sleep 1000 >/dev/null 2>&1 & echo $!"], { encoding: "utf8" });
        pids.push(Number(r.stdout.trim()));
        return { pids };
      } },
    { method: "GET", path: "/promisified", handler: async () => {
        const r = await promisify(cp.execFile)("echo", ["hi"]);
        const e = await promisify(cp.exec)("echo there");
        return { execFile: r, exec: e };
      } },
    { method: "GET", path: "/throw-later", handler: () => { setTimeout(() => { throw new Error("boom"); }, 20); return {}; } },
    { method: "GET", path: "/exit", handler: () => { setTimeout(() => process.exit(3), 20); return {}; } },
  ];
}
`;

/** A node child for fork(): idles until killed. */
const CHILD = (version: string) => ({ [`dist-${version}/child.cjs`]: "setInterval(() => {}, 60_000);\n" });

/** Running (not gone, not a zombie) per /proc; also its process group. */
function procState(pid: number): { alive: boolean; ppid?: number; pgrp?: number } {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return { alive: false };
  }
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { alive: fields[0] !== "Z" && fields[0] !== "X", ppid: Number(fields[1]), pgrp: Number(fields[2]) };
}

async function allDead(pids: number[], withinMs: number): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < withinMs) {
    if (pids.every((p) => !procState(p).alive)) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 25));
  }
  const alive = pids.filter((p) => procState(p).alive);
  assert.fail(`still running after ${withinMs} ms: ${alive.join(", ")} (of ${pids.join(", ")})`);
}

async function spawnAll(env: Env, name: string): Promise<number[]> {
  const r = await raw(env.port, "GET", `/plugin/${name}/api/spawn`);
  assert.equal(r.status, 200, r.body.toString());
  const { pids } = json(r) as { pids: number[] };
  assert.equal(pids.length, 10, JSON.stringify(pids));
  for (const pid of pids) assert.ok(Number.isSafeInteger(pid) && pid > 0, JSON.stringify(pids));
  const states = pids.map(procState);
  assert.ok(
    states.every((s) => s.alive),
    `all started processes run: ${JSON.stringify(states)}`,
  );
  // detached: the plugin's direct children lead their own process group (the daemon's is not theirs)
  assert.equal(procState(pids[0]!).pgrp, pids[0]);
  assert.notEqual(procState(pids[0]!).pgrp, procState(process.pid).pgrp);
  return pids;
}

let env: Env;
before(async () => {
  env = await setup({ childGraceMs: 1000 });
});
after(async () => {
  await env.close();
});

test("withDetached sets detached:true in spawnSync's options whatever the call shape, copying, never mutating", () => {
  const opts = { cwd: "/" };
  assert.deepEqual(withDetached(["ls"]), ["ls", { detached: true }]);
  assert.deepEqual(withDetached(["ls", ["-l"]]), ["ls", ["-l"], { detached: true }]);
  assert.deepEqual(withDetached(["ls", ["-l"], opts]), ["ls", ["-l"], { cwd: "/", detached: true }]);
  assert.deepEqual(withDetached(["ls", opts]), ["ls", { cwd: "/", detached: true }]);
  assert.deepEqual(withDetached(["ls", undefined, opts]), ["ls", undefined, { cwd: "/", detached: true }]);
  assert.deepEqual(withDetached(["ls", ["-l"], undefined]), ["ls", ["-l"], { detached: true }]);
  assert.deepEqual(withDetached(["ls", null]), ["ls", null, { detached: true }]);
  assert.deepEqual(opts, { cwd: "/" });
});

test("unload kills every process the plugin started, grandchildren included; promisify keeps its shape", async () => {
  await env.workers.load(writePlugin(env.home, "kids-a", "1.0.0", PLUGIN("kids-a", "1.0.0"), CHILD("1.0.0")));
  const p = json(await raw(env.port, "GET", "/plugin/kids-a/api/promisified"));
  assert.deepEqual(p, { execFile: { stdout: "hi\n", stderr: "" }, exec: { stdout: "there\n", stderr: "" } });
  const pids = await spawnAll(env, "kids-a");
  const t0 = Date.now();
  await env.workers.unload("kids-a");
  const unloadMs = Date.now() - t0;
  // unload resolves once they are stopped (a grandchild may still be in its reparenting when it resolves)
  const after = await allDead(pids, 2000);
  // a graceful stop reaps them in the worker too: no zombie child of this process is left behind
  assert.deepEqual(
    pids.filter((p) => procState(p).ppid === process.pid),
    [],
  );
  console.log(`# unload: ${pids.length} processes stopped, unload ${unloadMs} ms (+${after} ms)`);
});

test("swap (upgrade) kills the old version's processes; the new version's keep running until it goes", async () => {
  await env.workers.load(writePlugin(env.home, "kids-b", "1.0.0", PLUGIN("kids-b", "1.0.0"), CHILD("1.0.0")));
  const old = await spawnAll(env, "kids-b");
  await env.workers.swap("kids-b", writePlugin(env.home, "kids-b", "2.0.0", PLUGIN("kids-b", "2.0.0"), CHILD("2.0.0")));
  await allDead(old, 2000);
  const fresh = await spawnAll(env, "kids-b");
  assert.equal(fresh.filter((p) => old.includes(p)).length, 0, "the new version's processes are its own");
  await env.workers.unload("kids-b");
  await allDead(fresh, 2000);
});

for (const [crash, path] of [
  ["a throw in a timer", "/throw-later"],
  ["process.exit", "/exit"],
] as const) {
  test(`a worker crash (${crash}) kills the processes the plugin started`, async () => {
    const name = path === "/exit" ? "kids-exit" : "kids-throw";
    await env.workers.load(writePlugin(env.home, name, "1.0.0", PLUGIN(name, "1.0.0"), CHILD("1.0.0")));
    const pids = await spawnAll(env, name);
    const crashed = new Promise<string>((resolve) =>
      env.workers.on("crashed", (n: string, reason: string) => n === name && resolve(reason)),
    );
    const restarted = new Promise<void>((resolve) =>
      env.workers.on("restarted", (n: string) => n === name && resolve()),
    );
    assert.equal((await raw(env.port, "GET", `/plugin/${name}/api${path}`)).status, 200);
    const reason = await crashed;
    const t0 = Date.now();
    // SIGTERM at once; the killed direct children stay zombies of this process (their worker is gone), so the
    // reaper waits out its 1 s grace and sends SIGKILL too: "dead" here means gone or a zombie.
    const ms = await allDead(pids, 3000);
    console.log(
      `# crash (${reason}): ${pids.length} processes stopped ${Date.now() - t0} ms after the crash event (${ms})`,
    );
    await restarted;
    await env.workers.unload(name);
  });
}

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Worker } from "node:worker_threads";
import Database from "better-sqlite3";
import { createCqrs, openEventStore } from "../src/index.js";
import { account } from "./fixtures/account.js";
import { fixture, sleep, tempDir, waitFor } from "./helpers.js";

function runWorkers<T>(count: number, data: Record<string, unknown>): Promise<T[]> {
  const gate = new SharedArrayBuffer(8);
  const view = new Int32Array(gate);
  const workers = Array.from(
    { length: count },
    (_, worker) => new Worker(fixture("contention-worker.js"), { workerData: { ...data, worker, gate } }),
  );
  const results = Promise.all(
    workers.map(
      (w) =>
        new Promise<T>((resolve, reject) => {
          let result: T | undefined;
          w.on("message", (m) => {
            result = m as T;
          });
          w.on("error", reject);
          w.on("exit", (code) => (code === 0 && result ? resolve(result) : reject(new Error(`worker exit ${code}`))));
        }),
    ),
  );
  // Open the gate once every worker has opened its store, so they really race.
  const opener = setInterval(() => {
    if (Atomics.load(view, 1) === count) {
      clearInterval(opener);
      Atomics.store(view, 0, 1);
      Atomics.notify(view, 0);
    }
  }, 2);
  return results.finally(() => clearInterval(opener));
}

/** Collects a child's stdout lines; resolves `exited` with its exit code or signal. */
function child(args: string[], onLine?: (line: string, lines: string[]) => void) {
  const proc: ChildProcess = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  let buf = "";
  let stderr = "";
  proc.stdout!.on("data", (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split("\n");
    buf = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      onLine?.(line, lines);
    }
  });
  proc.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on("exit", (code, signal) => resolve({ code, signal })),
  );
  return { proc, lines, exited, stderr: () => stderr };
}

describe("concurrency and crashes", () => {
  test("8 worker threads race on one stream: exactly one success per revision", async (t) => {
    const dir = tempDir();
    await openEventStore({ directory: dir, storeId: "race" }).close();
    const revisions = 30;
    const results = await runWorkers<{ won: number[]; conflicts: number }>(8, {
      directory: dir,
      storeId: "race",
      mode: "append",
      revisions,
    });
    const winners = new Map<number, number>();
    results.forEach((r, worker) => {
      for (const rev of r.won) {
        assert.equal(winners.has(rev), false, `revision ${rev} won twice`);
        winners.set(rev, worker);
      }
    });
    assert.equal(winners.size, revisions);
    const totalConflicts = results.reduce((n, r) => n + r.conflicts, 0);
    assert.ok(totalConflicts > 0, "the workers never collided: the test did not exercise contention");
    t.diagnostic(`wins per worker: ${results.map((r) => r.won.length).join(",")}; conflicts: ${totalConflicts}`);
    const store = openEventStore({ directory: dir, storeId: "race" });
    const events = await store.readStream("contended");
    assert.equal(events.length, revisions);
    for (const e of events) assert.equal((e.data as { worker: number }).worker, winners.get(e.revision));
    await store.close();
  });

  test("6 child processes race on one stream: exactly one success per revision", async (t) => {
    const dir = tempDir();
    await openEventStore({ directory: dir, storeId: "prace" }).close();
    const revisions = 25;
    const startAt = Date.now() + 1500; // after every child has started and opened the store
    const children = Array.from({ length: 6 }, (_, worker) =>
      child([
        fixture("contention-worker.js"),
        JSON.stringify({ directory: dir, storeId: "prace", mode: "append", revisions, worker, startAt }),
      ]),
    );
    const results: { won: number[]; conflicts: number }[] = [];
    for (const c of children) {
      assert.equal((await c.exited).code, 0, c.stderr());
      results.push(JSON.parse(c.lines[0]));
    }
    const winners = new Map<number, number>();
    results.forEach((r, worker) => {
      for (const rev of r.won) {
        assert.equal(winners.has(rev), false, `revision ${rev} won twice`);
        winners.set(rev, worker);
      }
    });
    assert.equal(winners.size, revisions);
    const store = openEventStore({ directory: dir, storeId: "prace" });
    const events = await store.readStream("contended");
    assert.equal(events.length, revisions);
    for (const e of events) assert.equal((e.data as { worker: number }).worker, winners.get(e.revision));
    t.diagnostic(
      `wins per process: ${results.map((r) => r.won.length).join(",")}; conflicts: ${results.reduce((n, r) => n + r.conflicts, 0)}`,
    );
    await store.close();
  });

  test("4 worker threads dispatch to one aggregate: retries lose no update", async () => {
    const dir = tempDir();
    const store = openEventStore({ directory: dir, storeId: "disp" });
    const cqrs = createCqrs(store);
    await cqrs.dispatch(account, "shared", { type: "open_account_v1", data: { owner: "all" } });
    await runWorkers<{ ok: number }>(4, { directory: dir, storeId: "disp", mode: "dispatch", revisions: 25 });
    const state = (await cqrs.load(account, "shared")).state;
    assert.equal(state.deposits, 100);
    assert.equal(state.balance, 25 * (1 + 2 + 3 + 4));
    await store.close();
  });

  test("live subscription receives appends made by another process and by a worker thread", async () => {
    const dir = tempDir();
    const store = openEventStore({ directory: dir, storeId: "live" });
    await store.append("local", [{ type: "before", data: {} }]);
    const seen: string[] = [];
    const sub = store.subscribe({ handler: (e) => void seen.push(e.type) });
    await sub.caughtUp();
    const c = child([fixture("live-writer.js"), dir, "live", "20"]);
    await waitFor(() => seen.length === 21, 15_000, "20 events from the child process");
    assert.deepEqual((await c.exited).code, 0);
    assert.deepEqual(seen, ["before", ...Array(20).fill("from_child")]);
    // And from a worker thread of this process (its own connection).
    const w = new Worker(fixture("live-writer.js"), { argv: [dir, "live", "10"] });
    const exited = new Promise((r) => w.on("exit", r));
    await waitFor(() => seen.length === 31, 15_000, "10 events from the worker thread");
    assert.equal(await exited, 0);
    await sub.stop();
    await store.close();
  });

  test("kill -9 of a writer at random moments: integrity ok, gapless, every acked append present", async (t) => {
    const dir = tempDir();
    const acked = new Map<string, number>();
    let killedMidway = 0;
    for (let round = 0; round < 6; round++) {
      // Kill at a random point of the 100 appends: after a random number of acks plus a random sub-ms delay, while
      // the child keeps writing (it may be mid-transaction, mid-fsync or between append and ack).
      const killAfterAcks = Math.floor(Math.random() * 95);
      let acks = 0;
      const c = child([fixture("ack-writer.js"), dir, "crash", `r${round}`, "100"], (line) => {
        if (line.startsWith("ack ") && ++acks === killAfterAcks + 1) {
          setTimeout(() => c.proc.kill("SIGKILL"), Math.random() * 3);
        }
      });
      if (killAfterAcks === 0) {
        await waitFor(() => c.lines.includes("ready") || c.proc.exitCode !== null, 15_000, "writer ready");
        c.proc.kill("SIGKILL");
      }
      const { signal, code } = await c.exited;
      if (signal === "SIGKILL") killedMidway++;
      else assert.equal(code, 0, c.stderr());
      for (const line of c.lines) {
        const m = /^ack (\d+) (.+)$/.exec(line);
        if (!m) continue;
        const ids = m[2].split(",");
        for (const [k, id] of ids.entries()) acked.set(id, Number(m[1]) - ids.length + 1 + k);
      }
    }
    assert.ok(killedMidway >= 3, `only ${killedMidway} rounds were killed mid-way`);
    const db = new Database(join(dir, "crash.sqlite"));
    assert.equal(db.pragma("integrity_check", { simple: true }), "ok");
    db.close();
    const store = openEventStore({ directory: dir, storeId: "crash" });
    const all = await store.readAll();
    assert.deepEqual(
      all.map((e) => e.position),
      Array.from({ length: all.length }, (_, i) => i + 1),
      "positions have a gap",
    );
    const byId = new Map(all.map((e) => [e.id, e]));
    for (const [id, position] of acked) assert.equal(byId.get(id)?.position, position, `acked event ${id} missing`);
    for (let s = 0; s < 4; s++) {
      const revs = (await store.readStream(`s-${s}`)).map((e) => e.revision);
      assert.deepEqual(
        revs,
        Array.from({ length: revs.length }, (_, i) => i),
      );
    }
    assert.ok(acked.size > 0);
    t.diagnostic(`${killedMidway}/6 rounds killed mid-way, ${acked.size} acked ids, ${all.length} stored events`);
    await store.close();
  });

  test("a projection process killed mid-way resumes without double-applying or skipping", async (t) => {
    const dir = tempDir();
    const store = openEventStore({ directory: dir, storeId: "projsrc", durability: "NORMAL" });
    const total = 4000;
    for (let b = 0; b < total / 100; b++) {
      await store.append(
        `st-${b % 7}`,
        Array.from({ length: 100 }, (_, i) => ({ type: "tick", data: { n: b * 100 + i } })),
      );
    }
    const readModel = join(dir, "rm", "counter.sqlite");
    const checkpoints: number[] = [];
    let done = false;
    for (let round = 0; round < 30 && !done; round++) {
      const c = child([fixture("projection-child.js"), dir, "projsrc", readModel]);
      await waitFor(() => c.lines.includes("ready") || c.proc.exitCode !== null, 15_000, "projection ready");
      await sleep(Math.random() * 40);
      c.proc.kill("SIGKILL");
      const { signal, code } = await c.exited;
      if (signal !== "SIGKILL") {
        assert.equal(code, 0, c.stderr());
        done = c.lines.includes("done");
      }
      const rm = new Database(readModel, { readonly: true, fileMustExist: true });
      const cp = rm.prepare("SELECT position FROM _hecate_projection_checkpoints WHERE name = 'counter'").pluck().get();
      const n = rm.prepare("SELECT n FROM total").pluck().get();
      rm.close();
      // The count always equals the checkpoint: applied rows and checkpoint commit together.
      assert.equal(n ?? 0, cp ?? 0);
      checkpoints.push((cp as number | undefined) ?? 0);
    }
    if (!done) {
      const last = child([fixture("projection-child.js"), dir, "projsrc", readModel]);
      assert.equal((await last.exited).code, 0, last.stderr());
    }
    assert.ok(
      checkpoints.some((cp) => cp > 0 && cp < total),
      `no kill landed mid-way (checkpoints ${checkpoints.join(",")})`,
    );
    t.diagnostic(`checkpoints after each kill: ${checkpoints.join(",")}`);
    const rm = new Database(readModel, { readonly: true });
    assert.equal(rm.prepare("SELECT n FROM total").pluck().get(), total);
    const perStream = rm.prepare("SELECT stream, n FROM per_stream ORDER BY stream").all() as {
      stream: string;
      n: number;
    }[];
    for (const { stream, n } of perStream) assert.equal(n, (await store.streamRevision(stream)) + 1);
    assert.equal(
      perStream.reduce((a, r) => a + r.n, 0),
      total,
    );
    rm.close();
    await store.close();
  });
});

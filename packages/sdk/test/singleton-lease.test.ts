/**
 * Singleton jobs against a real PostgreSQL (started here): two schedulers of one process stand for two nodes (each
 * job instance is its own lease holder). One runs the job, the other counts `elsewhere`; the holder stopping hands the
 * job over at the other's next tick; a holder whose lease was taken from it (here: the row rewritten by hand, as after
 * an expiry) aborts the signal of its running run and stops running the job.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type PgServer, startPostgres } from "@hecate/store/testing/postgres";
import pg from "pg";
import { resetConfig, setConfig, standaloneConfig } from "../src/config.js";
import * as scheduler from "../src/scheduler.js";

let server: PgServer;
before(async () => {
  server = await startPostgres();
  setConfig(standaloneConfig("leasy", { standalone: false, cluster: { nodeId: "n1", storeUrl: server.url } }));
});
after(async () => {
  resetConfig();
  await server?.stop();
});

async function until(fn: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("one of two holders runs a singleton job; stopping it hands over; a lost lease aborts the running run", async () => {
  const log = () => {};
  const [s1, s2] = [scheduler.createScheduler({ log }), scheduler.createScheduler({ log })];
  const runsBy = [0, 0];
  const aborted: string[] = [];
  const job = (i: number, s: scheduler.Scheduler) =>
    s.every(
      100,
      async ({ signal }) => {
        runsBy[i]++;
        // a long run when asked for, to be cut short by a lost lease
        if (longRun) await new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));
        if (signal.aborted) aborted.push(String((signal.reason as Error).message));
      },
      { name: "tick", singleton: true, leaseMs: 1500 },
    );
  let longRun = false;
  const [j1, j2] = [job(0, s1), job(1, s2)];
  try {
    await until(() => runsBy[0] + runsBy[1] >= 5, 5000, "5 runs");
    const holder = runsBy[0] > 0 ? 0 : 1;
    assert.equal(runsBy[1 - holder], 0, `both ran: ${runsBy}`);
    const [held, other] = holder === 0 ? [j1, j2] : [j2, j1];
    assert.ok(other.stats.elsewhere > 0);

    // the holder's job stops: its lease is deleted, the other takes it at its next tick (well before 1.5 s)
    const t0 = Date.now();
    await held.stop();
    await until(() => other.stats.runs > 0, 1000, "handover");
    const handover = Date.now() - t0;
    assert.ok(handover < 1000, `handover after ${handover} ms`);

    // the lease is taken from the running holder (as another node would after an expiry): its run is aborted
    longRun = true;
    await until(() => other.stats.running > 0, 2000, "a long run");
    const c = new pg.Client({ connectionString: server.url });
    await c.connect();
    await c.query("UPDATE hecate_job_leases SET holder = 'someone-else', expires_at = now() + interval '1 hour'");
    await c.end();
    await until(() => aborted.length > 0, 2000, "the run aborted at the next renewal");
    assert.match(aborted[0], /lost its lease/);
    longRun = false;
    const runs = other.stats.runs;
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(other.stats.runs, runs, "no more runs without the lease");
  } finally {
    await Promise.all([s1.stopAll(), s2.stopAll()]);
  }
});

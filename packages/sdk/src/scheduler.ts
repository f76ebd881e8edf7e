/**
 * Interval and cron jobs for a plugin.
 *
 *   const cleanup = scheduler.cron("0 *\/10 * * * *", async ({ signal }) => purgeOld(signal), { name: "cleanup" });
 *   scheduler.every(30_000, refreshCache, { jitterMs: 5_000 });
 *   cleanup.stats  // { runs, errors, skipped, lastError, lastRunAt, lastDurationMs, running }
 *
 * - One run of a job at a time: a tick that comes while the previous run is still going is skipped (and counted in
 *   `stats.skipped`) unless `allowOverlap`.
 * - A run that throws (or rejects) is logged to the plugin's log and counted (`stats.errors`, `stats.lastError`); the
 *   job keeps its schedule.
 * - `jitterMs` delays each run by a random 0..jitterMs, so many instances do not fire in the same instant.
 * - Jobs stop at unload: every scheduler registers itself with the SDK dispatcher, which stops it after the plugin's
 *   `terminate()`; calling `stopAll()` from `terminate()` yourself is fine too. Stopping aborts the `signal` given to
 *   running runs and waits for them to settle.
 *
 * - `singleton: true` (cluster mode: daemons sharing one `HECATE_STORE_URL`): the job runs on one node at a time, the
 *   one holding its lease in PostgreSQL (lease.ts); the other nodes' ticks are counted in `stats.elsewhere`. The
 *   holder keeps it while it lives; when it stops the job (unload, upgrade) or dies, another node runs the job from
 *   its next tick on (a killed holder's lease expires after `leaseMs`). A run whose node loses the lease gets its
 *   `signal` aborted. On a single daemon (and standalone) `singleton` changes nothing.
 *
 * Cron patterns are croner's (5 fields, or 6 with seconds first; `@hourly` etc.); `timezone` e.g. "Europe/Berlin".
 */
import { Cron } from "croner";
import { clusterStore, getConfig, hostConfigPending } from "./config.js";
import { JobLease } from "./lease.js";
import { hostLog, onTerminate } from "./runtime/hooks.js";

export interface RunContext {
  /** Aborted when the job (or its scheduler) is stopped. */
  signal: AbortSignal;
  /** When the tick fired (ms since epoch), before jitter. */
  scheduledAt: number;
  /** 1 for the first run of this job. */
  run: number;
}

export type JobFn = (ctx: RunContext) => unknown;

export interface JobOptions {
  /** Shown in logs and `scheduler.jobs()`; default `job-<n>`. */
  name?: string;
  /** Let a run start while the previous one is still going (default false: the tick is skipped). */
  allowOverlap?: boolean;
  /** Delay each run by a random 0..jitterMs milliseconds (default 0). */
  jitterMs?: number;
  /** Source of randomness for the jitter (default Math.random), e.g. to make tests exact. */
  random?: () => number;
  /**
   * Cluster mode: run on one node at a time, under a lease (see the file comment). Needs a `name`, the same on every
   * node and unique among the plugin's singleton jobs (the lease is found by it). No effect on a single daemon.
   */
  singleton?: boolean;
  /**
   * Singleton jobs: how long a lease lasts without renewal (default 15000 ms, at least 500), i.e. how long a killed
   * holder keeps the job from running elsewhere. The holder renews it every third of that.
   */
  leaseMs?: number;
}

export interface IntervalOptions extends JobOptions {
  /** Also run right away instead of waiting one interval (default false). */
  runImmediately?: boolean;
}

export interface CronOptions extends JobOptions {
  /** IANA timezone of the pattern (default: the process's). */
  timezone?: string;
}

export interface JobStats {
  /** Runs started. */
  runs: number;
  /** Runs that threw or rejected. */
  errors: number;
  /** Ticks skipped because the previous run was still going. */
  skipped: number;
  lastError: { message: string; at: number } | null;
  /** Start of the latest run (ms since epoch). */
  lastRunAt: number | null;
  lastDurationMs: number | null;
  /** Runs going on now. */
  running: number;
  /** Singleton jobs in cluster mode: ticks not run here because another node holds the lease (or none could be had). */
  elsewhere: number;
}

export interface Job {
  readonly name: string;
  readonly kind: "interval" | "cron";
  readonly stats: Readonly<JobStats>;
  /** Next planned tick (ms since epoch), null once stopped. */
  nextRunAt(): number | null;
  /** Runs the job now (respecting allowOverlap), outside its schedule. Resolves when that run settles. */
  trigger(): Promise<void>;
  /** Stops the schedule, aborts running runs' signal and resolves once they settled. */
  stop(): Promise<void>;
  readonly stopped: boolean;
}

export interface SchedulerOptions {
  /** Where failures are logged (default: the plugin's log through the host). */
  log?: (level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void;
}

export interface Scheduler {
  every(intervalMs: number, fn: JobFn, options?: IntervalOptions): Job;
  cron(pattern: string, fn: JobFn, options?: CronOptions): Job;
  jobs(): Job[];
  /** Stops every job of this scheduler and waits for running runs to settle. */
  stopAll(): Promise<void>;
}

/** Thrown for a bad schedule (interval, cron pattern, timezone, jitter). */
export class ScheduleError extends Error {
  readonly code = "invalid_schedule";
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
    this.name = "ScheduleError";
  }
}

/** Largest delay setTimeout/setInterval accept. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const DEFAULT_LEASE_MS = 15_000;
const MIN_LEASE_MS = 500;

export function createScheduler(options: SchedulerOptions = {}): Scheduler {
  const log = options.log ?? hostLog;
  const all = new Set<JobImpl>();
  let counter = 0;

  class JobImpl implements Job {
    readonly stats: JobStats = {
      runs: 0,
      errors: 0,
      skipped: 0,
      lastError: null,
      lastRunAt: null,
      lastDurationMs: null,
      running: 0,
      elsewhere: 0,
    };
    stopped = false;
    private readonly abort = new AbortController();
    /** Singleton jobs in cluster mode: the lease (made at the first tick, once the host has set the config). */
    private lease: JobLease | undefined;
    /** Aborted when the lease is lost: runs started under it get a signal that follows it too. */
    private leaseAbort = new AbortController();
    private leaseFailing = false;
    private readonly inflight = new Set<Promise<void>>();
    private readonly jitterTimers = new Set<NodeJS.Timeout>();
    stopTimer: () => void = () => {};
    next: () => number | null = () => null;

    constructor(
      readonly name: string,
      readonly kind: "interval" | "cron",
      private readonly fn: JobFn,
      private readonly opts: JobOptions,
    ) {}

    nextRunAt(): number | null {
      return this.stopped ? null : this.next();
    }

    /** A tick of the schedule: after the jitter, start a run unless one is going and overlap is not allowed. */
    tick(): void {
      if (this.stopped) return;
      const scheduledAt = Date.now();
      const jitter = this.opts.jitterMs ? Math.floor((this.opts.random ?? Math.random)() * this.opts.jitterMs) : 0;
      if (jitter <= 0) {
        void this.start(scheduledAt);
        return;
      }
      const t = setTimeout(() => {
        this.jitterTimers.delete(t);
        void this.start(scheduledAt);
      }, jitter);
      this.jitterTimers.add(t);
    }

    start(scheduledAt: number): Promise<void> {
      if (this.stopped) return Promise.resolve();
      if (this.opts.singleton) {
        // A tick before the host set the config (module top level) cannot know yet whether this is a cluster.
        const pending = hostConfigPending();
        if (pending) return pending.then(() => this.start(scheduledAt));
        const cluster = clusterStore();
        if (cluster) return this.startIfHolder(cluster, scheduledAt);
      }
      return this.runNow(scheduledAt, this.abort.signal);
    }

    /** Singleton in cluster mode: runs only while this node holds (or now takes) the job's lease. */
    private async startIfHolder(cluster: { url: string; nodeId: string }, scheduledAt: number): Promise<void> {
      this.lease ??= new JobLease({
        ...cluster,
        plugin: getConfig().pluginName,
        job: this.name,
        leaseMs: this.opts.leaseMs ?? DEFAULT_LEASE_MS,
        onLost: () => {
          this.leaseAbort.abort(new Error(`job ${this.name}: this node lost its lease`));
          this.leaseAbort = new AbortController();
        },
      });
      let mine = false;
      try {
        mine = this.lease.held() || (await this.lease.acquire());
        this.leaseFailing = false;
      } catch (err) {
        // PostgreSQL away: said once until it answers again, not at every tick
        if (!this.leaseFailing)
          log("warn", `scheduled job ${this.name}: its lease could not be checked: ${(err as Error).message}`, {
            job: this.name,
          });
        this.leaseFailing = true;
      }
      if (this.stopped) return;
      if (!mine) {
        this.stats.elsewhere++;
        return;
      }
      return this.runNow(scheduledAt, AbortSignal.any([this.abort.signal, this.leaseAbort.signal]));
    }

    private runNow(scheduledAt: number, signal: AbortSignal): Promise<void> {
      if (this.stats.running > 0 && !this.opts.allowOverlap) {
        this.stats.skipped++;
        return Promise.resolve();
      }
      const run = ++this.stats.runs;
      const startedAt = Date.now();
      this.stats.lastRunAt = startedAt;
      this.stats.running++;
      const p = Promise.resolve()
        .then(() => this.fn({ signal, scheduledAt, run }))
        .then(
          () => {},
          (err: unknown) => {
            const message = err instanceof Error ? err.message : String(err);
            this.stats.errors++;
            this.stats.lastError = { message, at: Date.now() };
            log("error", `scheduled job ${this.name} failed: ${message}`, {
              job: this.name,
              run,
              stack: err instanceof Error ? err.stack : undefined,
            });
          },
        )
        .finally(() => {
          this.stats.running--;
          this.stats.lastDurationMs = Date.now() - startedAt;
          this.inflight.delete(p);
        });
      this.inflight.add(p);
      return p;
    }

    trigger(): Promise<void> {
      return this.start(Date.now());
    }

    async stop(): Promise<void> {
      if (!this.stopped) {
        this.stopped = true;
        this.stopTimer();
        for (const t of this.jitterTimers) clearTimeout(t);
        this.jitterTimers.clear();
        this.abort.abort(new Error(`job ${this.name} stopped`));
        all.delete(this);
      }
      await Promise.all([...this.inflight]);
      await this.lease?.release(); // after the runs: another node may start it from its next tick
    }
  }

  function make(kind: "interval" | "cron", fn: JobFn, opts: JobOptions): JobImpl {
    if (typeof fn !== "function") throw new ScheduleError("the job is not a function", "fn");
    const jitter = opts.jitterMs ?? 0;
    if (!(Number.isFinite(jitter) && jitter >= 0 && jitter <= MAX_TIMER_MS))
      throw new ScheduleError(`jitterMs must be a number from 0 to ${MAX_TIMER_MS}`, "jitterMs");
    if (opts.singleton && (typeof opts.name !== "string" || opts.name === ""))
      throw new ScheduleError("a singleton job needs a name: every node finds its lease by it", "name");
    const leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
    if (!(Number.isInteger(leaseMs) && leaseMs >= MIN_LEASE_MS && leaseMs <= MAX_TIMER_MS))
      throw new ScheduleError(
        `leaseMs must be a whole number of ms from ${MIN_LEASE_MS} to ${MAX_TIMER_MS}`,
        "leaseMs",
      );
    return new JobImpl(opts.name ?? `job-${++counter}`, kind, fn, opts);
  }

  const scheduler: Scheduler = {
    every(intervalMs, fn, opts = {}) {
      if (!(Number.isFinite(intervalMs) && intervalMs >= 1 && intervalMs <= MAX_TIMER_MS))
        throw new ScheduleError(`interval must be a number of ms from 1 to ${MAX_TIMER_MS}`, "intervalMs");
      const job = make("interval", fn, opts);
      let due = Date.now() + intervalMs;
      // setInterval keeps a fixed rate (a slow run does not push later ticks back).
      const timer = setInterval(() => {
        due = Date.now() + intervalMs;
        job.tick();
      }, intervalMs);
      job.stopTimer = () => clearInterval(timer);
      job.next = () => due;
      all.add(job);
      if (opts.runImmediately) job.tick();
      return job;
    },
    cron(pattern, fn, opts = {}) {
      const job = make("cron", fn, opts);
      let c: Cron;
      try {
        // croner only times the ticks; overlap, jitter, errors and stats are ours, alike for both kinds of job.
        c = new Cron(pattern, { timezone: opts.timezone, catch: false }, () => job.tick());
      } catch (err) {
        throw new ScheduleError(
          `invalid cron pattern ${JSON.stringify(pattern)}: ${(err as Error).message}`,
          "pattern",
        );
      }
      job.stopTimer = () => c.stop();
      job.next = () => c.nextRun()?.getTime() ?? null;
      all.add(job);
      return job;
    },
    jobs: () => [...all],
    async stopAll() {
      await Promise.all([...all].map((j) => j.stop()));
    },
  };
  // Stopped by the dispatcher at unload even if the plugin forgets to.
  onTerminate(() => scheduler.stopAll());
  return scheduler;
}

let defaultScheduler: Scheduler | undefined;

/** The plugin's default scheduler (created on first use). */
export function defaultInstance(): Scheduler {
  if (!defaultScheduler) {
    const s = createScheduler();
    defaultScheduler = s;
    onTerminate(() => {
      if (defaultScheduler === s) defaultScheduler = undefined;
    });
  }
  return defaultScheduler;
}

/** `every` on the default scheduler. */
export function every(intervalMs: number, fn: JobFn, options?: IntervalOptions): Job {
  return defaultInstance().every(intervalMs, fn, options);
}

/** `cron` on the default scheduler. */
export function cron(pattern: string, fn: JobFn, options?: CronOptions): Job {
  return defaultInstance().cron(pattern, fn, options);
}

/** Stops every job of the default scheduler (call it from `terminate()`, or let the SDK do it at unload). */
export async function stopAll(): Promise<void> {
  await defaultScheduler?.stopAll();
}

/** Catch-up then live subscriptions, the same for every backend (they only read through `SubscriptionHost`). */
import { SubscriptionStoppedError } from "../errors.js";
import type { RecordedEvent, Subscription, SubscriptionOptions } from "../types.js";

/** One subscription read: events after global position `after` (or, for one stream, after `revision`) up to `upto`. */
export interface SubscriptionRead {
  after: number;
  upto: number;
  limit: number;
  types: string[] | null;
  prefix: string | null;
  stream?: string;
  revision?: number;
}

/** What a subscription needs from its store. */
export interface SubscriptionHost {
  readonly isClosed: boolean;
  headPosition(): Promise<number>;
  readCheckpoint(name: string): Promise<number | null>;
  saveCheckpoint(name: string, position: number): Promise<void>;
  /** Revision of `stream` at global position `position` (-1 when it had no event yet). */
  streamRevisionAt(stream: string, position: number): Promise<number>;
  readForSubscription(q: SubscriptionRead): Promise<RecordedEvent[]>;
  removeSubscription(sub: SubscriptionImpl): void;
}

function sleep(ms: number, signal: { wake?: () => void }): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.wake = undefined;
      resolve();
    }
    signal.wake = done;
  });
}

/**
 * One async loop per subscription: read a batch after `position`, hand each event to the handler (retrying the same
 * event while it throws), advance `position` (and the durable checkpoint) only after success, then wait for a wake-up
 * (an append through this store, or the backend's signal that another connection committed).
 */
export class SubscriptionImpl implements Subscription {
  readonly name?: string;
  private pos = 0;
  private revision = -1;
  private stopped = false;
  private inHandler = false;
  private dirty = true;
  private wakeFn: (() => void) | undefined;
  private readonly sleeper: { wake?: () => void } = {};
  private loop: Promise<void> = Promise.resolve();
  private waiters: { target: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly types: string[] | null;
  private readonly stream: string | undefined;
  /** A handled position whose checkpoint write failed (retried before the next read). */
  private unsaved: number | undefined;
  /** Resolves once the start position (stored checkpoint) is known. */
  private started: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: SubscriptionHost,
    private readonly options: SubscriptionOptions,
  ) {
    this.name = options.name;
    this.types = options.types ?? null;
    this.pos = options.afterPosition ?? 0;
    this.stream = options.stream !== undefined && options.stream !== "$all" ? options.stream : undefined;
  }

  get position(): number {
    return this.pos;
  }

  start(): void {
    this.started = this.init();
    this.loop = this.started.then(() => this.run());
  }

  /** Reads the stored checkpoint (and the stream revision at it), retrying while the store fails. */
  private async init(): Promise<void> {
    while (!this.stopped && !this.store.isClosed) {
      try {
        const stored = this.options.name ? await this.store.readCheckpoint(this.options.name) : null;
        const pos = stored ?? this.options.afterPosition ?? 0;
        if (this.stream !== undefined) this.revision = await this.store.streamRevisionAt(this.stream, pos);
        this.pos = pos;
        return;
      } catch {
        await sleep(this.options.retryDelayMs ?? 100, this.sleeper);
      }
    }
  }

  wake(): void {
    this.dirty = true;
    this.wakeFn?.();
  }

  async caughtUp(position?: number): Promise<void> {
    if (this.stopped) throw new SubscriptionStoppedError(this.name);
    const target = position ?? (await this.store.headPosition());
    await this.started;
    if (this.stopped) throw new SubscriptionStoppedError(this.name);
    if (this.pos >= target) return;
    return new Promise((resolve, reject) => {
      this.waiters.push({ target, resolve, reject });
      this.wake();
    });
  }

  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      this.wakeFn?.();
      this.sleeper.wake?.();
      for (const w of this.waiters) w.reject(new SubscriptionStoppedError(this.name));
      this.waiters = [];
    }
    // Called from inside the handler (e.g. "stop after this event"): awaiting the loop would deadlock; it ends as soon
    // as the handler returns.
    if (!this.inHandler) await this.loop;
    this.store.removeSubscription(this);
  }

  /**
   * Moves past a handled event (or a scanned range). The durable checkpoint is written first; if that write fails
   * (e.g. the database server restarts), the position still moves in memory, so the handled event is not delivered
   * again by this process, and the checkpoint write is retried before the next read (`flushCheckpoint`).
   */
  private async advance(position: number): Promise<void> {
    if (position <= this.pos) return;
    if (this.name) {
      try {
        await this.store.saveCheckpoint(this.name, position);
      } catch (error) {
        this.pos = position;
        this.unsaved = position;
        throw error;
      }
    }
    this.pos = position;
    this.resolveWaiters();
  }

  private async flushCheckpoint(): Promise<void> {
    if (this.unsaved === undefined || !this.name) return;
    await this.store.saveCheckpoint(this.name, this.unsaved);
    this.unsaved = undefined;
    this.resolveWaiters();
  }

  private resolveWaiters(): void {
    if (this.waiters.length === 0 || this.unsaved !== undefined) return;
    const still = [];
    for (const w of this.waiters) {
      if (this.pos >= w.target) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  private async run(): Promise<void> {
    const batchSize = this.options.batchSize ?? 256;
    const stream = this.stream;
    while (!this.stopped) {
      if (!this.dirty) {
        await new Promise<void>((resolve) => {
          this.wakeFn = resolve;
        });
        this.wakeFn = undefined;
        continue;
      }
      this.dirty = false;
      try {
        for (;;) {
          if (this.stopped || this.store.isClosed) return;
          await this.flushCheckpoint();
          const upto = await this.store.headPosition();
          const batch = await this.store.readForSubscription({
            after: this.pos,
            upto,
            limit: batchSize,
            types: this.types,
            prefix: this.options.streamPrefix ?? null,
            stream,
            revision: this.revision,
          });
          for (const event of batch) {
            const ok = await this.deliver(event);
            if (!ok) return; // stopped while retrying
            if (stream !== undefined) this.revision = event.revision;
            await this.advance(event.position);
          }
          if (batch.length < batchSize) {
            // Everything up to `upto` was scanned (the rest was filtered out): move the checkpoint over it.
            await this.advance(upto);
            break;
          }
        }
      } catch {
        if (this.stopped || this.store.isClosed) return;
        // A store-level failure (busy, I/O, server gone): wait and rescan from the last good position.
        this.dirty = true;
        await sleep(this.options.retryDelayMs ?? 100, this.sleeper);
      }
    }
  }

  /** Returns false when the subscription stopped before the event was handled. */
  private async deliver(event: RecordedEvent): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      if (this.stopped) return false;
      let failure: { error: unknown } | undefined;
      this.inHandler = true;
      try {
        await this.options.handler(event);
      } catch (error) {
        failure = { error };
      } finally {
        this.inHandler = false;
      }
      if (!failure) return true;
      let verdict: unknown = null;
      try {
        verdict = this.options.onError?.(failure.error, event, attempt);
      } catch {
        // a throwing onError must not kill the loop
      }
      if (verdict === "skip") return true;
      await sleep(this.options.retryDelayMs ?? 100, this.sleeper);
    }
  }
}

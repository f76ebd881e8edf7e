/**
 * What every backend shares: argument checks, the closed state, typed-error mapping around each call, subscriptions
 * and close hooks. A backend (src/sqlite/, src/postgres/) implements only the storage primitives below.
 */
import { InvalidArgumentError, StoreClosedError } from "../errors.js";
import type {
  AppendResult,
  EventStore,
  ExpectedRevision,
  NewEvent,
  ReadAllOptions,
  ReadStreamOptions,
  RecordedEvent,
  Snapshot,
  Subscription,
  SubscriptionOptions,
} from "../types.js";
import { type SubscriptionHost, SubscriptionImpl, type SubscriptionRead } from "./subscription.js";
import { normLimit, type PreparedEvent, prepareEvents, validateExpected, validateStream } from "./validate.js";

/** A `$all` read as the backends run it (`limit` null = no limit). */
export interface AllQuery {
  backward: boolean;
  /** Forward: exclusive lower bound. */
  after: number;
  /** Forward: inclusive upper bound. */
  upto: number;
  /** Backward: exclusive upper bound. */
  before: number;
  types: string[] | null;
  prefix: string | null;
  limit: number | null;
}

export abstract class BaseEventStore implements EventStore, SubscriptionHost {
  abstract readonly storeId: string;
  abstract readonly location: string;
  protected closed = false;
  private readonly subscriptions = new Set<SubscriptionImpl>();
  private readonly activeNames = new Set<string>();
  private readonly closeHooks = new Set<() => Promise<void> | void>();

  // ---- backend primitives (arguments already checked; errors are mapped by `run`) ----
  /** Appends in one transaction: idempotent ids, expected revision, gapless positions. */
  protected abstract appendBatch(
    stream: string,
    events: PreparedEvent[],
    expected: ExpectedRevision,
  ): Promise<AppendResult> | AppendResult;
  protected abstract selectStream(
    stream: string,
    backward: boolean,
    fromRevision: number,
    limit: number | null,
  ): Promise<RecordedEvent[]> | RecordedEvent[];
  protected abstract selectAll(q: AllQuery): Promise<RecordedEvent[]> | RecordedEvent[];
  /** Events of one stream with revision > `revision` and position <= `upto`. */
  protected abstract selectStreamAfter(q: SubscriptionRead): Promise<RecordedEvent[]> | RecordedEvent[];
  /** Highest revision of `stream` (at or before global position `upto` when given), -1 when none. */
  protected abstract selectRevision(stream: string, upto?: number): Promise<number> | number;
  protected abstract selectHead(): Promise<number> | number;
  protected abstract selectEvent(id: string): Promise<RecordedEvent | null> | RecordedEvent | null;
  protected abstract selectCheckpoint(name: string): Promise<number | null> | number | null;
  protected abstract upsertCheckpoint(name: string, position: number): Promise<void> | void;
  protected abstract upsertSnapshot(
    stream: string,
    revision: number,
    json: string,
    version: number,
  ): Promise<void> | void;
  protected abstract selectSnapshot(stream: string): Promise<Snapshot<unknown> | null> | Snapshot<unknown> | null;
  /** Maps a driver error to a typed StoreError (or returns it unchanged). */
  protected abstract mapError(error: unknown): unknown;
  /** Starts (true) or stops (false) watching for commits of other connections; calls `notify()` on each. */
  protected abstract watch(on: boolean): void;
  /** Releases the backend's connections and files. */
  protected abstract closeBackend(): Promise<void>;

  ready(): Promise<void> {
    return this.closed ? Promise.reject(new StoreClosedError(this.storeId)) : Promise.resolve();
  }

  /** Runs a primitive: refused when closed, waits for `ready()`, maps driver errors to typed ones. */
  protected async run<T>(fn: () => Promise<T> | T): Promise<T> {
    if (this.closed) throw new StoreClosedError(this.storeId);
    await this.ready();
    try {
      return await fn();
    } catch (error) {
      throw this.mapError(error);
    }
  }

  // ---- EventStore ----

  async append(stream: string, events: NewEvent[], options?: { expectedRevision?: ExpectedRevision }) {
    if (this.closed) throw new StoreClosedError(this.storeId);
    validateStream(stream);
    const expected = options?.expectedRevision ?? "any";
    validateExpected(expected);
    const prepared = prepareEvents(events);
    const result = await this.run(() => this.appendBatch(stream, prepared, expected));
    if (!result.duplicate && result.events.length > 0) this.notify();
    return result;
  }

  readStream(stream: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    return this.run(() => {
      const limit = normLimit(options.limit);
      return options.direction === "backward"
        ? this.selectStream(stream, true, options.fromRevision ?? Number.MAX_SAFE_INTEGER, limit)
        : this.selectStream(stream, false, options.fromRevision ?? 0, limit);
    });
  }

  readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    return this.run(() =>
      this.selectAll({
        backward: options.direction === "backward",
        after: options.afterPosition ?? 0,
        upto: Number.MAX_SAFE_INTEGER,
        before: options.beforePosition ?? Number.MAX_SAFE_INTEGER,
        types: options.types ?? null,
        prefix: options.streamPrefix ?? null,
        limit: normLimit(options.limit),
      }),
    );
  }

  streamRevision(stream: string): Promise<number> {
    return this.run(() => this.selectRevision(stream));
  }

  headPosition(): Promise<number> {
    return this.run(() => this.selectHead());
  }

  getEvent(id: string): Promise<RecordedEvent | null> {
    return this.run(() => this.selectEvent(id));
  }

  readCheckpoint(name: string): Promise<number | null> {
    return this.run(() => this.selectCheckpoint(name));
  }

  async saveSnapshot<S>(stream: string, revision: number, state: S, version = 0): Promise<void> {
    if (this.closed) throw new StoreClosedError(this.storeId);
    validateStream(stream);
    if (!Number.isInteger(revision) || revision < 0) throw new InvalidArgumentError("snapshot revision must be >= 0");
    const json = JSON.stringify(state);
    if (json === undefined) throw new InvalidArgumentError("snapshot state must be JSON-serialisable");
    if (!Number.isInteger(version)) throw new InvalidArgumentError("snapshot version must be an integer");
    await this.run(() => this.upsertSnapshot(stream, revision, json, version));
  }

  loadSnapshot<S>(stream: string): Promise<Snapshot<S> | null> {
    return this.run(() => this.selectSnapshot(stream)) as Promise<Snapshot<S> | null>;
  }

  // ---- used by subscriptions ----

  /** @internal */
  saveCheckpoint(name: string, position: number): Promise<void> {
    return this.run(() => this.upsertCheckpoint(name, position));
  }

  /** @internal */
  readForSubscription(q: SubscriptionRead): Promise<RecordedEvent[]> {
    return this.run(() =>
      q.stream !== undefined
        ? this.selectStreamAfter(q)
        : this.selectAll({ ...q, backward: false, before: 0, limit: q.limit }),
    );
  }

  /** @internal */
  streamRevisionAt(stream: string, position: number): Promise<number> {
    return this.run(() => this.selectRevision(stream, position));
  }

  subscribe(options: SubscriptionOptions): Subscription {
    if (this.closed) throw new StoreClosedError(this.storeId);
    if (typeof options?.handler !== "function") throw new InvalidArgumentError("subscribe: handler is required");
    if (options.name !== undefined) {
      if (typeof options.name !== "string" || options.name === "") {
        throw new InvalidArgumentError("subscription name must be a non-empty string");
      }
      if (this.activeNames.has(options.name)) {
        throw new InvalidArgumentError(`subscription "${options.name}" is already running on this store`);
      }
    }
    const sub = new SubscriptionImpl(this, options);
    if (options.name) this.activeNames.add(options.name);
    this.subscriptions.add(sub);
    if (this.subscriptions.size === 1) this.watch(true);
    sub.start();
    return sub;
  }

  /** @internal */
  removeSubscription(sub: SubscriptionImpl): void {
    if (!this.subscriptions.delete(sub)) return;
    if (sub.name) this.activeNames.delete(sub.name);
    if (this.subscriptions.size === 0) this.watch(false);
  }

  /** Wakes every subscription (an append committed through this store or another connection). */
  protected notify(): void {
    for (const sub of this.subscriptions) sub.wake();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** @internal runs before the store closes (projections stop and close their read models). */
  addCloseHook(hook: () => Promise<void> | void): void {
    this.closeHooks.add(hook);
  }

  /** @internal */
  removeCloseHook(hook: () => Promise<void> | void): void {
    this.closeHooks.delete(hook);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.allSettled([...this.closeHooks].map((h) => h()));
    this.closeHooks.clear();
    await Promise.all([...this.subscriptions].map((s) => s.stop()));
    if (this.closed) return;
    this.closed = true;
    this.watch(false);
    await this.closeBackend();
  }
}

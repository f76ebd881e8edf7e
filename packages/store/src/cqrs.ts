import {
  CommandRejected,
  ConcurrencyRetriesExhausted,
  ConsistencyTimeoutError,
  InvalidArgumentError,
  WrongExpectedRevision,
} from "./errors.js";
import { eventIdForCommand } from "./ids.js";
import { waitForProjections } from "./projection.js";
import type {
  AggregateDefinition,
  Command,
  DispatchOptions,
  DispatchResult,
  EventStore,
  NewEvent,
  RecordedEvent,
  Rejection,
} from "./types.js";

/** Builds the rejection `decide` returns for a broken business rule. */
type AnyEvent = { type: string; data: unknown };

export function reject<C extends string>(code: C, message: string, details?: unknown): Rejection<C> {
  return details === undefined ? { rejected: true, code, message } : { rejected: true, code, message, details };
}

export function isRejection(value: unknown): value is Rejection {
  return typeof value === "object" && value !== null && (value as { rejected?: unknown }).rejected === true;
}

export function streamOf(aggregate: { name: string }, aggregateId: string): string {
  return `${aggregate.name}-${aggregateId}`;
}

export interface LoadedAggregate<S> {
  stream: string;
  state: S;
  /** -1 when the stream does not exist. */
  revision: number;
  /** Global position of the last event folded, 0 when none. */
  position: number;
}

/** Folds snapshot + tail of the aggregate's stream. */
export async function loadAggregate<S>(
  store: EventStore,
  aggregate: AggregateDefinition<S, Command, AnyEvent>,
  aggregateId: string,
): Promise<LoadedAggregate<S>> {
  const stream = streamOf(aggregate, aggregateId);
  const found = aggregate.snapshotEvery ? await store.loadSnapshot<S>(stream) : null;
  // A snapshot of another state shape (before an upgrade) is ignored: fold from the start instead.
  const snapshot = found && found.version === (aggregate.snapshotVersion ?? 0) ? found : null;
  let state = snapshot ? snapshot.state : aggregate.initialState;
  let revision = snapshot ? snapshot.revision : -1;
  let position = 0;
  const page = 1000;
  for (;;) {
    const events = await store.readStream(stream, { fromRevision: revision + 1, limit: page });
    for (const e of events) {
      state = aggregate.evolve(state, e);
      revision = e.revision;
      position = e.position;
    }
    if (events.length < page) break;
  }
  if (position === 0 && revision >= 0) {
    // Loaded entirely from a snapshot: look up the position of its revision.
    position = (await store.readStream(stream, { fromRevision: revision, limit: 1 }))[0]?.position ?? 0;
  }
  return { stream, state, revision, position };
}

export interface Cqrs {
  readonly store: EventStore;
  dispatch<S, C extends Command, E extends { type: string; data: unknown }>(
    aggregate: AggregateDefinition<S, C, E>,
    aggregateId: string,
    command: C,
    options?: DispatchOptions,
  ): Promise<DispatchResult<E>>;
  load<S>(aggregate: AggregateDefinition<S, Command, AnyEvent>, aggregateId: string): Promise<LoadedAggregate<S>>;
}

/** The command bus (the original's evoq dispatcher) over one event store. */
export function createCqrs(store: EventStore): Cqrs {
  return {
    store,
    dispatch: (aggregate, aggregateId, command, options) => dispatch(store, aggregate, aggregateId, command, options),
    load: (aggregate, aggregateId) => loadAggregate(store, aggregate, aggregateId),
  };
}

/**
 * Load (snapshot + tail) -> decide -> append with the loaded revision as expected revision. On a lost race
 * (WrongExpectedRevision) reload and decide again, at most `maxRetries` times. With a command id, event ids are derived
 * from it, so a re-dispatch after a crash returns the stored result and writes nothing twice.
 */
export async function dispatch<S, C extends Command, E extends { type: string; data: unknown }>(
  store: EventStore,
  aggregate: AggregateDefinition<S, C, E>,
  aggregateId: string,
  command: C,
  options: DispatchOptions = {},
): Promise<DispatchResult<E>> {
  if (typeof aggregateId !== "string" || aggregateId === "") {
    throw new InvalidArgumentError("aggregateId must be a non-empty string");
  }
  if (!command || typeof command.type !== "string") throw new InvalidArgumentError("command.type is required");
  const stream = streamOf(aggregate, aggregateId);
  const maxRetries = options.maxRetries ?? 5;
  // Load, decide and append one command at a time per stream in this process: concurrent dispatches to one aggregate
  // queue here instead of losing optimistic-concurrency races against each other (other processes or daemons still
  // race, and the retry below handles them).
  const result = await serialized(store, stream, async (): Promise<DispatchResult<E>> => {
    for (let attempt = 0; ; attempt++) {
      if (command.id !== undefined) {
        const previous = await previousResult<E>(store, stream, command.id);
        if (previous) {
          return previous;
        }
      }
      const loaded = await loadAggregate(store, aggregate, aggregateId);
      const decided = aggregate.decide(command, loaded.state);
      if (isRejection(decided)) {
        throw new CommandRejected(
          aggregate.name,
          aggregateId,
          command.type,
          decided.code,
          decided.message,
          decided.details,
        );
      }
      if (!Array.isArray(decided))
        throw new InvalidArgumentError(`${aggregate.name}.decide must return events or reject()`);
      if (decided.length === 0) {
        return {
          stream,
          revision: loaded.revision,
          position: loaded.position,
          events: [],
          decided: [],
          duplicate: false,
          state: loaded.state,
        };
      }
      const newEvents: NewEvent[] = decided.map((e, i) => ({
        ...(command.id !== undefined ? { id: eventIdForCommand(command.id, i) } : {}),
        type: e.type,
        data: e.data,
        metadata: {
          ...(command.metadata ?? {}),
          commandType: command.type,
          ...(command.id !== undefined ? { commandId: command.id } : {}),
        },
      }));
      try {
        const appended = await store.append(stream, newEvents, {
          expectedRevision: loaded.revision === -1 ? "no_stream" : loaded.revision,
        });
        let state = loaded.state;
        for (const e of appended.events) state = aggregate.evolve(state, e);
        await maybeSnapshot(store, aggregate, stream, loaded.revision, appended.revision, state);
        return {
          stream,
          revision: appended.revision,
          position: appended.position,
          events: appended.events,
          decided,
          duplicate: appended.duplicate,
          state,
        };
      } catch (error) {
        if (!(error instanceof WrongExpectedRevision)) throw error;
        if (attempt >= maxRetries) throw new ConcurrencyRetriesExhausted(stream, attempt + 1, { cause: error });
        // Small jittered backoff so racing dispatchers spread out.
        await new Promise((r) => setTimeout(r, Math.random() * 2 * (attempt + 1)));
      }
    }
  });
  if (options.consistency === "strong") {
    const timeoutMs = options.timeoutMs ?? 5000;
    const ok = await waitForProjections(store, result.position, options.projections, timeoutMs);
    if (ok !== true) throw new ConsistencyTimeoutError(ok, result.position, timeoutMs);
  }
  return result;
}

const queues = new WeakMap<EventStore, Map<string, Promise<unknown>>>();

/** Runs `fn` after every earlier `serialized` call of the same store and stream has settled. */
function serialized<T>(store: EventStore, stream: string, fn: () => Promise<T>): Promise<T> {
  const perStore = queues.get(store) ?? new Map<string, Promise<unknown>>();
  queues.set(store, perStore);
  const run = (perStore.get(stream) ?? Promise.resolve()).then(fn);
  const tail = run.then(
    () => {},
    () => {},
  );
  perStore.set(stream, tail);
  void tail.then(() => {
    if (perStore.get(stream) === tail) perStore.delete(stream);
  });
  return run;
}

/** If command `commandId` was already applied to `stream`, its stored events as a DispatchResult. */
async function previousResult<E>(
  store: EventStore,
  stream: string,
  commandId: string,
): Promise<DispatchResult<E> | null> {
  const first = await store.getEvent(eventIdForCommand(commandId, 0));
  if (!first) return null;
  if (first.stream !== stream) {
    throw new InvalidArgumentError(`command id ${commandId} was already used for stream ${first.stream}`);
  }
  const events: RecordedEvent[] = [first];
  for (let i = 1; ; i++) {
    const e = await store.getEvent(eventIdForCommand(commandId, i));
    if (!e) break;
    events.push(e);
  }
  const last = events[events.length - 1];
  return {
    stream,
    revision: last.revision,
    position: last.position,
    events,
    decided: events.map((e) => ({ type: e.type, data: e.data }) as E),
    duplicate: true,
  };
}

async function maybeSnapshot<S>(
  store: EventStore,
  aggregate: AggregateDefinition<S, Command, AnyEvent>,
  stream: string,
  before: number,
  after: number,
  state: S,
): Promise<void> {
  const every = aggregate.snapshotEvery;
  if (!every || every <= 0) return;
  if (Math.floor((after + 1) / every) > Math.floor((before + 1) / every)) {
    try {
      await store.saveSnapshot(stream, after, state, aggregate.snapshotVersion ?? 0);
    } catch {
      // A snapshot is an optimisation: failing to save one (e.g. disk full) must not fail the command.
    }
  }
}

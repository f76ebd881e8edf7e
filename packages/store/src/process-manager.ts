import { type Cqrs, createCqrs } from "./cqrs.js";
import { CommandRejected, InvalidArgumentError } from "./errors.js";
import { deterministicUuid } from "./ids.js";
import type {
  AggregateDefinition,
  Command,
  DispatchOptions,
  DispatchResult,
  EventStore,
  RecordedEvent,
  Subscription,
} from "./types.js";

export interface ProcessManagerContext {
  readonly event: RecordedEvent;
  readonly store: EventStore;
  readonly cqrs: Cqrs;
  /**
   * Dispatches with a command id derived from (manager name, triggering event id, call index) unless the command has
   * one, so a redelivered event (after a crash) re-dispatches the same ids and nothing is written twice.
   */
  dispatch<S, C extends Command, E extends { type: string; data: unknown }>(
    aggregate: AggregateDefinition<S, C, E>,
    aggregateId: string,
    command: C,
    options?: DispatchOptions,
  ): Promise<DispatchResult<E>>;
}

export interface ProcessManagerOptions {
  /** Durable: the checkpoint `pm:{name}` is kept in the store. */
  name: string;
  /**
   * Scope of the derived command ids (default `name`). Several managers with their own checkpoints (one per cluster
   * node) that share a scope derive the same ids for the same triggering event, so only the first one's commands are
   * written.
   */
  idScope?: string;
  types?: string[];
  streamPrefix?: string;
  handle(event: RecordedEvent, ctx: ProcessManagerContext): void | Promise<void>;
  retryDelayMs?: number;
  /**
   * Default: a CommandRejected is skipped (a business outcome, retrying cannot help); anything else is retried.
   * Return "skip" to skip the event.
   */
  onError?: (error: unknown, event: RecordedEvent, attempt: number) => void | "skip";
}

export type ProcessManager = Subscription;

/** Runs `handle` for every matching event, at least once, resuming from its durable checkpoint after a restart. */
export function startProcessManager(store: EventStore, options: ProcessManagerOptions): ProcessManager {
  if (typeof options.name !== "string" || options.name === "") throw new InvalidArgumentError("name is required");
  if (typeof options.handle !== "function") throw new InvalidArgumentError("handle() is required");
  const cqrs = createCqrs(store);
  const idScope = options.idScope ?? options.name;
  const onError =
    options.onError ?? ((error: unknown) => (error instanceof CommandRejected ? ("skip" as const) : undefined));
  return store.subscribe({
    name: `pm:${options.name}`,
    types: options.types,
    streamPrefix: options.streamPrefix,
    retryDelayMs: options.retryDelayMs,
    onError,
    handler: async (event) => {
      let n = 0;
      const ctx: ProcessManagerContext = {
        event,
        store,
        cqrs,
        dispatch: (aggregate, aggregateId, command, dispatchOptions) => {
          const index = n++;
          const id = command.id ?? deterministicUuid(`pm:${idScope}:${event.id}:${index}`);
          const correlationId = (event.metadata.correlationId as string | undefined) ?? event.id;
          return cqrs.dispatch(
            aggregate,
            aggregateId,
            { ...command, id, metadata: { ...(command.metadata ?? {}), causationId: event.id, correlationId } },
            dispatchOptions,
          );
        },
      };
      await options.handle(event, ctx);
    },
  });
}

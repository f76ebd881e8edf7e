/** Typed errors of the event store and the CQRS layer. Every error carries a stable `code`. */

export class StoreError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The stream's current revision does not match the `expectedRevision` of an append. */
export class WrongExpectedRevision extends StoreError {
  constructor(
    readonly stream: string,
    readonly expected: "any" | "no_stream" | "stream_exists" | number,
    /** Current revision, -1 when the stream does not exist. */
    readonly actual: number,
  ) {
    super(
      "WRONG_EXPECTED_REVISION",
      `append to stream "${stream}": expected revision ${JSON.stringify(expected)}, actual ${actual === -1 ? "no stream (-1)" : actual}`,
    );
  }
}

/** A batch mixes event ids that are already stored with new ones (or reuses an id stored in another stream). */
export class DuplicateEventIdError extends StoreError {
  constructor(
    readonly stream: string,
    readonly existingIds: string[],
    detail: string,
  ) {
    super("DUPLICATE_EVENT_ID", `append to stream "${stream}": ${detail} (stored ids: ${existingIds.join(", ")})`);
  }
}

/** The file is not an SQLite database, or SQLite reports corruption. Nothing is written. */
export class StoreCorruptError extends StoreError {
  constructor(
    readonly file: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super("STORE_CORRUPT", `event store file ${file} is corrupt or not an SQLite database: ${detail}`, options);
  }
}

/** Disk full (ENOSPC) or the store's size quota was reached: the append was rolled back, the store stays usable. */
export class StoreDiskFullError extends StoreError {
  constructor(
    readonly file: string,
    options?: { cause?: unknown },
  ) {
    super(
      "STORE_DISK_FULL",
      `event store ${file} is full (disk full or size quota reached): the write was rolled back, nothing was written`,
      options,
    );
  }
}

/** Another writer held the write lock longer than the busy timeout. */
export class StoreBusyError extends StoreError {
  constructor(
    readonly file: string,
    options?: { cause?: unknown },
  ) {
    super("STORE_BUSY", `event store ${file} is locked by another writer (busy timeout exceeded)`, options);
  }
}

/** The database server (PostgreSQL) cannot be reached or dropped the connection; retry later (nothing half-written). */
export class StoreUnavailableError extends StoreError {
  constructor(
    /** The server URL without its password, and the store id. */
    readonly location: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super("STORE_UNAVAILABLE", `event store ${location} is unavailable: ${detail}`, options);
  }
}

export class StoreClosedError extends StoreError {
  constructor(readonly storeId: string) {
    super("STORE_CLOSED", `event store "${storeId}" is closed`);
  }
}

export class InvalidArgumentError extends StoreError {
  constructor(message: string) {
    super("INVALID_ARGUMENT", message);
  }
}

/** `dispatch` of a command that the aggregate's `decide` rejected (a business rule, not a fault). */
export class CommandRejected extends StoreError {
  constructor(
    readonly aggregate: string,
    readonly aggregateId: string,
    readonly commandType: string,
    /** The rejection code returned by `decide`, e.g. "plugin_already_installed". */
    readonly rejectionCode: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(rejectionCode, `${commandType} on ${aggregate}-${aggregateId} rejected: ${message}`);
  }
}

/** `dispatch` kept losing the optimistic-concurrency race more than `maxRetries` times. */
export class ConcurrencyRetriesExhausted extends StoreError {
  constructor(
    readonly stream: string,
    readonly attempts: number,
    options?: { cause?: unknown },
  ) {
    super("CONCURRENCY_RETRIES_EXHAUSTED", `dispatch to "${stream}" lost ${attempts} concurrent-write races`, options);
  }
}

/** `consistency: "strong"` dispatch: a projection did not reach the appended position in time. */
export class ConsistencyTimeoutError extends StoreError {
  constructor(
    readonly projections: string[],
    readonly position: number,
    timeoutMs: number,
  ) {
    super(
      "CONSISTENCY_TIMEOUT",
      `projections ${projections.join(", ")} did not reach position ${position} within ${timeoutMs} ms (the events ARE stored)`,
    );
  }
}

export class SubscriptionStoppedError extends StoreError {
  constructor(name: string | undefined) {
    super("SUBSCRIPTION_STOPPED", `subscription ${name ?? "(volatile)"} was stopped`);
  }
}

/** Argument checks and append rules shared by every backend (so both give the same typed errors). */
import { DuplicateEventIdError, InvalidArgumentError, WrongExpectedRevision } from "../errors.js";
import { newId } from "../ids.js";
import type { AppendResult, ExpectedRevision, NewEvent, RecordedEvent } from "../types.js";

const MAX_ID_LENGTH = 200;
export const STORE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** An event checked and serialised before the write transaction starts. */
export interface PreparedEvent {
  id: string;
  type: string;
  /** JSON text */
  data: string;
  /** JSON text */
  metadata: string;
}

export function validateStoreId(storeId: unknown): asserts storeId is string {
  if (typeof storeId !== "string" || !STORE_ID.test(storeId)) {
    throw new InvalidArgumentError(`invalid storeId ${JSON.stringify(storeId)}: use [A-Za-z0-9._-], max 128 chars`);
  }
}

export function validateStream(stream: unknown): asserts stream is string {
  if (typeof stream !== "string" || stream === "" || stream.length > 500) {
    throw new InvalidArgumentError(`stream must be a non-empty string (max 500 chars), got ${JSON.stringify(stream)}`);
  }
  if (stream.startsWith("$")) throw new InvalidArgumentError(`stream names starting with "$" are reserved: ${stream}`);
}

export function validateExpected(expected: unknown): asserts expected is ExpectedRevision {
  if (expected === "any" || expected === "no_stream" || expected === "stream_exists") return;
  if (typeof expected === "number" && Number.isInteger(expected) && expected >= -1) return;
  throw new InvalidArgumentError(
    `expectedRevision must be "any", "no_stream", "stream_exists" or an integer >= -1, got ${JSON.stringify(expected)}`,
  );
}

/** `null` = no limit. */
export function normLimit(limit: number | undefined): number | null {
  if (limit === undefined) return null;
  if (!Number.isInteger(limit) || limit < 0) throw new InvalidArgumentError(`limit must be an integer >= 0`);
  return limit;
}

/** Checks a batch (types, ids, metadata) and serialises it; generates missing ids. */
export function prepareEvents(events: unknown): PreparedEvent[] {
  if (!Array.isArray(events)) throw new InvalidArgumentError("events must be an array");
  const seen = new Set<string>();
  return events.map((e: NewEvent, i) => {
    if (!e || typeof e !== "object") throw new InvalidArgumentError(`event #${i} must be an object`);
    if (typeof e.type !== "string" || e.type === "" || e.type.length > 200) {
      throw new InvalidArgumentError(`event #${i}: type must be a non-empty string (max 200 chars)`);
    }
    const id = e.id ?? newId();
    if (typeof id !== "string" || id === "" || id.length > MAX_ID_LENGTH) {
      throw new InvalidArgumentError(`event #${i}: id must be a non-empty string (max ${MAX_ID_LENGTH} chars)`);
    }
    if (seen.has(id)) throw new InvalidArgumentError(`event #${i}: id ${id} appears twice in the batch`);
    seen.add(id);
    if (e.metadata !== undefined && (typeof e.metadata !== "object" || e.metadata === null)) {
      throw new InvalidArgumentError(`event #${i}: metadata must be an object`);
    }
    try {
      return { id, type: e.type, data: JSON.stringify(e.data ?? null), metadata: JSON.stringify(e.metadata ?? {}) };
    } catch (error) {
      throw new InvalidArgumentError(`event #${i} (${e.type}) is not JSON-serialisable: ${(error as Error).message}`);
    }
  });
}

/**
 * Inside the write transaction, given the already-stored events with the batch's ids: the original result for an
 * exact replay, a DuplicateEventIdError for a partial one or an id of another stream, null when all ids are new.
 */
export function duplicateResult(stream: string, batch: number, existing: RecordedEvent[]): AppendResult | null {
  if (existing.length === 0) return null;
  const ids = existing.map((e) => e.id);
  if (existing.some((e) => e.stream !== stream)) {
    throw new DuplicateEventIdError(stream, ids, "event id(s) already stored in another stream");
  }
  if (existing.length !== batch) {
    throw new DuplicateEventIdError(
      stream,
      ids,
      `batch mixes ${existing.length} already-stored event id(s) with ${batch - existing.length} new one(s); nothing was written — retry with exactly the original batch or only new ids`,
    );
  }
  const last = existing[existing.length - 1];
  return { stream, revision: last.revision, position: last.position, events: existing, duplicate: true };
}

/** Throws WrongExpectedRevision when `current` (-1: no stream) does not satisfy `expected`. */
export function checkExpected(stream: string, expected: ExpectedRevision, current: number): void {
  if (
    (expected === "no_stream" && current !== -1) ||
    (expected === "stream_exists" && current === -1) ||
    (typeof expected === "number" && expected !== current)
  ) {
    throw new WrongExpectedRevision(stream, expected, current);
  }
}

/** The RecordedEvents of a batch written at `head + 1…` with revisions `current + 1…`. */
export function recordedBatch(
  stream: string,
  events: PreparedEvent[],
  head: number,
  current: number,
  createdAt: string,
): AppendResult {
  const recorded: RecordedEvent[] = events.map((e, i) => ({
    id: e.id,
    stream,
    revision: current + 1 + i,
    position: head + 1 + i,
    type: e.type,
    data: JSON.parse(e.data),
    metadata: JSON.parse(e.metadata),
    createdAt,
  }));
  const last = recorded[recorded.length - 1];
  return { stream, revision: last.revision, position: last.position, events: recorded, duplicate: false };
}

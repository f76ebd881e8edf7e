export * from "./errors.js";
export { openEventStore, SqliteEventStore } from "./event-store.js";
export { deterministicUuid, eventIdForCommand, HECATE_NAMESPACE } from "./ids.js";
export * from "./types.js";

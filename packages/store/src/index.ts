export * from "./cqrs.js";
export * from "./errors.js";
export { openEventStore, PostgresEventStore, removeEventStore, SqliteEventStore } from "./event-store.js";
export { deterministicUuid, eventIdForCommand, HECATE_NAMESPACE } from "./ids.js";
export { isPostgresUnreachable } from "./postgres/unreachable.js";
export * from "./process-manager.js";
export * from "./projection.js";
export { removePostgresStores } from "./remove-postgres.js";
export * from "./types.js";

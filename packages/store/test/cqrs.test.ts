// The CQRS and projection conformance suites on SQLite (store-postgres.test.ts runs them on PostgreSQL).
import { sqliteBackend } from "./backends.js";
import { cqrsConformance } from "./conformance/cqrs.js";
import { projectionVersionConformance } from "./conformance/projection-version.js";

cqrsConformance(sqliteBackend);
projectionVersionConformance(sqliteBackend);

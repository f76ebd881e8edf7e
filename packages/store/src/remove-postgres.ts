/**
 * Deleting PostgreSQL stores (the counterpart of `removeEventStore` for SQLite files), e.g. for remove_plugin with
 * purge in cluster mode. Stores of a database share tables keyed by store id (postgres/schema.ts), so removing one is
 * deleting its rows. Kept beside the backend, not in it: only the daemon's purge calls it.
 */
import { validateStoreId } from "./core/validate.js";
import { acquireConnection } from "./postgres/connection.js";

/**
 * Deletes the store `storeId` and every store whose id starts with `{storeId}.` (its events, checkpoints, snapshots
 * and counter row) in one transaction; returns the ids removed. The counter rows go first: that waits for appends in
 * flight, and later appends through a store still open fail with STORE_MISSING (opening it again starts it empty).
 */
export async function removePostgresStores(url: string, storeId: string): Promise<string[]> {
  validateStoreId(storeId);
  const conn = acquireConnection(url, {});
  try {
    await conn.ready();
    const client = await conn.pool.connect();
    try {
      await client.query("BEGIN");
      const match = "(store_id = $1 OR starts_with(store_id, $1 || '.'))";
      const removed = await client.query<{ store_id: string }>(
        `DELETE FROM hecate_stores WHERE ${match} RETURNING store_id`,
        [storeId],
      );
      for (const table of ["hecate_events", "hecate_checkpoints", "hecate_snapshots"])
        await client.query(`DELETE FROM ${table} WHERE ${match}`, [storeId]);
      await client.query("COMMIT");
      return removed.rows.map((r) => r.store_id).sort();
    } catch (error) {
      await client.query("ROLLBACK").catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  } finally {
    await conn.release();
  }
}

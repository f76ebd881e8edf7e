/**
 * "The PostgreSQL server is not there (now)": the errors worth a retry rather than a failure. One list for the store
 * (StoreUnavailableError) and for the daemon's own tables in the same database (cluster/cluster-node.ts).
 */

/** Node socket errors of a server that is down or unreachable. */
const UNAVAILABLE_NODE = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EHOSTUNREACH", "ETIMEDOUT", "EPIPE"]);
/**
 * SQLSTATEs of a server that is shutting down or starting (57P*), has no room for us (53300), or does not (yet) have
 * our database or role (3D000, 28P01, 28000); class 08 (connection exceptions) is checked by prefix.
 */
const UNAVAILABLE_SQLSTATE = new Set(["53300", "3D000", "28P01", "28000"]);
/** node-postgres's own messages for a connection lost or never made. */
const UNAVAILABLE_MESSAGE =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i;

export function isPostgresUnreachable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (
    typeof code === "string" &&
    (UNAVAILABLE_NODE.has(code) || UNAVAILABLE_SQLSTATE.has(code) || code.startsWith("08") || code.startsWith("57P"))
  )
    return true;
  return UNAVAILABLE_MESSAGE.test((error as Error | null)?.message ?? "");
}

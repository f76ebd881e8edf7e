/**
 * Boot with the lifecycle store in PostgreSQL that is not reachable (yet): the daemon's listeners are up and its admin
 * API says why it is not ready (`store_unavailable`, 503, with the reason and the next attempt; the URL without its
 * password), and the store is tried again with an exponential backoff until it answers; then boot goes on (the node
 * joins and catches up from the shared streams) without a restart. An error that no retry can mend (e.g. a schema
 * newer than this version) still fails the start.
 *
 * A hand-written loop (a dozen lines) rather than a retry library: it must publish its state (attempt, reason, next
 * try) while it waits and stop at once when the daemon closes, which p-retry & co. do not expose.
 */
import { StoreUnavailableError } from "@hecate/store";
import type { Logger } from "pino";
import { ApiError } from "../admin/http.js";

const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 5000;

export interface StoreWaitState {
  /** The store, as errors name it (no password). */
  store: string;
  reason: string;
  attempts: number;
  since: string;
  /** When the next attempt starts. */
  retryAt: string;
}

export class StoreWait {
  private state: StoreWaitState | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;

  /** What the admin API answers while the store is unreachable at boot (undefined once it answered). */
  unavailable(): StoreWaitState | undefined {
    return this.state;
  }

  /**
   * Runs `attempt` until it resolves; a StoreUnavailableError (or an error `retryable` accepts) is logged and retried
   * after 250 ms, 500 ms, ... up to 5 s between attempts. Rejects with the error of a final failure, or when `stop()`
   * was called meanwhile.
   */
  async run(
    attempt: () => Promise<void>,
    logger: Logger,
    retryable: (err: unknown) => string | undefined = () => undefined,
  ): Promise<void> {
    let delay = FIRST_DELAY_MS;
    const since = new Date().toISOString();
    for (let attempts = 1; ; attempts++) {
      if (this.stopped) throw new Error("daemon closed while waiting for its store");
      try {
        await attempt();
        if (this.state) logger.info({ attempts }, "lifecycle store reachable: boot goes on");
        this.state = undefined;
        return;
      } catch (err) {
        const location = err instanceof StoreUnavailableError ? err.location : retryable(err);
        if (location === undefined) throw err;
        const reason = (err as Error).message;
        this.state = {
          store: location,
          reason,
          attempts,
          since,
          retryAt: new Date(Date.now() + delay).toISOString(),
        };
        logger.error({ store: location, reason, attempts, retryInMs: delay }, "lifecycle store unreachable; retrying");
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
  }

  /** Ends the wait (daemon shutdown): `run` rejects. */
  stop(): void {
    this.stopped = true;
    this.wake?.();
  }
}

/** The admin API's answer while the store is unreachable at boot: 503 `store_unavailable`, details = the wait state. */
export function storeUnavailableError(state: StoreWaitState | undefined): ApiError | undefined {
  if (!state) return undefined;
  return new ApiError(
    503,
    "store_unavailable",
    `the daemon is waiting for its lifecycle store, unreachable since ${state.since}: ${state.reason}; attempt ${state.attempts}, next at ${state.retryAt} (boot goes on by itself once PostgreSQL answers)`,
    state,
  );
}

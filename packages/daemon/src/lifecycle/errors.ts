/** A lifecycle operation that cannot be done (typed: the admin API maps `code` to an HTTP status). */
export class LifecycleError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = "LifecycleError";
  }
}

/**
 * Exit codes of the `hecate` binary (documented in packages/cli/README.md and `hecate --help`).
 */
export const EXIT = {
  OK: 0,
  /** Unexpected failure (a bug, an I/O error, an API error without a more specific class). */
  FAILURE: 1,
  /** Bad command line: unknown command/option, missing argument, invalid value. */
  USAGE: 2,
  /** The daemon cannot be reached (not running, wrong --url / HECATE_HOME). */
  DAEMON_UNREACHABLE: 3,
  /** The daemon refused the credentials or the Host/Origin (401/403). */
  UNAUTHORIZED: 4,
  /** No such plugin (404). */
  NOT_FOUND: 5,
  /** The plugin's state does not allow the action, e.g. already installed / already activated (409). */
  CONFLICT: 6,
  /** The package was refused: invalid archive or manifest, digest or signature failure, failed to load (4xx/422). */
  PACKAGE_REJECTED: 7,
} as const;

export const EXIT_CODES_HELP = `
Exit codes:
  0  success
  1  unexpected failure
  2  usage error (unknown command/option, missing or invalid argument)
  3  daemon unreachable (not running, wrong --url or HECATE_HOME)
  4  unauthorized (bad token, forbidden Host/Origin)
  5  plugin not found
  6  conflict with the plugin's state (already installed/activated, not activated)
  7  package rejected (bad archive/manifest, digest or signature failure, plugin failed to load)

With --json, the result (or {"error":{code,message,details}}) is printed as JSON on stdout.`;

/** An error with a stable code and the exit code it maps to. */
export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode: number = EXIT.FAILURE,
    readonly details?: unknown,
    readonly status?: number,
  ) {
    super(message);
    this.name = "CliError";
  }
}

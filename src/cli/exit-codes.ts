/**
 * Exit codes of the `tenure` CLI. Usage and runtime errors are distinct; the
 * numbers follow BSD sysexits where one fits. A command's own exit code is
 * passed through (`run --once`, `run --restart never`).
 */
export const EXIT = Object.freeze({
  /** Success. */
  OK: 0,
  /** Usage or configuration error: unknown flag, bad duration, missing NAME, bad store URL (EX_USAGE). */
  USAGE: 64,
  /** The store answered, but holds a record that is not a valid lease (EX_DATAERR); `status` still lists the good ones. */
  DATAERR: 65,
  /** The store could not be reached or refused the connection at start-up (EX_UNAVAILABLE). */
  UNAVAILABLE: 69,
  /** A bug in Tenure: an unexpected internal error (EX_SOFTWARE). */
  INTERNAL: 70,
  /** `run --no-wait`: another process leads, so nothing was run (EX_TEMPFAIL). */
  NOT_LEADER: 75,
  /**
   * `run --max-terms N`: the command kept failing for N terms in a row (each
   * time the leader resigned after --max-restarts), so tenure gave up (EX_PROTOCOL's number, 76).
   */
  GAVE_UP: 76,
  /** `run`: the command exists but cannot be executed (permission denied), as in shells. */
  CANNOT_EXECUTE: 126,
  /** `run`: the command was not found, as in shells. */
  NOT_FOUND: 127,
  /** `run`: the command ignored SIGTERM during shutdown and was killed after --grace (128 + SIGKILL). */
  KILLED: 137,
});

/** A command-line mistake: printed as one line, exit code {@link EXIT.USAGE}. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A failure with a chosen exit code, printed as one line. */
export class CliExit extends Error {
  override name = "CliExit";
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

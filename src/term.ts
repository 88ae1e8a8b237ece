/**
 * A term: the one type the elector (src/elector) and leader work
 * (src/leader) share. It lives in this leaf module, which imports nothing
 * but errors, so the layering stays one-way: elector → leader → term.
 */

/** One continuous tenure of one holder. */
export interface Term {
  readonly name: string;
  readonly holder: string;
  /** Fencing token: strictly increases with every new term of this lease. */
  readonly token: bigint;
  /** Aborted the moment the term ends; `signal.reason` is a `TermEndedError` saying why. */
  readonly signal: AbortSignal;
}

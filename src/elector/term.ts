import type { TermEndedError } from "../errors.js";
import type { Term } from "../term.js";

/**
 * A term of an elector. Its `AbortSignal` is made on first use: a signal
 * costs close to 1 KiB of heap (a Node EventTarget with its own maps), and
 * most terms of a process that holds very many leases never use theirs. A
 * signal first read after the term ended is already aborted, with the same
 * reason. `name`, `holder` and `token` are own fields; `signal` is a getter
 * (so `{ ...term }` has no `signal`). Frozen.
 */
export class ElectedTerm implements Term {
  #controller: AbortController | null = null;
  #ended: TermEndedError | null = null;

  constructor(
    readonly name: string,
    readonly holder: string,
    readonly token: bigint,
  ) {
    Object.freeze(this);
  }

  /** Aborted the moment the term ends; `signal.reason` is a `TermEndedError` saying why. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#ended) this.#controller.abort(this.#ended);
    }
    return this.#controller.signal;
  }

  /** Ends `term`: its signal (if made) aborts now, synchronously, with `reason`. Idempotent. */
  static end(term: ElectedTerm, reason: TermEndedError): void {
    if (term.#ended) return;
    term.#ended = reason;
    term.#controller?.abort(reason);
  }
}

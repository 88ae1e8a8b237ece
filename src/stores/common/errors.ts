/**
 * The two errors every store raises the same way: a call on a closed store,
 * and data in the store that Tenure did not write. One constructor each, the
 * backend named in the message.
 */
import { StoreError } from "../../errors.js";

/** A call on a store this process closed: fatal, kind `closed`. */
export function closedError(backend: string, op: string): StoreError {
  return new StoreError(`tenure ${backend}: ${op} failed: store is closed`, {
    transient: false,
    kind: "closed",
  });
}

/**
 * The store holds something that is not a lease Tenure wrote (a hand-edited
 * row, a foreign key, an unexpected reply): fatal, kind `schema`. `what` says
 * which record and what is wrong with it.
 */
export function schemaError(
  backend: string,
  op: string,
  what: string,
  opts: { code?: string; cause?: unknown } = {},
): StoreError {
  return new StoreError(`tenure ${backend}: ${op} failed: unexpected data in the store: ${what}`, {
    transient: false,
    kind: "schema",
    ...opts,
  });
}

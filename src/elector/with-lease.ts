import type { ElectorStore } from "../store/types.js";
import { createElector } from "./elector.js";
import type { ElectorOptions } from "./options.js";
import type { Term } from "./types.js";

/** Options of {@link withLease}: the elector's (ttlMs, holderId, logger …) plus `signal`. */
export interface WithLeaseOptions extends Omit<ElectorOptions, "store" | "name"> {
  /** Gives up waiting for the lease (rejects with its reason), or ends the term early. */
  signal?: AbortSignal;
}

/**
 * Lock-style leadership: waits until this process holds the lease `name`,
 * runs `fn(term)` while it holds it (renewing it in the background), and
 * releases it when `fn` settles, whatever the outcome. If the lease is lost
 * meanwhile (taken, expired, a store outage past the trust window),
 * `term.signal` aborts with the reason, so `fn` should watch it and stop; its
 * writes should carry `term.token` (fencing). Aborting `signal` while waiting
 * rejects with `signal.reason`; while `fn` runs it ends the term
 * (`term.signal` aborts with reason `stopped`). Resolves with `fn`'s result.
 *
 * ```ts
 * await withLease(store, "nightly-report", async (term) => {
 *   await report({ token: term.token, signal: term.signal });
 * }, { ttlMs: 15_000 });
 * ```
 */
export async function withLease<T>(
  store: ElectorStore,
  name: string,
  fn: (term: Term) => T | Promise<T>,
  opts: WithLeaseOptions = {},
): Promise<T> {
  const { signal, ...rest } = opts;
  if (signal?.aborted) throw signal.reason;
  const elector = createElector({ ...rest, store, name });
  const stop = () => void elector.stop();
  try {
    await elector.start();
    const term = await elector.waitForLeadership(signal ? { signal } : {});
    // Once this term ends (lost, expired, or `signal`), campaign no more.
    term.signal.addEventListener("abort", stop, { once: true });
    signal?.addEventListener("abort", stop, { once: true });
    try {
      return await fn(term);
    } finally {
      term.signal.removeEventListener("abort", stop);
      signal?.removeEventListener("abort", stop);
    }
  } finally {
    await elector.stop(); // releases the lease if still held: the next holder need not wait for expiry
  }
}

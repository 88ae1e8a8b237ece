import { StoreError } from "../errors.js";
import type { Disposable } from "../events.js";
import type { Term } from "./types.js";

/** What {@link waitForLeadership} needs from an elector. */
export interface LeadershipSource {
  term(): Term | null;
  on(event: "elected", fn: (term: Term) => unknown): Disposable;
}

/**
 * Resolves with the term once `source` leads (at once if it leads now).
 * Rejects with `signal.reason` when `signal` aborts first, and with a
 * `closed` StoreError when `stopped` aborts (the elector was stopped).
 */
export function waitForLeadership(
  source: LeadershipSource,
  stopped: AbortSignal,
  opts: { signal?: AbortSignal } = {},
): Promise<Term> {
  const { signal } = opts;
  const now = source.term();
  if (now) return Promise.resolve(now);
  const stoppedError = () =>
    new StoreError("tenure elector: stopped before it led", { transient: false, kind: "closed" });
  if (signal?.aborted) return Promise.reject(signal.reason);
  if (stopped.aborted) return Promise.reject(stoppedError());
  return new Promise<Term>((resolve, reject) => {
    const cleanup = () => {
      off();
      signal?.removeEventListener("abort", onAbort);
      stopped.removeEventListener("abort", onStop);
    };
    const off = source.on("elected", (term) => {
      cleanup();
      resolve(term);
    });
    const onAbort = () => {
      cleanup();
      reject(signal!.reason);
    };
    const onStop = () => {
      cleanup();
      reject(stoppedError());
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    stopped.addEventListener("abort", onStop, { once: true });
  });
}

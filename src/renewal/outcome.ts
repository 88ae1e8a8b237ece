import type { LeaseInfo } from "../store/types.js";

/**
 * What one renewal request came to, as the shared renewer hands it to its
 * client. `sentAt` is the monotonic time at which the batch carrying the
 * request was sent: the trust window of a renewed lease starts there.
 *
 * - `renewed`: the store extended the lease.
 * - `lost`: the store answered that the term no longer holds the lease.
 * - `failed`: this request's store call failed (for a batch, the whole round
 *   trip failed); `error` is what the store threw.
 * - `timeout`: the request was still in flight at the lease's deadline.
 * - `expired`: the deadline came before the request could be sent.
 * - `left`: the client left the renewer (its term ended) first.
 */
export type RenewOutcome =
  | { readonly kind: "renewed"; readonly sentAt: number }
  | { readonly kind: "lost"; readonly sentAt: number; readonly current: LeaseInfo | null }
  | { readonly kind: "failed"; readonly sentAt: number; readonly error: unknown }
  | { readonly kind: "timeout"; readonly sentAt: number }
  | { readonly kind: "expired" }
  | { readonly kind: "left" };

export const EXPIRED: RenewOutcome = Object.freeze({ kind: "expired" });
export const LEFT: RenewOutcome = Object.freeze({ kind: "left" });

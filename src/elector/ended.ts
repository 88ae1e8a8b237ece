/**
 * Terms ended in this process that the store may still hold.
 *
 * A store answers an acquire by a lease's live holder with that holder's term
 * (same token, extended). So a term this process ended without releasing it
 * (a missed renewal, a failed release) comes back to the next acquire under
 * the same name and holder while the store still holds it, and leading it
 * would hand the ended term's work a valid token. The memory is per store
 * object and shared by every elector on it: a group that hands a partition
 * over, fails to release it and is given it back makes a new elector for it,
 * which must still know the term was ended here.
 *
 * One entry per (lease name, holder) at most, dropped once the store no
 * longer holds that term for us (released, or answered with another term).
 */
import type { LeaseRef } from "../store/types.js";

const byStore = new WeakMap<object, Map<string, bigint>>();

const keyOf = (lease: LeaseRef): string => `${lease.holder}\u0000${lease.name}`;

/** Records that this process ended `lease`'s term. */
export function markEnded(store: object, lease: LeaseRef): void {
  let m = byStore.get(store);
  if (!m) {
    m = new Map();
    byStore.set(store, m);
  }
  m.set(keyOf(lease), lease.token);
}

/** Whether `lease` is a term this process ended (same name, holder and token). */
export function wasEnded(store: object, lease: LeaseRef): boolean {
  return byStore.get(store)?.get(keyOf(lease)) === lease.token;
}

/** `lease`'s term was released: forgets it if it is the term remembered for its name and holder. */
export function forgetReleased(store: object, lease: LeaseRef): void {
  const m = byStore.get(store);
  const k = keyOf(lease);
  if (m?.get(k) === lease.token) m.delete(k);
}

/**
 * The store answered this name and holder with `lease`, so it no longer holds
 * an ended term of theirs that is another one: that term is forgotten (an
 * ended term that is `lease` itself stays remembered).
 */
export function forgetOtherThan(store: object, lease: LeaseRef): void {
  const m = byStore.get(store);
  const k = keyOf(lease);
  const token = m?.get(k);
  if (token !== undefined && token !== lease.token) m!.delete(k);
}

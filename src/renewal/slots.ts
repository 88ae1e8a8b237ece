/**
 * Due renewals kept in time slots: one slot per due time, earliest first.
 * Entries whose due times differ a little still leave together: an entry may
 * be taken early, from `early` on, when another slot's time comes (renewing
 * early is always safe; late never happens). Entries that left together are
 * due together afterwards, so a process's leases settle into few slots.
 */

/** What the slots need of an entry. `slot` is owned by {@link Slots}. */
export interface SlotEntry {
  /** When the entry is due (the timer wakes for the earliest). */
  at: number;
  /** The earliest time it may be taken with an earlier slot (≤ at). */
  early: number;
  /** The key of the slot holding it; NaN when not in a slot. */
  slot: number;
}

export class Slots<E extends SlotEntry> {
  private readonly byKey = new Map<number, Set<E>>();
  /** Min-heap of slot keys; a key whose slot was emptied stays until popped. */
  private readonly heap: number[] = [];
  private count = 0;
  /** The largest `at − early` of the entries held (reset when empty). */
  private slack = 0;

  /** Number of entries held. */
  get size(): number {
    return this.count;
  }

  add(e: E): void {
    const key = e.at;
    let set = this.byKey.get(key);
    if (!set) {
      set = new Set();
      this.byKey.set(key, set);
      this.push(key);
    }
    set.add(e);
    e.slot = key;
    this.count += 1;
    if (e.at - e.early > this.slack) this.slack = e.at - e.early;
  }

  /** Removes `e` if it is held. */
  remove(e: E): void {
    const key = e.slot;
    if (Number.isNaN(key)) return;
    e.slot = Number.NaN;
    const set = this.byKey.get(key);
    if (!set?.delete(e)) return;
    this.count -= 1;
    if (set.size === 0) this.byKey.delete(key);
    if (this.count === 0) this.clear();
  }

  /** Due time of the earliest slot, or null when empty. */
  earliest(): number | null {
    while (this.heap.length > 0) {
      const top = this.heap[0] as number;
      if (this.byKey.has(top)) return top;
      this.pop();
    }
    return null;
  }

  /**
   * Takes every entry due by `now`, and every entry of a later slot that may
   * go early (`early ≤ now`), in due order.
   */
  take(now: number): E[] {
    const out: E[] = [];
    const kept: number[] = [];
    const limit = now + this.slack;
    while (this.heap.length > 0 && (this.heap[0] as number) <= limit) {
      const key = this.pop();
      const set = this.byKey.get(key);
      if (!set) continue; // emptied, or a duplicate key already handled
      this.byKey.delete(key);
      let rest: Set<E> | null = null;
      for (const e of set) {
        if (e.at <= now || e.early <= now) {
          e.slot = Number.NaN;
          out.push(e);
        } else {
          rest ??= new Set();
          rest.add(e);
        }
      }
      if (rest) {
        this.byKey.set(key, rest);
        kept.push(key);
      }
    }
    for (const key of kept) this.push(key);
    this.count -= out.length;
    if (this.count === 0) this.clear();
    return out;
  }

  private clear(): void {
    this.byKey.clear();
    this.heap.length = 0;
    this.slack = 0;
  }

  private push(key: number): void {
    const h = this.heap;
    let i = h.length;
    h.push(key);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((h[parent] as number) <= key) break;
      h[i] = h[parent] as number;
      i = parent;
    }
    h[i] = key;
  }

  private pop(): number {
    const h = this.heap;
    const top = h[0] as number;
    const last = h.pop() as number;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const c = r < h.length && (h[r] as number) < (h[l] as number) ? r : l;
        if ((h[c] as number) >= last) break;
        h[i] = h[c] as number;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

/**
 * The set of `watch` callbacks a store keeps per key (a lease name, or the
 * channel it is published on), and the one way they are called: in order of
 * subscription, each alone, a throw logged and never passed on.
 */
import type { Logger } from "../../logger.js";
import type { LeaseEvent } from "../../store/types.js";

export type WatchCallback = (event: LeaseEvent) => void;

/** Calls one watcher; a throw is logged at warn (the store carries on). */
export function callWatcher(fn: WatchCallback, event: LeaseEvent, logger: Logger): void {
  try {
    fn(event);
  } catch (e) {
    logger.warn("lease watcher threw", { lease: event.name, err: e });
  }
}

/**
 * The watchers of each key. A key with one watcher (the usual case: one
 * elector per lease) holds the callback itself, not a Set of one, so a
 * process watching 100 000 leases does not pay for 100 000 Sets.
 */
export class WatcherSet<K = string> {
  private readonly byKey = new Map<K, WatchCallback | Set<WatchCallback>>();

  constructor(private readonly logger: Logger) {}

  /** Adds `fn` under `key`. True when it is the key's first watcher (subscribe now). */
  add(key: K, fn: WatchCallback): boolean {
    const cur = this.byKey.get(key);
    if (cur === undefined) {
      this.byKey.set(key, fn);
      return true;
    }
    if (typeof cur === "function") {
      if (cur !== fn) this.byKey.set(key, new Set([cur, fn]));
    } else cur.add(fn);
    return false;
  }

  /** Removes `fn` from `key`. True when that left the key without watchers (unsubscribe now). */
  delete(key: K, fn: WatchCallback): boolean {
    const cur = this.byKey.get(key);
    if (cur === undefined) return false;
    if (typeof cur === "function") {
      if (cur !== fn) return false;
      this.byKey.delete(key);
      return true;
    }
    if (!cur.delete(fn)) return false;
    if (cur.size > 0) return false;
    this.byKey.delete(key);
    return true;
  }

  has(key: K): boolean {
    return this.byKey.has(key);
  }

  /** Number of keys with at least one watcher. */
  get size(): number {
    return this.byKey.size;
  }

  /** The keys with at least one watcher. */
  keys(): K[] {
    return [...this.byKey.keys()];
  }

  /** Calls every watcher of `key` (those present when the call began). */
  emit(key: K, event: LeaseEvent): void {
    const cur = this.byKey.get(key);
    if (cur === undefined) return;
    if (typeof cur === "function") callWatcher(cur, event, this.logger);
    else for (const fn of [...cur]) callWatcher(fn, event, this.logger);
  }

  clear(): void {
    this.byKey.clear();
  }
}

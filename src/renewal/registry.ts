import { type Clock, systemClock } from "../clock.js";
import { Renewer, type RenewerOptions, type RenewStore } from "./renewer.js";

/**
 * The one `T` of `store` and `opts.clock` (default: the system clock) kept in
 * `cache`: made with `new Make(store, clock, opts)` on first use, else given
 * `opts` through `configure`. The renewer, the acquirer and the releaser are
 * each shared this way, one per store and clock.
 */
export function sharedFor<S extends object, O, T extends { configure(opts: O): void }>(
  cache: WeakMap<S, WeakMap<Clock, T>>,
  Make: new (store: S, clock: Clock, opts: O) => T,
  store: S,
  opts: O & { clock?: Clock },
): T {
  const clock = opts.clock ?? systemClock;
  let byClock = cache.get(store);
  if (!byClock) {
    byClock = new WeakMap();
    cache.set(store, byClock);
  }
  let t = byClock.get(clock);
  if (!t) {
    t = new Make(store, clock, opts);
    byClock.set(clock, t);
  } else t.configure(opts);
  return t;
}

const renewers = new WeakMap<RenewStore, WeakMap<Clock, Renewer>>();

/**
 * The shared renewer of `store` and `clock` (default: the system clock),
 * created on first use. Every elector (and so every group partition) on that
 * store and clock renews through it; electors with different clocks never
 * share one. `batchSize`, when given, applies to that renewer from now on.
 */
export function renewerFor(
  store: RenewStore,
  opts: RenewerOptions & { clock?: Clock } = {},
): Renewer {
  return sharedFor(renewers, Renewer, store, opts);
}

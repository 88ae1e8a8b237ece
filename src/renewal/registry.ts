import { type Clock, systemClock } from "../clock.js";
import { Renewer, type RenewerOptions, type RenewStore } from "./renewer.js";

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
  const clock = opts.clock ?? systemClock;
  let byClock = renewers.get(store);
  if (!byClock) {
    byClock = new WeakMap();
    renewers.set(store, byClock);
  }
  let r = byClock.get(clock);
  if (!r) {
    r = new Renewer(store, clock, opts);
    byClock.set(clock, r);
  } else r.configure(opts);
  return r;
}

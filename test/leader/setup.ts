import {
  createElector,
  type Demotion,
  type Elector,
  type ElectorOptions,
  type LeaseStore,
  type Term,
} from "../../src/index.js";
import { MemoryStore } from "../../src/stores/memory/index.js";
import { FakeClock } from "../../src/testing/index.js";
import { recordingLogger } from "../helpers/stores.js";

/** ttl 1000 ⇒ margin 100, trust window 900, renew every 333, retry 200. */
export const TTL = 1000;

export function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export function setup(opts: { wallStart?: number } = {}) {
  const clock = new FakeClock(opts.wallStart === undefined ? {} : { wallStart: opts.wallStart });
  const mem = new MemoryStore({ clock });
  const log = recordingLogger();
  const electors: Elector[] = [];
  const make = (holderId: string, o: Partial<ElectorOptions> & { store?: LeaseStore } = {}) => {
    const e = createElector({
      store: mem,
      name: "job",
      ttlMs: TTL,
      clock,
      holderId,
      random: () => 0.5,
      logger: log.logger,
      ...o,
    });
    electors.push(e);
    return e;
  };
  const record = (e: Elector) => {
    const elected: Term[] = [];
    const demoted: Demotion[] = [];
    const errors: Error[] = [];
    e.on("elected", (t) => {
      elected.push(t);
    });
    e.on("demoted", (d) => {
      demoted.push(d);
    });
    e.on("error", (err) => {
      errors.push(err);
    });
    return { elected, demoted, errors };
  };
  /** Makes another holder take the lease in the store behind the leader's back. */
  const steal = async (holder = "thief") => {
    await mem.forceRelease("job");
    const r = await mem.acquire("job", holder, TTL * 100);
    if (!r.acquired) throw new Error("steal failed");
    return r.lease;
  };
  const stopAll = async () => {
    const p = Promise.all(electors.map((e) => e.stop()));
    await clock.advance(0);
    await clock.advance(60_000);
    await p;
  };
  return { clock, mem, log, make, record, steal, stopAll };
}

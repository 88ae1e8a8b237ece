import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { memberHash } from "../../src/group/assign.js";
import {
  type ConfigError,
  createElector,
  createGroup,
  type Group,
  type GroupOptions,
  isConfigError,
  type Term,
} from "../../src/index.js";
import { MemoryStore } from "../../src/stores/memory/index.js";
import { FakeClock } from "../../src/testing/index.js";
import { ScriptedStore } from "../helpers/stores.js";

const TTL = 1000; // trust window 900; member and partition renew every 333; refresh every 200
const P = 8;

function setup() {
  const clock = new FakeClock();
  const mem = new MemoryStore({ clock });
  const store = new ScriptedStore(mem, { expect: ["list"] });
  const groups: Group[] = [];
  /** Each member's own view of the one memory store, so one member's calls can fail alone. */
  const stores = new Map<string, ScriptedStore>();
  const log: string[] = [];
  const make = (holderId: string, o: Partial<GroupOptions> = {}) => {
    const own = new ScriptedStore(mem, { expect: ["list"] });
    stores.set(holderId, own);
    const g = createGroup({
      store: own,
      name: "tenants",
      partitions: P,
      ttlMs: TTL,
      clock,
      holderId,
      random: () => 0.5,
      ...o,
    });
    g.on("assigned", ({ partition, term }) =>
      log.push(`${holderId} assigned ${partition} ${term.token}`),
    );
    g.on("revoked", ({ partition, token, reason }) =>
      log.push(`${holderId} revoked ${partition} ${token} ${reason}`),
    );
    groups.push(g);
    return g;
  };
  /** Fails the test the moment two groups both trust themselves owner of one partition. */
  const exclusive = () => {
    for (let p = 0; p < P; p++) {
      const owners = groups.filter((g) => g.owns(p)).map((g) => g.holderId);
      assert.ok(owners.length <= 1, `partition ${p} owned by ${owners.join(" and ")}`);
    }
    return true;
  };
  /** Advances fake time in 1 ms steps, checking exclusivity at every step, until `cond` holds. */
  const until = async (cond: () => boolean, maxMs: number) => {
    const start = clock.now();
    while (!cond()) {
      exclusive();
      if (clock.now() - start > maxMs) throw new Error(`not within ${maxMs} fake ms`);
      await clock.advance(1);
    }
    exclusive();
    return clock.now() - start;
  };
  const stopAll = async () => {
    let done = false;
    const p = Promise.all(groups.map((g) => g.stop())).then(() => {
      done = true;
    });
    for (let i = 0; i < 2000 && !done; i++) await clock.advance(10);
    await p;
  };
  /**
   * Members a and b, started, each owning half of the partitions. `beforeB` runs once a is made,
   * before b is made and either starts.
   */
  const startPair = async (opts: { beforeB?: (a: Group) => void } = {}) => {
    const a = make("a");
    opts.beforeB?.(a);
    const b = make("b");
    await a.start();
    await b.start();
    await until(() => a.owned().length === P / 2 && b.owned().length === P / 2, 3 * TTL);
    return { a, b };
  };
  return { clock, mem, store, stores, make, log, exclusive, until, stopAll, startPair };
}

describe("createGroup (memory store, fake clock)", () => {
  it("one member owns every partition, each with its own term", async () => {
    const t = setup();
    const a = t.make("a");
    await a.start();
    await t.until(() => a.owned().length === P, 100);
    assert.deepEqual(a.owned(), [0, 1, 2, 3, 4, 5, 6, 7]);
    for (let p = 0; p < P; p++) {
      assert.ok(a.owns(p));
      assert.equal(a.term(p)?.name, `tenants/p/${p}`);
    }
    assert.equal(t.log.filter((l) => l.startsWith("a assigned")).length, P);
    const ms = await a.members();
    assert.deepEqual(
      ms.map((m) => [m.holder, m.weight, m.partitions]),
      [["a", 1, P]],
    );
    await t.stopAll();
  });

  it("a joiner takes its share by handover: revoked (resigned) before assigned, never two owners", async () => {
    const t = setup();
    const a = t.make("a");
    await a.start();
    await t.until(() => a.owned().length === P, 100);
    t.log.length = 0;
    const b = t.make("b");
    await b.start();
    const took = await t.until(() => b.owned().length === 4 && a.owned().length === 4, 3 * TTL);
    // Noticed on a refresh (≤ 200 ms) and handed over by release, not by expiry (900 ms).
    assert.ok(took < TTL, `took ${took} fake ms`);
    const moved = b.owned();
    for (const p of moved) {
      const rev = t.log.findIndex((l) => l.startsWith(`a revoked ${p} `));
      const asg = t.log.findIndex((l) => l.startsWith(`b assigned ${p} `));
      assert.ok(rev >= 0 && asg > rev, `partition ${p}: ${t.log.join(", ")}`);
      assert.match(t.log[rev]!, / resigned$/);
    }
    assert.deepEqual([...a.owned(), ...b.owned()].sort(), [0, 1, 2, 3, 4, 5, 6, 7]);
    await t.stopAll();
  });

  it("owned() is a clock check: a stalled loop owns nothing past the trust window", async () => {
    const t = setup();
    const a = t.make("a");
    await a.start();
    await t.until(() => a.owned().length === P, 100);
    t.clock.stall(TTL); // no timer has run: only the clock says the terms are over
    assert.deepEqual(a.owned(), []);
    assert.equal(a.owns(3), false);
    assert.equal(a.term(3), null);
    await t.stopAll();
  });

  it("stop() hands every partition over at once: the others own them well before expiry", async () => {
    const t = setup();
    const { a, b } = await t.startPair();
    t.log.length = 0;
    const stopped = a.stop();
    const took = await t.until(() => b.owned().length === P, 3 * TTL);
    await stopped;
    assert.ok(took < 100, `handover took ${took} fake ms`);
    assert.equal(t.log.filter((l) => / stopped$/.test(l)).length, 4);
    assert.deepEqual(a.owned(), []);
    await t.stopAll();
  });

  it("a crashed member's partitions are taken when their leases expire", async () => {
    const t = setup();
    const { a, b } = await t.startPair();
    // "Crash" a: its leases stay in the store until they expire; nothing is released.
    const aStore = t.stores.get("a")!;
    aStore.fail("renew", "hang");
    aStore.fail("release", "hang");
    aStore.fail("acquire", "hang");
    const aHad = a.owned();
    const start = t.clock.now();
    await t.until(() => aHad.every((p) => !a.owns(p)), 2 * TTL);
    // b sees a's member lease expire and takes a's partitions when their leases expire.
    const took = await t.until(() => aHad.every((p) => b.owns(p)), 4 * TTL);
    assert.ok(t.clock.now() - start >= TTL - 100, `taken after ${t.clock.now() - start} ms`);
    assert.ok(took < 3 * TTL, `took ${took}`);
    aStore.heal();
    await t.stopAll();
  });

  it("a store whose list() hangs cannot hang the loop or stop()", async () => {
    const t = setup();
    const a = t.make("a");
    await a.start();
    await t.until(() => a.owned().length === P, 100);
    const errors: Error[] = [];
    a.on("error", (e) => errors.push(e));
    t.stores.get("a")!.list = () => new Promise(() => {});
    await t.clock.advance(300); // the next refresh is now stuck in list()
    let stopped = false;
    const p = a.stop().then(() => {
      stopped = true;
    });
    const took = await t.until(() => stopped, 2 * TTL);
    await p;
    assert.ok(took <= TTL, `stop took ${took} fake ms`);
    assert.ok(errors.some((e) => /list timed out/.test(e.message)));
    assert.deepEqual(a.owned(), []);
  });

  it("stale views never make two owners", async () => {
    const t = setup();
    // a's view stays the one from before b joined (its list() answers that snapshot):
    // it hands nothing over while b campaigns.
    const a = t.make("a", { refreshMs: 50_000 });
    await a.start();
    await t.until(() => a.owned().length === P, 100);
    const own = t.stores.get("a")!;
    const snapshot = await own.list();
    own.list = async () => snapshot;
    const b = t.make("b");
    await b.start();
    await t.until(() => b.assigned().length === 4, TTL);
    // For several ttls b wants half of them and a keeps them all; leases keep them exclusive.
    const end = t.clock.now() + 3 * TTL;
    await t.until(() => t.clock.now() >= end, 4 * TTL);
    assert.equal(a.owned().length, P);
    assert.deepEqual(b.owned(), []);
    await t.stopAll();
  });

  it("a partition it leads is its own even when a list misses it (Redis lists are no snapshot): no move", async () => {
    const t = setup();
    const hash = (id: string) => createHash("sha256").update(id).digest("hex").slice(0, 16);
    const part = (p: number) => `tenants/p/${p}`;
    const LONG = 600_000;
    // Puppet members b and c: leases written straight into the store. In the end b holds 3, c 2
    // and a 3 (8 over 3: 2 each, the two left over to those holding 3). A list that misses one
    // of a's shows a holding 2, as c does: the tie goes by member hash, c is picked to win it, so
    // from that view a's share is 2 and the missed partition goes to c.
    const c = [..."cdefghijklmnopqrstuvwxyz"].find((id) => memberHash(id) < memberHash("a"));
    assert.ok(c, "no puppet id fits");
    const join = async (id: string) =>
      assert.ok((await t.mem.acquire(`tenants/members/${P}/1/${hash(id)}`, id, LONG)).acquired);
    const take = async (id: string, p: number) =>
      assert.ok((await t.mem.acquire(part(p), id, LONG)).acquired);
    await join("b");
    for (const p of [0, 1, 2]) await take("b", p);
    const a = t.make("a");
    const store = t.stores.get("a")!;
    const list = store.list.bind(store);
    let miss = -1;
    store.list = async (o) => (await list(o)).filter((l) => l.name !== part(miss));
    await a.start();
    // a and b: 4 each; b's 4th stays free.
    await t.until(() => a.owned().length === 4, 3 * TTL);
    const free = [3, 4, 5, 6, 7].find((p) => !a.owns(p))!;
    await join(c);
    await take(c, free);
    // a's share is 3 now: it hands one over, and c takes it.
    await t.until(() => a.owned().length === 3 && a.assigned().length === 3, 3 * TTL);
    const dropped = [3, 4, 5, 6, 7].find((p) => p !== free && !a.owns(p))!;
    let took = false;
    await t.until(() => {
      if (!took) void t.mem.acquire(part(dropped), c, LONG).then((r) => (took ||= r.acquired));
      return took;
    }, TTL);
    const end = t.clock.now() + 3 * 200;
    await t.until(() => t.clock.now() >= end, TTL);
    const mine = a.owned();
    assert.equal(mine.length, 3);
    t.log.length = 0;
    miss = mine[0]!;
    const end2 = t.clock.now() + 3 * 200;
    await t.until(() => t.clock.now() >= end2, TTL);
    assert.deepEqual(
      t.log.filter((l) => l.startsWith("a revoked")),
      [],
      "a let go a partition it leads",
    );
    assert.deepEqual(a.owned(), mine);
    await t.stopAll();
  });

  it("a pushed graceful leave is acted on from the settled view, before any list()", async () => {
    const t = setup();
    const a = t.make("a");
    const b = t.make("b");
    const c = t.make("c");
    for (const g of [a, b, c]) await g.start();
    const balanced = () => [a, b, c].every((g) => g.owned().length >= 2);
    await t.until(balanced, 5 * TTL);
    // Every view read once more after the rebalance: settled.
    const settle = t.clock.now() + 2 * (TTL / 5);
    await t.until(() => t.clock.now() >= settle, 3 * TTL);
    const left = c.owned();
    const lists = { a: t.stores.get("a")!.calls.list, b: t.stores.get("b")!.calls.list };
    const listsAtTakeover: number[] = [];
    for (const [id, g] of [
      ["a", a],
      ["b", b],
    ] as const) {
      g.on("assigned", ({ partition }) => {
        if (left.includes(partition))
          listsAtTakeover.push(t.stores.get(id)!.calls.list - lists[id]);
      });
    }
    void c.stop();
    const took = await t.until(() => a.owned().length + b.owned().length === P, TTL);
    assert.equal(listsAtTakeover.length, left.length);
    assert.deepEqual(
      listsAtTakeover.filter((n) => n > 0),
      [],
      "a leaver's partitions were taken only after a fresh list()",
    );
    assert.ok(took < TTL / 5, `taken over after ${took} fake ms`);
    await t.stopAll();
  });

  /** Records the watch callbacks member `id`'s store is given, by lease name. */
  const tapWatches = (t: ReturnType<typeof setup>, id: string) => {
    const own = t.stores.get(id)!;
    const inner = own.watch!;
    const taps = new Map<string, (e: { name: string; type: "released" | "acquired" }) => void>();
    own.watch = (name, fn) => {
      taps.set(name, fn);
      return inner(name, fn);
    };
    return taps;
  };
  const memberLeaseOf = (t: ReturnType<typeof setup>, g: Group) =>
    t.mem
      .list()
      .then((ls) => ls.find((l) => l.name.includes("/members/") && l.holder === g.holderId)!.name);
  /**
   * Members a and b, started with a's watch callbacks tapped, each owning half of the
   * partitions, then left to settle; with b's member lease.
   */
  const tappedPair = async (t: ReturnType<typeof setup>) => {
    let taps: ReturnType<typeof tapWatches> | undefined;
    const { a, b } = await t.startPair({
      beforeB: () => {
        taps = tapWatches(t, "a");
      },
    });
    const settle = t.clock.now() + 2 * (TTL / 5);
    await t.until(() => t.clock.now() >= settle, 3 * TTL);
    return { a, b, taps: taps!, bLease: await memberLeaseOf(t, b) };
  };

  it("a member watch that failed is set up again, so a later graceful leave is still pushed", async () => {
    // A watch that timed out once (a loaded machine, a cut etcd member) was never tried again:
    // that member heard of leaves only from its periodic list.
    const t = setup();
    const a = t.make("a");
    const own = t.stores.get("a")!;
    const inner = own.watch!;
    const calls = new Map<string, number>();
    own.watch = (name, fn) => {
      const n = (calls.get(name) ?? 0) + 1;
      calls.set(name, n);
      if (n === 1) return Promise.reject(new Error("watch failed: not connected"));
      return inner(name, fn);
    };
    const b = t.make("b");
    await a.start();
    await b.start();
    await t.until(() => a.owned().length === P / 2 && b.owned().length === P / 2, 3 * TTL);
    const bLease = await memberLeaseOf(t, b);
    await t.until(() => (calls.get(bLease) ?? 0) >= 2, 2 * TTL);
    const settle = t.clock.now() + 2 * (TTL / 5);
    await t.until(() => t.clock.now() >= settle, 3 * TTL);
    const listsBefore = own.calls.list;
    let listsAtTakeover = -1;
    a.on("assigned", () => {
      if (listsAtTakeover < 0) listsAtTakeover = own.calls.list - listsBefore;
    });
    void b.stop();
    const took = await t.until(() => a.owned().length === P, TTL);
    assert.equal(listsAtTakeover, 0, "b's leave was pushed to a by the watch set up again");
    assert.ok(took < TTL / 5, `taken over after ${took} fake ms`);
    await t.stopAll();
  });

  it("a release followed by the lease taken again (etcd replaying a watch's history) is no leave", async () => {
    // etcd resumes a watch after a fault from where it stopped: a member hears another's member
    // lease expire and be taken again, both late (chaos group:etcd:latency:965197463).
    const t = setup();
    const { a, taps, bLease } = await tappedPair(t);
    const emit = taps.get(bLease)!;
    emit({ name: bLease, type: "released" });
    emit({ name: bLease, type: "acquired" });
    let most = 0;
    await t
      .until(() => {
        most = Math.max(most, a.assigned().length);
        return false;
      }, TTL)
      .catch(() => {});
    assert.equal(most, P / 2, "a campaigned only for its own half");
    await t.stopAll();
  });

  it("a member that joins again reads the store, not its old view minus the leaves it heard meanwhile", async () => {
    const t = setup();
    const { a, b, taps, bLease } = await tappedPair(t);
    // a is cut off long enough to lose its member lease; meanwhile it hears b leave (a stale
    // event: b is live throughout).
    t.stores.get("a")!.fail("renew", "transient");
    t.stores.get("a")!.fail("acquire", "transient");
    await t.until(() => a.owned().length === 0, 2 * TTL);
    taps.get(bLease)!({ name: bLease, type: "released" });
    await t.clock.advance(1500);
    t.stores.get("a")!.heal();
    let most = 0;
    await t.until(() => {
      most = Math.max(most, a.assigned().length);
      return a.owned().length === P / 2 && b.owned().length === P / 2;
    }, 5 * TTL);
    assert.equal(most, P / 2, "a, back, campaigned for its half, not for every partition");
    await t.stopAll();
  });

  it("reads the store again after refreshMs / 10 while its view is not settled, then every refreshMs", async () => {
    const t = setup();
    // Partition 3 is held by a holder that is no member, until 3 000 fake ms: every view read
    // before then is unsettled (a partition not held by its target owner).
    const x = await t.mem.acquire("tenants/p/3", "x", 3000);
    assert.ok(x.acquired);
    // refreshMs 5 000: unsettled re-read after 500 ms.
    const a = t.make("a", { refreshMs: 5000 });
    await a.start();
    const lists = t.stores.get("a")!.calls;
    await t.until(() => a.owned().length === P - 1, 100);
    // While partition 3 stays held by x, the view is read again every 500 ms (not 5 000).
    for (let i = 0; i < 3; i++) {
      const before = lists.list;
      const at = t.clock.now();
      await t.until(() => lists.list > before, 600);
      assert.ok(t.clock.now() - at <= 600, `re-read ${t.clock.now() - at} fake ms after the last`);
    }
    // x's lease ends; a takes partition 3 and the view it reads next is settled.
    await t.until(() => a.owned().length === P, 3000);
    const owning = lists.list;
    await t.until(() => lists.list > owning, 600);
    // That read saw every partition held by a: settled, so the next read waits the whole refreshMs.
    const settled = lists.list;
    const until = t.clock.now() + 4000;
    await t.until(() => t.clock.now() >= until, 5000);
    assert.equal(lists.list, settled);
    await t.stopAll();
  });

  it("service and every run per owned partition with that partition's term", async () => {
    const t = setup();
    const a = t.make("a");
    const started: [number, bigint][] = [];
    const stopped: string[] = [];
    const ticks: [number, bigint][] = [];
    a.service({
      name: "replicate",
      start: (term: Term, p: number) => {
        started.push([p, term.token]);
      },
      stop: (reason) => {
        stopped.push(reason);
      },
    });
    a.every(100, (term, p) => {
      ticks.push([p, term.token]);
    });
    await a.start();
    await t.until(() => a.owned().length === P && started.length === P, 100);
    for (const [p, token] of started) assert.equal(token, a.term(p)?.token);
    await t.until(() => new Set(ticks.map(([p]) => p)).size === P, 200);
    for (const [p, token] of ticks) assert.equal(token, a.term(p)?.token);
    const b = t.make("b");
    await b.start();
    await t.until(() => a.owned().length === 4, 3 * TTL);
    await t.until(() => stopped.length === 4, 100);
    assert.deepEqual(stopped, ["resigned", "resigned", "resigned", "resigned"]);
    await t.stopAll();
  });

  it("a member with another partition count is refused with a ConfigError; nothing owned is dropped", async () => {
    const t = setup();
    const a = t.make("a");
    await a.start();
    await t.until(() => a.owned().length === P, 100);
    const b = t.make("b", { partitions: 4 });
    await assert.rejects(b.start(), (e: ConfigError) => {
      assert.ok(isConfigError(e));
      assert.equal(e.field, "partitions");
      assert.match(e.message, /8 partitions/);
      return true;
    });
    const end = t.clock.now() + 2 * TTL;
    await t.until(() => t.clock.now() >= end, 3 * TTL);
    assert.equal(a.owned().length, P);
    await t.stopAll();
  });

  it("a group name that clashes with a lease name is refused", async () => {
    const t = setup();
    const e = createElector({ store: t.store, name: "tenants", ttlMs: TTL, clock: t.clock });
    await e.start();
    await t.until(() => e.isLeader(), 100);
    const g = t.make("g");
    await assert.rejects(g.start(), (err: ConfigError) => {
      assert.equal(err.field, "name");
      assert.match(err.message, /clashes with a lease/);
      return true;
    });
    const p = e.stop();
    await t.clock.advance(10);
    await p;
  });

  it("bad options name the field", () => {
    const clock = new FakeClock();
    const store = new MemoryStore({ clock });
    const bad: [Partial<GroupOptions>, string][] = [
      [{ partitions: 0 }, "partitions"],
      [{ partitions: 65_537 }, "partitions"],
      [{ partitions: 2.5 }, "partitions"],
      [{ weight: 0 }, "weight"],
      [{ name: "x".repeat(93) }, "name"],
      [{ name: "/bad" }, "name"],
      [{ ttlMs: -1 }, "ttlMs"],
    ];
    for (const [o, field] of bad) {
      assert.throws(
        () => createGroup({ store, name: "g", partitions: 4, ...o }),
        (e: ConfigError) => isConfigError(e) && e.field === field,
        JSON.stringify(o),
      );
    }
    assert.doesNotThrow(() => createGroup({ store, name: "g", partitions: 65_536 }));
  });
});

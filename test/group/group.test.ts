import assert from "node:assert/strict";
import { describe, it } from "node:test";
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
  /** Members a and b, started, each owning half of the partitions. */
  const startPair = async () => {
    const a = make("a");
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
    // a re-reads the membership only every 50 s: it hands nothing over while b campaigns.
    const a = t.make("a", { refreshMs: 50_000 });
    await a.start();
    await t.until(() => a.owned().length === P, 100);
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

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { Cluster, Redis } from "ioredis";
import {
  FencedError,
  isConfigError,
  isFencedError,
  isStoreError,
  type StoreError,
} from "../../src/errors.js";
import type { Logger } from "../../src/logger.js";
import type { LeaseEvent, LeaseRef, LeaseStore } from "../../src/store/types.js";
import {
  classifyRedisError,
  openRedisStore,
  type RedisClientLike,
  RedisStore,
  SCRIPTS,
} from "../../src/stores/redis/index.js";
import { hashSlot } from "../../src/stores/redis/slots.js";
import { describeLeaseStore } from "../helpers/conformance.js";
import { hasRedisServerBinary, redisAnswers, ThrowawayRedis } from "../helpers/redis.js";
import { requireService, SERVICES } from "../helpers/services.js";
import { uniqueName, waitFor } from "../helpers/wait.js";

const HOW =
  "start it with `bash scripts/services.sh start` (redis-server on 127.0.0.1:6379) or set TENURE_TEST_REDIS_URL";
const shared = requireService("Redis", await redisAnswers(SERVICES.redis), HOW);
const binary = requireService(
  "redis-server (binary, for throwaway servers)",
  hasRedisServerBinary(),
  "install it with `apt-get install redis-server`",
);

/** Connection name → store, so killConnection can find the store's server-side connection. */
const connNames = new WeakMap<LeaseStore, string>();
let seq = 0;

/**
 * Opens a store with a named connection. The restart guard is off unless a
 * test turns it on: throwaway servers are seconds old, and the guard would
 * hold every first acquire for a ttl (its own tests below).
 */
async function openNamed(url: string, extra: Parameters<typeof openRedisStore>[1] = {}) {
  const name = `tenure-test-${process.pid}-${++seq}`;
  const s = await openRedisStore(url, { connectionName: name, restartGuard: false, ...extra });
  connNames.set(s, name);
  return s;
}

/** CLIENT KILL ID of every connection named exactly `name` (not the `-sub` one). */
async function killByName(url: string, name: string): Promise<number> {
  const admin = new Redis(url, { maxRetriesPerRequest: 1 });
  admin.on("error", () => {});
  try {
    const list = (await admin.call("CLIENT", "LIST")) as string;
    const ids = list
      .split("\n")
      .filter((l) => l.includes(` name=${name} `))
      .map((l) => /(?:^|\s)id=(\d+)/.exec(l)?.[1])
      .filter((id): id is string => Boolean(id));
    for (const id of ids) await admin.call("CLIENT", "KILL", "ID", id);
    return ids.length;
  } finally {
    admin.disconnect();
  }
}

async function expectStoreError(p: Promise<unknown>): Promise<StoreError> {
  try {
    await p;
  } catch (e) {
    assert.ok(isStoreError(e), `expected StoreError, got ${String(e)}`);
    return e;
  }
  assert.fail("expected the call to fail");
}

// ── Conformance against the machine's shared Redis ──────────────────────────
describeLeaseStore("redis", () => openNamed(SERVICES.redis), {
  ...shared,
  killConnection: async (s) => {
    const n = await killByName(SERVICES.redis, connNames.get(s)!);
    assert.equal(n, 1, "exactly one connection killed");
    return n;
  },
  proxied: {
    target: {
      host: new URL(SERVICES.redis).hostname,
      port: Number(new URL(SERVICES.redis).port || 6379),
    },
    open: (port) => openNamed(`redis://127.0.0.1:${port}`),
    // ioredis resends the unanswered script on its new connection (renew is idempotent).
    inFlight: "resent",
  },
  // Counted: every EVALSHA / EVAL / SCAN the store sends (each one request, no pipelining).
  counted: {
    open: async () => {
      const client = new Redis(SERVICES.redis, { maxRetriesPerRequest: 1 });
      let n = 0;
      const counting = new Proxy(client, {
        get(target, prop, receiver) {
          const v = Reflect.get(target, prop, receiver);
          if (prop === "evalsha" || prop === "eval" || prop === "scan") {
            return (...args: unknown[]) => {
              n++;
              return (v as (...a: unknown[]) => unknown).apply(target, args);
            };
          }
          return typeof v === "function" ? v.bind(target) : v;
        },
      }) as unknown as RedisClientLike;
      const store = new RedisStore(counting, {
        restartGuard: false,
        closeClient: async () => {
          client.disconnect();
        },
      });
      return { store, requests: () => n };
    },
    perBatch: 1,
  },
});

// ── Conformance against a throwaway server that loses its data on restart ───
let throwaway: ThrowawayRedis | undefined;
const throwawayUrl = async () => {
  throwaway ??= await ThrowawayRedis.start();
  return throwaway.url;
};
describeLeaseStore(
  "redis (throwaway server, restart loses all data)",
  async () => openNamed(await throwawayUrl()),
  {
    ...binary,
    concurrency: 4,
    killConnection: async (s) => killByName(await throwawayUrl(), connNames.get(s)!),
    restartServer: async () => {
      await throwaway!.restart();
    },
  },
);
after(async () => {
  await throwaway?.dispose();
});

// ── Redis specifics ─────────────────────────────────────────────────────────
describe("redis store", { ...shared }, () => {
  let store: Awaited<ReturnType<typeof openNamed>>;
  let raw: Redis;
  before(async () => {
    store = await openNamed(SERVICES.redis);
    raw = new Redis(SERVICES.redis, { maxRetriesPerRequest: 1 });
  });
  after(async () => {
    await store?.close();
    raw?.disconnect();
  });

  it("keys are hash-tagged by lease name; values hold token and holder; expiry is PX", async () => {
    const n = uniqueName("keys");
    const a = await store.acquire(n, "host:1", 5000);
    assert.ok(a.acquired);
    assert.equal(await raw.get(`tenure:{${n}}:lease`), `t1:${a.lease.token}:host:1`);
    assert.equal(await raw.get(`tenure:{${n}}:token`), String(a.lease.token));
    const pttl = await raw.pttl(`tenure:{${n}}:lease`);
    assert.ok(pttl > 4000 && pttl <= 5000, `pttl ${pttl}`);
    assert.equal(await raw.pttl(`tenure:{${n}}:token`), -1);
    // the token is floored by the server's TIME in microseconds
    const [sec] = (await raw.time()) as unknown as [string, string];
    const nowUs = BigInt(sec) * 1_000_000n;
    assert.ok(a.lease.token > nowUs - 5_000_000n && a.lease.token < 2n ** 53n, `${a.lease.token}`);
    assert.equal(store.taggedKey(n, "cursor"), `tenure:{${n}}:user:cursor`);
  });

  it("a token counter ahead of the server's clock (the clock stepped back) still gives a larger token", async () => {
    const n = uniqueName("ahead");
    const [sec] = (await raw.time()) as unknown as [string, string];
    const ahead = BigInt(sec) * 1_000_000n + 3_600_000_000n; // an hour ahead
    await raw.set(`tenure:{${n}}:token`, ahead.toString());
    const a = await store.acquire(n, "a", 5000);
    assert.ok(a.acquired);
    assert.equal(a.lease.token, ahead + 1n);
    assert.equal(await raw.get(`tenure:{${n}}:token`), String(ahead + 1n));
    assert.equal(await raw.get(`tenure:{${n}}:lease`), `t1:${ahead + 1n}:a`);
    await store.release(a.lease);
    const b = await store.acquire(n, "b", 5000);
    assert.ok(b.acquired && b.lease.token === ahead + 2n);
    await store.release(b.lease);
    await raw.del(`tenure:{${n}}:token`);
  });

  it("a custom key prefix (option or ?prefix=) is used for every key", async () => {
    const s = await openRedisStore(`${SERVICES.redis}?prefix=myapp:`);
    try {
      const n = uniqueName("prefix");
      const a = await s.acquire(n, "a", 5000);
      assert.ok(a.acquired);
      assert.ok(await raw.exists(`myapp:{${n}}:lease`));
      assert.ok((await s.list()).some((l) => l.name === n));
      assert.ok(!(await store.list()).some((l) => l.name === n), "other prefix does not see it");
    } finally {
      await s.close();
    }
  });

  it("list() reads the leases it found with one script per 1 000, not one read per lease", async () => {
    const client = new Redis(SERVICES.redis, { maxRetriesPerRequest: 1 });
    const scripts: number[] = [];
    const counting = new Proxy(client, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        if (prop === "evalsha" || prop === "eval")
          return (...args: unknown[]) => {
            scripts.push(Number(args[1]));
            return (v as (...a: unknown[]) => unknown).apply(target, args);
          };
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    // A prefix of its own: only this test's leases are listed.
    const s = new RedisStore(counting, { keyPrefix: `${uniqueName("lst")}:` });
    try {
      const n = uniqueName("l");
      const leases = await s.acquireMany(
        Array.from({ length: 1500 }, (_, i) => ({ name: `${n}-${i}`, holder: "a", ttlMs: 30_000 })),
      );
      assert.ok(leases.every((r) => r.acquired));
      await s.list(); // loads the script (EVALSHA, then EVAL on NOSCRIPT)
      scripts.length = 0;
      const all = await s.list();
      assert.equal(all.length, 1500);
      assert.ok(all.every((l) => l.holder === "a" && l.expiresInMs > 0));
      // Two READ_MANY calls (1 000 + 500 keys), nothing per lease.
      assert.deepEqual(scripts, [1000, 500]);
    } finally {
      await s.close();
      client.disconnect();
    }
  });

  it("garbage or a wrong type in a lease key is a fatal schema StoreError", async () => {
    const n1 = uniqueName("garbage");
    await raw.set(`tenure:{${n1}}:lease`, "not a tenure lease", "PX", 60_000);
    for (const call of [
      () => store.read(n1),
      () => store.acquire(n1, "a", 1000),
      () => store.renew({ name: n1, holder: "a", token: 1n }, 1000),
      () => store.forceRelease(n1),
    ]) {
      const e = await expectStoreError(call());
      assert.equal(e.kind, "schema", e.message);
      assert.equal(e.transient, false);
    }
    const n2 = uniqueName("wrongtype");
    await raw.hset(`tenure:{${n2}}:lease`, "x", "y");
    const e2 = await expectStoreError(store.acquire(n2, "a", 1000));
    assert.equal(e2.kind, "schema", e2.message);
    assert.equal(e2.code, "WRONGTYPE");
    const n3 = uniqueName("badtoken");
    await raw.set(`tenure:{${n3}}:token`, "banana");
    assert.equal((await expectStoreError(store.acquire(n3, "a", 1000))).kind, "schema");
    assert.equal(await raw.get(`tenure:{${n3}}:token`), "banana", "the bad value is left as found");
    assert.equal(await raw.exists(`tenure:{${n3}}:lease`), 0, "and no lease was written");
    const n4 = uniqueName("noexpiry");
    await raw.set(`tenure:{${n4}}:lease`, "t1:5:a");
    assert.equal((await expectStoreError(store.read(n4))).kind, "schema");
    await raw.del(
      `tenure:{${n1}}:lease`,
      `tenure:{${n2}}:lease`,
      `tenure:{${n3}}:token`,
      `tenure:{${n4}}:lease`,
    );
  });

  it("fencedSet/fencedHset write only while the term holds the lease; else FencedError", async () => {
    const n = uniqueName("fset");
    const key = store.taggedKey(n, "state");
    const hkey = store.taggedKey(n, "hash");
    const a = await store.acquire(n, "a", 5000);
    assert.ok(a.acquired);
    await store.fencedSet(a.lease, key, "v1", { pxMs: 10_000 });
    assert.equal(await raw.get(key), "v1");
    assert.ok((await raw.pttl(key)) > 5000);
    await store.fencedHset(a.lease, hkey, "f", "h1");
    assert.equal(await raw.hget(hkey, "f"), "h1");
    await store.release(a.lease);
    // not held at all
    await assert.rejects(store.fencedSet(a.lease, key, "x"), (e) => {
      assert.ok(isFencedError(e));
      assert.equal(e.currentToken, null);
      return true;
    });
    const b = await store.acquire(n, "b", 5000);
    assert.ok(b.acquired);
    await assert.rejects(store.fencedHset(a.lease, hkey, "f", "stale"), (e) => {
      assert.ok(e instanceof FencedError);
      assert.equal(e.currentToken, b.lease.token);
      assert.equal(e.token, a.lease.token);
      return true;
    });
    assert.equal(await raw.get(key), "v1");
    assert.equal(await raw.hget(hkey, "f"), "h1");
    await raw.del(key, hkey);
  });

  it("token-checked write: the stale term is rejected every time across 100 takeovers", async () => {
    const n = uniqueName("race");
    const sA = await openNamed(SERVICES.redis);
    const sB = await openNamed(SERVICES.redis);
    const key = store.taggedKey(n, "value");
    try {
      let staleRejections = 0;
      for (let i = 0; i < 100; i++) {
        const a = await sA.acquire(n, "a", 5000);
        assert.ok(a.acquired);
        await sA.fencedSet(a.lease, key, `a:${i}:first`);
        // A keeps writing while B takes over and writes.
        let bWrote = false;
        let aAfterB = 0;
        let aFenced = false;
        const writerA = (async () => {
          for (let j = 0; ; j++) {
            const afterB: boolean = bWrote;
            try {
              await sA.fencedSet(a.lease, key, `a:${i}:${j}`);
              assert.equal(afterB, false, `iteration ${i}: stale write accepted after takeover`);
            } catch (e) {
              if (!isFencedError(e)) throw e;
              aFenced = true;
              if (afterB) aAfterB++;
              return;
            }
          }
        })();
        const takeover = (async () => {
          assert.equal(await sB.forceRelease(n), true);
          const b = await sB.acquire(n, "b", 5000);
          assert.ok(b.acquired, `iteration ${i}: B acquires`);
          assert.ok(b.lease.token > a.lease.token);
          await sB.fencedSet(b.lease, key, `b:${i}`);
          bWrote = true;
          return b;
        })();
        const [, b] = await Promise.all([writerA, takeover]);
        assert.equal(aFenced, true);
        // after B's write, A never wins again
        await assert.rejects(sA.fencedSet(a.lease, key, `a:${i}:late`), isFencedError);
        assert.equal(await raw.get(key), `b:${i}`, `iteration ${i}`);
        staleRejections += 1 + aAfterB;
        assert.equal(await sB.release(b.lease), true);
      }
      assert.ok(staleRejections >= 100);
    } finally {
      await raw.del(key);
      await sA.close();
      await sB.close();
    }
  });

  it("watch: one shared subscriber connection; after it reconnects watchers get `changed`", async () => {
    const n1 = uniqueName("w1");
    const n2 = uniqueName("w2");
    const w = await openNamed(SERVICES.redis);
    try {
      const e1: LeaseEvent[] = [];
      const e2: LeaseEvent[] = [];
      const u1 = await w.watch(n1, (e) => e1.push(e));
      const u2 = await w.watch(n2, (e) => e2.push(e));
      const subName = `${connNames.get(w)}-sub`;
      assert.equal(await killByName(SERVICES.redis, subName), 1, "one subscriber connection");
      await waitFor("changed after resubscribe", () => e1.some((e) => e.type === "changed"), {
        timeoutMs: 5000,
      });
      await waitFor("changed after resubscribe", () => e2.some((e) => e.type === "changed"));
      // the resubscribed channel still delivers
      const a = await store.acquire(n1, "a", 5000);
      assert.ok(a.acquired);
      await waitFor("acquired", () => e1.some((e) => e.type === "acquired"), { timeoutMs: 3000 });
      await store.release(a.lease);
      await waitFor("released", () => e1.some((e) => e.type === "released"), { timeoutMs: 3000 });
      assert.ok(
        e2.every((e) => e.type === "changed"),
        "no cross-talk between leases",
      );
      await u1();
      await u2();
    } finally {
      await w.close();
    }
    // the subscriber is gone after close()
    const list = (await raw.call("CLIENT", "LIST")) as string;
    assert.ok(!list.includes(` name=${connNames.get(w)}-sub `));
  });

  it("watch: after the subscriber reconnects, only the store resubscribes (ioredis' own resubscribe leaves its promise unhandled: a second drop before the reply crashed a chaos worker)", async () => {
    const n1 = uniqueName("wr");
    const channel = `tenure:{${n1}}:events`;
    const w = await openNamed(SERVICES.redis);
    const monConn = new Redis(SERVICES.redis);
    const mon = await monConn.monitor();
    let subscribes = 0;
    mon.on("monitor", (_t: string, args: string[]) => {
      if (String(args[0]).toLowerCase() === "subscribe" && args.includes(channel)) subscribes++;
    });
    try {
      const e1: LeaseEvent[] = [];
      const u1 = await w.watch(n1, (e) => e1.push(e));
      await waitFor("the first SUBSCRIBE in MONITOR", () => subscribes === 1);
      assert.equal(await killByName(SERVICES.redis, `${connNames.get(w)}-sub`), 1);
      await waitFor("changed after resubscribe", () => e1.some((e) => e.type === "changed"), {
        timeoutMs: 5000,
      });
      // Subscribed again on the server: an acquire is delivered.
      const a = await store.acquire(n1, "a", 5000);
      assert.ok(a.acquired);
      await waitFor("acquired", () => e1.some((e) => e.type === "acquired"), { timeoutMs: 3000 });
      await store.release(a.lease);
      // ioredis would write its resubscribe before the store's (both on "ready"):
      // by the time the store's SUBSCRIBE is in MONITOR, any other is too.
      await waitFor("the resubscribe in MONITOR", () => subscribes >= 2);
      assert.equal(subscribes, 2, "one SUBSCRIBE at watch, one after the reconnect");
      await u1();
    } finally {
      mon.disconnect();
      monConn.disconnect();
      await w.close();
    }
  });

  it("watch: N watches issued together go out as ⌈N / 1000⌉ SUBSCRIBE commands (unwatches likewise), each still notified", async () => {
    const n = 2500;
    const names = Array.from({ length: n }, (_, i) => uniqueName(`wb${i}`));
    const sent: Array<{ kind: string; channels: number }> = [];
    const client = new Redis(SERVICES.redis);
    const w = new RedisStore(client as unknown as RedisClientLike, {
      restartGuard: false,
      subscriber: () => {
        const sub = new Redis(SERVICES.redis, { autoResubscribe: false });
        for (const kind of ["subscribe", "unsubscribe"] as const) {
          const orig = sub[kind].bind(sub) as (...c: string[]) => Promise<unknown>;
          (sub as unknown as Record<string, unknown>)[kind] = (...c: string[]) => {
            sent.push({ kind, channels: c.length });
            return orig(...c);
          };
        }
        return sub;
      },
    });
    try {
      const events = names.map(() => [] as LeaseEvent[]);
      const unwatch = await Promise.all(names.map((m, i) => w.watch(m, (e) => events[i]!.push(e))));
      const subs = sent.filter((c) => c.kind === "subscribe");
      assert.equal(subs.length, Math.ceil(n / 1000), JSON.stringify(sent));
      assert.equal(
        subs.reduce((a, c) => a + c.channels, 0),
        n,
      );
      const counts = (await raw.call(
        "PUBSUB",
        "NUMSUB",
        ...names.map((m) => `tenure:{${m}}:events`),
      )) as Array<string | number>;
      assert.ok(
        counts.every((v, i) => i % 2 === 0 || Number(v) === 1),
        "every channel subscribed on the server",
      );
      for (const i of [0, 999, 1000, n - 1]) {
        const a = await store.acquire(names[i]!, "a", 5000);
        assert.ok(a.acquired);
        await waitFor(`acquired on watch ${i}`, () =>
          events[i]!.some((e) => e.type === "acquired"),
        );
        await store.release(a.lease);
      }
      // An unwatch and a watch of the same lease in one turn keep their order.
      const again: LeaseEvent[] = [];
      const [, u0] = await Promise.all([unwatch[0]!(), w.watch(names[0]!, (e) => again.push(e))]);
      sent.length = 0;
      await Promise.all(unwatch.slice(1).map((u) => u()));
      const unsubs = sent.filter((c) => c.kind === "unsubscribe");
      assert.equal(unsubs.length, Math.ceil((n - 1) / 1000), JSON.stringify(sent));
      const a = await store.acquire(names[0]!, "a", 5000);
      assert.ok(a.acquired);
      await waitFor("acquired after unwatch + watch", () =>
        again.some((e) => e.type === "acquired"),
      );
      await store.release(a.lease);
      await u0();
      const left = (await raw.call(
        "PUBSUB",
        "NUMSUB",
        ...names.map((m) => `tenure:{${m}}:events`),
      )) as Array<string | number>;
      assert.ok(
        left.every((v, i) => i % 2 === 0 || Number(v) === 0),
        "no channel left subscribed",
      );
    } finally {
      await w.close();
      client.disconnect();
    }
  });

  it("bad URLs and options are ConfigErrors naming the field", async () => {
    await assert.rejects(openRedisStore("redis://127.0.0.1:6379?bogus=1"), /bogus/);
    await assert.rejects(openRedisStore("redis://127.0.0.1:6379/notadb"), /database number/);
    await assert.rejects(
      openRedisStore("redis://127.0.0.1:6379?commandTimeoutMs=0"),
      /commandTimeoutMs/,
    );
    await assert.rejects(openRedisStore("redis://127.0.0.1:6379?prefix=a{b}"), /keyPrefix/);
    await assert.rejects(store.acquire("bad name!", "a", 1000), /name/);
    await assert.rejects(store.acquire(uniqueName(), "a", 0), /ttlMs/);
  });

  it("RedisStore accepts an existing ioredis client and leaves it open on close", async () => {
    const client = new Redis(SERVICES.redis, { maxRetriesPerRequest: 1 });
    const typed: RedisClientLike = client; // the narrow type fits ioredis' Redis as is
    const s = new RedisStore(typed, { keyPrefix: "byo:" });
    try {
      assert.equal(s.notifies, true);
      const n = uniqueName("byo");
      const a = await s.acquire(n, "a", 5000);
      assert.ok(a.acquired);
      assert.ok(await client.exists(`byo:{${n}}:lease`));
      const events: LeaseEvent[] = [];
      const un = await s.watch(n, (e) => events.push(e));
      await s.release(a.lease);
      await waitFor("released", () => events.some((e) => e.type === "released"), {
        timeoutMs: 3000,
      });
      await un();
      await s.close();
      assert.equal(await client.ping(), "PONG");
      await assert.rejects(s.read(n), (e) => isStoreError(e) && e.kind === "closed");
    } finally {
      client.disconnect();
    }
  });

  it("classifies driver errors", () => {
    const c = (e: unknown) => classifyRedisError(e);
    assert.deepEqual(c(new Error("Connection is closed.")).transient, true);
    assert.equal(
      c(Object.assign(new Error("x"), { name: "MaxRetriesPerRequestError" })).kind,
      "connection",
    );
    assert.equal(c(new Error("Command timed out")).kind, "timeout");
    for (const m of [
      "LOADING Redis is loading",
      "TRYAGAIN x",
      "CLUSTERDOWN x",
      "MASTERDOWN x",
      "BUSY x",
    ]) {
      assert.deepEqual([c(new Error(m)).transient, c(new Error(m)).kind], [true, "unavailable"], m);
    }
    for (const m of ["NOAUTH Authentication required.", "NOPERM no", "WRONGPASS invalid"]) {
      assert.deepEqual([c(new Error(m)).transient, c(new Error(m)).kind], [false, "auth"], m);
    }
    assert.equal(
      c(new Error("ERR Error running script: @user_script:1: WRONGTYPE x")).kind,
      "schema",
    );
    assert.equal(
      c(new Error("CROSSSLOT Keys in request don't hash to the same slot")).kind,
      "config",
    );
  });
});

// ── Faults provoked on throwaway servers ────────────────────────────────────
describe("redis store faults (throwaway servers)", { ...binary }, () => {
  const servers: ThrowawayRedis[] = [];
  const stores: LeaseStore[] = [];
  const start = async (extra: string[] = []) => {
    const s = await ThrowawayRedis.start(extra);
    servers.push(s);
    return s;
  };
  const track = <S extends LeaseStore>(s: S): S => {
    stores.push(s);
    return s;
  };
  after(async () => {
    await Promise.allSettled(stores.map((s) => s.close()));
    await Promise.allSettled(servers.map((s) => s.dispose()));
  });

  it("FLUSHALL and restarts lose every key, yet tokens keep increasing and old terms stay fenced", async () => {
    const srv = await start();
    const s = track(await openNamed(srv.url));
    const admin = srv.admin();
    try {
      const n = uniqueName("loss");
      const tokens: bigint[] = [];
      const a = await s.acquire(n, "a", 60_000);
      assert.ok(a.acquired);
      tokens.push(a.lease.token);
      assert.deepEqual(await s.putFenced(a.lease, "cp", "1"), { ok: true });
      await admin.flushall();
      assert.equal(await s.read(n), null);
      assert.deepEqual(await s.putFenced(a.lease, "cp", "2"), { ok: false, reason: "fenced" });
      const b = await s.acquire(n, "b", 60_000);
      assert.ok(b.acquired);
      tokens.push(b.lease.token);
      for (let i = 0; i < 3; i++) {
        await srv.restart();
        const next = await waitFor(
          "acquire after restart",
          async () => {
            const r = await s.acquire(n, `c${i}`, 60_000);
            return r.acquired ? r : null;
          },
          { timeoutMs: 10_000, intervalMs: 50 },
        );
        tokens.push(next.lease.token);
        await assert.rejects(s.fencedSet(b.lease, "k", "stale"), isFencedError);
      }
      for (let i = 1; i < tokens.length; i++) {
        assert.ok(tokens[i]! > tokens[i - 1]!, `tokens ${tokens.join(",")}`);
      }
    } finally {
      admin.disconnect();
    }
  });

  it("restart guard: a restart that lost a live lease grants it to nobody until one ttl after the restart", async () => {
    const TTL = 1500;
    const srv = await start();
    const s = track(await openNamed(srv.url, { restartGuard: true }));
    const n = uniqueName("guard");
    // A fresh server is itself inside the guard: nothing granted yet.
    const early = await s.acquire(n, "a", TTL);
    assert.equal(early.acquired, false);
    assert.ok(!early.acquired && early.current === null);
    assert.ok(!early.acquired && early.retryInMs! > 0 && early.retryInMs! <= TTL + 1000);
    const a = await waitFor(
      "acquire once the fresh server is one ttl old",
      async () => {
        const r = await s.acquire(n, "a", TTL);
        return r.acquired ? r : null;
      },
      { timeoutMs: 3 * TTL + 2000, intervalMs: 50 },
    );
    const lastRenewAt = performance.now();
    assert.equal((await s.renew(a.lease, TTL)).renewed, true);
    await srv.restart(); // no persistence: the lease is gone
    const restartedAt = performance.now();
    // The old holder learns at its next renewal that its term is over.
    const lost = await waitFor(
      "the old holder's renew after the restart",
      async () => {
        try {
          return await s.renew(a.lease, TTL);
        } catch {
          return null; // transient while the client reconnects
        }
      },
      { timeoutMs: 5000, intervalMs: 20 },
    );
    assert.deepEqual(lost, { renewed: false, current: null });
    // Nobody gets the lease while the old holder could still trust its last renewal.
    const b = await waitFor(
      "acquire after the restart guard",
      async () => {
        const r = await s.acquire(n, "b", TTL);
        if (!r.acquired) {
          assert.equal(r.current, null);
          assert.ok(r.retryInMs !== undefined && r.retryInMs > 0, JSON.stringify(r));
          return null;
        }
        return r;
      },
      { timeoutMs: 3 * TTL + 2000, intervalMs: 25 },
    );
    const grantedAt = performance.now();
    assert.ok(
      grantedAt - lastRenewAt >= TTL,
      `granted ${(grantedAt - lastRenewAt).toFixed(0)} ms after the old holder's last renewal (ttl ${TTL})`,
    );
    assert.ok(grantedAt - restartedAt >= TTL - 50, `${grantedAt - restartedAt} ms`);
    assert.ok(b.lease.token > a.lease.token);
  });

  it("restart guard: renewMany of leases a restart lost starts each one's guard clock, as renew does", async () => {
    const TTL = 1500;
    const srv = await start();
    const s = track(await openNamed(srv.url, { restartGuard: true }));
    const names = [uniqueName("gm1"), uniqueName("gm2")];
    const leases: LeaseRef[] = [];
    for (const n of names) {
      const a = await waitFor(
        "acquire once the fresh server is one ttl old",
        async () => {
          const r = await s.acquire(n, "a", TTL);
          return r.acquired ? r : null;
        },
        { timeoutMs: 3 * TTL + 2000, intervalMs: 50 },
      );
      leases.push(a.lease);
    }
    await srv.restart(); // no persistence: both leases are gone
    const lost = await waitFor(
      "the old holder's batch after the restart",
      async () => {
        try {
          return await s.renewMany(leases.map((lease) => ({ lease, ttlMs: TTL })));
        } catch {
          return null; // transient while the client reconnects
        }
      },
      { timeoutMs: 5000, intervalMs: 20 },
    );
    assert.deepEqual(lost, [
      { renewed: false, current: null },
      { renewed: false, current: null },
    ]);
    const admin = srv.admin();
    try {
      const run = /run_id:(\w+)/.exec(String(await admin.call("INFO", "server")))?.[1];
      for (const n of names) {
        const boot = await admin.get(`tenure:{${n}}:boot`);
        assert.ok(boot?.startsWith(`${run}:`), `boot key of ${n}: ${boot}`);
      }
      // …so a free lease is still refused until one ttl after the restart.
      const early = await s.acquire(names[0]!, "b", TTL);
      assert.ok(!early.acquired && early.retryInMs !== undefined && early.retryInMs > 0);
    } finally {
      admin.disconnect();
    }
  });

  it("restart guard off (restartGuard=false in the URL): a restarted server grants at once", async () => {
    const srv = await start();
    const s = track(await openRedisStore(`${srv.url}/?restartGuard=false`));
    const n = uniqueName("noguard");
    const a = await s.acquire(n, "a", 60_000);
    assert.ok(a.acquired, "a fresh server grants at once without the guard");
    await srv.restart();
    const b = await waitFor(
      "acquire after restart",
      async () => {
        const r = await s.acquire(n, "b", 60_000);
        return r.acquired ? r : null;
      },
      { timeoutMs: 5000, intervalMs: 25 },
    );
    assert.ok(b.lease.token > a.lease.token);
    await assert.rejects(openRedisStore(`${srv.url}/?restartGuard=maybe`), (e) => {
      assert.ok(isConfigError(e));
      assert.equal(e.field, "restartGuard");
      return true;
    });
  });

  it("hot path: an acquire + release cycle on a server older than the ttl runs 11 O(1) commands and no INFO (MONITOR); after a SAVE the guard still grants", async () => {
    const TTL = 400;
    const srv = await start();
    const s = track(await openNamed(srv.url, { restartGuard: true }));
    const n = uniqueName("hot");
    // Wait until the server is older than the ttl and LASTSAVE (its start) is over a ttl + 1 s ago.
    await waitFor(
      "a server old enough for the LASTSAVE fast path",
      async () => {
        const admin = srv.admin();
        try {
          const [sec] = (await admin.time()) as unknown as [string, string];
          return Number(sec) - (await admin.lastsave()) >= 3 ? true : null;
        } finally {
          admin.disconnect();
        }
      },
      { timeoutMs: 8000, intervalMs: 100 },
    );
    const cycle = async () => {
      const a = await s.acquire(n, "a", TTL);
      assert.ok(a.acquired, a.acquired ? "" : `not acquired (retry in ${a.retryInMs} ms)`);
      assert.equal(await s.release(a.lease), true);
    };
    await cycle(); // loads the scripts (NOSCRIPT + EVAL) outside the watch
    const watch = async (fn: () => Promise<void>) => {
      const conn = srv.admin();
      const mon = await conn.monitor();
      const seen: string[] = [];
      mon.on("monitor", (_t: string, args: string[]) => {
        const cmd = String(args[0]).toLowerCase();
        if (!["ping", "client", "select"].includes(cmd)) seen.push(cmd);
      });
      try {
        await fn();
        // MONITOR lines arrive asynchronously: wait for the cycle's last command.
        await waitFor("the cycle's last PUBLISH in MONITOR", async () =>
          seen.filter((c) => c === "publish").length >= 2 ? true : null,
        );
      } finally {
        mon.disconnect();
        conn.disconnect();
      }
      return seen;
    };
    assert.deepEqual(await watch(cycle), [
      "evalsha",
      "get",
      "time",
      "lastsave",
      "getset",
      "set",
      "publish",
      "evalsha",
      "get",
      "del",
      "publish",
    ]);
    // A SAVE moves LASTSAVE to now: the fast path cannot tell, INFO (uptime) can.
    const admin = srv.admin();
    try {
      await admin.save();
    } finally {
      admin.disconnect();
    }
    const afterSave = await watch(cycle);
    assert.ok(afterSave.includes("info"), afterSave.join(","));
  });

  it("after a SAVE, INFO is asked once per lease and save: the lease's marker answers the next acquire (MONITOR)", async () => {
    const TTL = 2000;
    const srv = await start();
    const s = track(await openNamed(srv.url, { restartGuard: true }));
    const n = uniqueName("marker");
    const admin = srv.admin();
    const serverSec = async () => Number(((await admin.time()) as unknown as [string])[0]);
    try {
      // Old enough by INFO's uptime (≥ ttl + 1 s), then a SAVE moves LASTSAVE to now.
      await waitFor(
        "a server 3 s old",
        async () => (await serverSec()) - (await admin.lastsave()) >= 3,
        {
          timeoutMs: 8000,
          intervalMs: 100,
        },
      );
      await admin.save();
      const saved = await admin.lastsave();
      // The marker is written only once the server clock is past LASTSAVE's second.
      await waitFor("the second after the SAVE", async () => (await serverSec()) > saved, {
        timeoutMs: 3000,
        intervalMs: 20,
      });
      const seen: string[] = [];
      const conn = srv.admin();
      const mon = await conn.monitor();
      mon.on("monitor", (_t: string, args: string[]) => {
        const cmd = String(args[0]).toLowerCase();
        if (!["ping", "client", "select"].includes(cmd)) seen.push(cmd);
      });
      const cycle = async () => {
        const a = await s.acquire(n, "a", TTL);
        assert.ok(a.acquired, a.acquired ? "" : `not acquired (retry in ${a.retryInMs} ms)`);
        assert.equal(await s.release(a.lease), true);
        await waitFor("the cycle's last PUBLISH in MONITOR", () =>
          seen.filter((c) => c === "publish").length >= 2 ? true : null,
        );
        return seen.splice(0);
      };
      try {
        const first = await cycle(); // may load the scripts (NOSCRIPT + EVAL) too
        assert.ok(first.includes("info"), first.join(","));
        const second = await cycle();
        assert.ok((await serverSec()) - (saved + 1) < TTL / 1000, "still inside the guard window");
        assert.deepEqual(second, [
          "evalsha",
          "get",
          "time",
          "lastsave",
          "get",
          "getset",
          "set",
          "publish",
          "evalsha",
          "get",
          "del",
          "publish",
        ]);
      } finally {
        mon.disconnect();
        conn.disconnect();
      }
    } finally {
      admin.disconnect();
    }
  });

  it("restart guard with persistence (AOF): the old run's keys come back, yet a restarted server grants no free lease for one ttl", async () => {
    const TTL = 1000;
    const srv = await start(["--appendonly", "yes", "--appendfsync", "always"]);
    const s = track(await openNamed(srv.url, { restartGuard: true }));
    const n = uniqueName("aof");
    const a = await waitFor(
      "acquire once the server is one ttl old",
      async () => {
        const r = await s.acquire(n, "a", TTL);
        return r.acquired ? r : null;
      },
      { timeoutMs: 3 * TTL + 3000, intervalMs: 50 },
    );
    assert.equal(await s.release(a.lease), true); // the lease is gone before the crash
    await srv.restart(); // SIGKILL; the AOF brings every key back
    const restartedAt = performance.now();
    const admin = srv.admin();
    try {
      assert.equal(await admin.get(`tenure:{${n}}:token`), String(a.lease.token), "AOF replayed");
    } finally {
      admin.disconnect();
    }
    const b = await waitFor(
      "acquire after the restart guard",
      async () => {
        try {
          const r = await s.acquire(n, "b", TTL);
          if (!r.acquired) {
            assert.equal(r.current, null);
            assert.ok(r.retryInMs !== undefined && r.retryInMs > 0, JSON.stringify(r));
            return null;
          }
          return r;
        } catch {
          return null; // transient while the client reconnects
        }
      },
      { timeoutMs: 3 * TTL + 3000, intervalMs: 25 },
    );
    const grantedAt = performance.now();
    assert.ok(grantedAt - restartedAt >= TTL - 50, `${(grantedAt - restartedAt).toFixed(0)} ms`);
    assert.ok(b.lease.token > a.lease.token);
  });

  it("SCRIPT FLUSH: scripts are re-sent after NOSCRIPT", async () => {
    const srv = await start();
    const s = track(await openNamed(srv.url));
    const admin = srv.admin();
    try {
      const n = uniqueName("noscript");
      assert.ok((await s.acquire(n, "a", 5000)).acquired);
      await admin.script("FLUSH");
      assert.equal((await s.read(n))?.holder, "a");
      const exists = (await admin.call("SCRIPT", "EXISTS", SCRIPTS.read.sha)) as number[];
      assert.deepEqual(exists, [1]);
    } finally {
      admin.disconnect();
    }
  });

  it("CLIENT KILL during an in-flight call is a transient connection error", async () => {
    const srv = await start();
    const s = track(await openNamed(srv.url, { maxRetriesPerRequest: 0 }));
    const admin = srv.admin();
    try {
      const n = uniqueName("inflight");
      const a = await s.acquire(n, "a", 10_000);
      assert.ok(a.acquired);
      // Hold the call on the server: scripts are writes, paused until we kill the connection.
      await admin.call("CLIENT", "PAUSE", "10000", "WRITE");
      const p = s.renew(a.lease, 10_000);
      const settled = p.then(
        () => undefined,
        (e: unknown) => e,
      );
      const name = connNames.get(s)!;
      await waitFor("the renew to be blocked on the server", async () =>
        ((await admin.call("CLIENT", "LIST")) as string)
          .split("\n")
          .some((l) => l.includes(` name=${name} `) && /cmd=evalsha/.test(l)),
      );
      assert.equal(await killByName(srv.url, name), 1);
      const e = await settled;
      assert.ok(isStoreError(e), `expected a StoreError, got ${String(e)}`);
      assert.equal(e.transient, true, e.message);
      assert.equal(e.kind, "connection", e.message);
      await admin.call("CLIENT", "UNPAUSE");
      const r = await waitFor(
        "renew after reconnect",
        async () => (await s.renew(a.lease, 10_000)).renewed,
      );
      assert.equal(r, true);
    } finally {
      await admin.call("CLIENT", "UNPAUSE").catch(() => {});
      admin.disconnect();
    }
  });

  it("a server that is down gives transient errors; the store recovers when it is back", async () => {
    const srv = await start();
    const s = track(await openNamed(srv.url));
    const n = uniqueName("down");
    assert.ok((await s.acquire(n, "a", 5000)).acquired);
    await srv.stop();
    const e = await expectStoreError(s.read(n));
    assert.equal(e.transient, true, e.message);
    assert.ok(["connection", "timeout"].includes(e.kind), e.kind);
    await srv.restart();
    const b = await waitFor(
      "acquire after the server is back",
      async () => {
        const r = await s.acquire(n, "b", 5000);
        return r.acquired ? r : null;
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
    assert.equal(b.lease.holder, "b");
  });

  it("a replica answers READONLY: transient `unavailable`", async () => {
    const primary = await start();
    const replica = await start();
    const s = track(await openNamed(replica.url));
    const admin = replica.admin();
    try {
      await admin.call("REPLICAOF", "127.0.0.1", String(primary.port));
      const seen = await waitFor(
        "a READONLY error",
        async () => {
          try {
            await s.acquire(uniqueName("ro"), "a", 5000);
            return null;
          } catch (e) {
            assert.ok(isStoreError(e), String(e));
            assert.equal(e.transient, true, `${e.kind}: ${e.message}`);
            return e.code === "READONLY" ? e : null;
          }
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      assert.equal(seen.kind, "unavailable");
    } finally {
      await admin.call("REPLICAOF", "NO", "ONE").catch(() => {});
      admin.disconnect();
    }
  });

  it("a wrong or missing password is a fatal auth error that never shows the password", async () => {
    const secret = "s3cret-Right-Pw";
    const srv = await start(["--requirepass", secret]);
    const logged: string[] = [];
    const logger: Logger = {
      debug: (m, f) => logged.push(m + JSON.stringify(f ?? {})),
      info: (m, f) => logged.push(m + JSON.stringify(f ?? {})),
      warn: (m, f) => logged.push(m + JSON.stringify(f ?? {})),
      error: (m, f) => logged.push(m + JSON.stringify(f ?? {})),
    };
    const wrong = "Wr0ng-Pa55word";
    const e1 = await expectStoreError(
      openRedisStore(`redis://:${wrong}@127.0.0.1:${srv.port}`, { logger }),
    );
    assert.equal(e1.kind, "auth", e1.message);
    assert.equal(e1.transient, false);
    assert.ok(!e1.message.includes(wrong), e1.message);
    assert.ok(!JSON.stringify(logged).includes(wrong));
    assert.ok(!String(e1.stack).includes(wrong));
    const e2 = await expectStoreError(openRedisStore(srv.url));
    assert.equal(e2.kind, "auth", e2.message);
    // the right password works, and errors on that store never show it either
    const s = track(
      await openRedisStore(`redis://:${secret}@127.0.0.1:${srv.port}`, {
        logger,
        commandTimeoutMs: 1000,
        restartGuard: false,
      }),
    );
    assert.ok((await s.acquire(uniqueName("auth"), "a", 5000)).acquired);
    const admin = srv.admin(secret);
    try {
      await admin.call("CONFIG", "SET", "requirepass", "changed-Pw-9");
      await admin.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
      const e3 = await waitFor("auth failure after the password changed", async () => {
        try {
          await s.read("x");
          return null;
        } catch (e) {
          return isStoreError(e) && e.kind === "auth" ? e : null;
        }
      });
      assert.ok(!e3.message.includes(secret), e3.message);
      assert.ok(!JSON.stringify(logged).includes(secret));
    } finally {
      admin.disconnect();
    }
  });

  it("Redis Cluster: hash-tagged scripts, list() over every master, watch, CROSSSLOT is config", async (t) => {
    if (spawnSync("redis-cli", ["--version"], { stdio: "ignore" }).status !== 0) {
      t.skip("redis-cli is missing (apt-get install redis-tools)");
      return;
    }
    const nodes = await Promise.all(
      [0, 1, 2].map(() =>
        start(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]),
      ),
    );
    const create = spawnSync(
      "redis-cli",
      ["--cluster", "create", ...nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-yes"],
      { encoding: "utf8", timeout: 30_000 },
    );
    assert.equal(create.status, 0, create.stderr);
    const admins = nodes.map((n) => n.admin());
    try {
      await waitFor(
        "cluster_state:ok on every node",
        async () => {
          const infos = await Promise.all(admins.map((a) => a.call("CLUSTER", "INFO")));
          return infos.every((i) => String(i).includes("cluster_state:ok"));
        },
        { timeoutMs: 15_000, intervalMs: 100 },
      );
    } finally {
      for (const a of admins) a.disconnect();
    }
    const cluster = new Cluster(
      nodes.map((n) => ({ host: "127.0.0.1", port: n.port })),
      { redisOptions: { maxRetriesPerRequest: 1, commandTimeout: 3000 } },
    );
    cluster.on("error", () => {});
    const s = new RedisStore(cluster, { restartGuard: false }); // the nodes are seconds old
    try {
      const names = Array.from({ length: 12 }, (_, i) => uniqueName(`cl${i}`));
      const leases = [];
      for (const n of names) {
        const r = await s.acquire(n, "h", 10_000);
        assert.ok(r.acquired);
        leases.push(r.lease);
      }
      // the names spread over the masters, and list() finds them all
      const slots = new Set(
        await Promise.all(names.map((n) => cluster.call("CLUSTER", "KEYSLOT", `{${n}}`))),
      );
      assert.ok(slots.size > 1);
      const listed = new Set((await s.list()).map((l) => l.name));
      for (const n of names) assert.ok(listed.has(n), `list() misses ${n}`);
      const events: LeaseEvent[] = [];
      const un = await s.watch(names[1]!, (e) => events.push(e));
      assert.equal(await s.release(leases[1]!), true);
      await waitFor(
        "released over cluster pub/sub",
        () => events.some((e) => e.type === "released"),
        {
          timeoutMs: 3000,
        },
      );
      await un();
      // renewMany splits a batch per hash slot: every lease renewed, the released one lost.
      for (const n of names) {
        const key = `tenure:{${n}}:lease`;
        assert.equal(hashSlot(key), Number(await cluster.call("CLUSTER", "KEYSLOT", key)), key);
      }
      const many = await s.renewMany(leases.map((lease) => ({ lease, ttlMs: 10_000 })));
      assert.deepEqual(
        many.map((r) => r.renewed),
        leases.map((_, i) => i !== 1),
      );
      await s.fencedSet(leases[0]!, s.taggedKey(names[0]!, "x"), "v");
      const e = await expectStoreError(s.fencedSet(leases[0]!, `elsewhere-${names[5]}`, "v"));
      assert.equal(e.kind, "config", e.message);
      assert.equal(e.code, "CROSSSLOT");
      assert.deepEqual(await s.putFenced(leases[2]!, "k", "v"), { ok: true });
    } finally {
      await s.close();
      cluster.disconnect();
    }
  });

  it("an unreachable server does not fail open(); calls fail transiently and fast", async () => {
    const srv = await start();
    const url = srv.url;
    await srv.dispose();
    const t0 = Date.now();
    const s = track(await openRedisStore(url, { commandTimeoutMs: 1000 }));
    const e = await expectStoreError(s.read("x"));
    assert.equal(e.transient, true, e.message);
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
  });
});

// Compile-time: the narrow client type fits ioredis' Cluster as well as Redis.
type ClusterFits = Cluster extends RedisClientLike ? true : false;
const clusterFits: ClusterFits = true;
void clusterFits;

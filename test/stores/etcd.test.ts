import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import { createElector } from "../../src/elector/index.js";
import { isConfigError, isStoreError, type StoreError } from "../../src/errors.js";
import { openStore } from "../../src/open.js";
import type { LeaseEvent, LeaseStore } from "../../src/store/types.js";
import {
  classifyEtcdError,
  EtcdStore,
  openEtcdStore,
  parseEtcdUrl,
  ttlSeconds,
} from "../../src/stores/etcd/index.js";
import { monotonicMs, SessionLease, staleAfterMs } from "../../src/stores/etcd/session.js";
import { describeLeaseStore } from "../helpers/conformance.js";
import {
  ClusterMember,
  etcdAnswers,
  etcdPorts,
  hasEtcdBinary,
  ThrowawayEtcd,
} from "../helpers/etcd.js";
import { FaultProxy } from "../helpers/fault-proxy.js";
import { REPO_ROOT, requireService, SERVICES } from "../helpers/services.js";
import { uniqueName, waitFor, within } from "../helpers/wait.js";

const HOW =
  "start it with `bash scripts/services.sh start` (needs etcd: `apt-get install -y etcd-server`) or set TENURE_TEST_ETCD_URL";
const single = requireService("etcd", await etcdAnswers(SERVICES.etcd), HOW);
const clusterOk = requireService(
  "etcd 3-member cluster",
  (await etcdAnswers(SERVICES.etcdCluster)) &&
    ClusterMember.all(process.env.TENURE_TEST_ETCD_DIR ?? envDir()).length === 3,
  `${HOW.replace("TENURE_TEST_ETCD_URL", "TENURE_TEST_ETCD_CLUSTER_URL and TENURE_TEST_ETCD_DIR")}`,
);
const binary = requireService(
  "etcd (binary, for throwaway members)",
  hasEtcdBinary(),
  "install it with `apt-get install -y etcd-server`",
);

/** TENURE_TEST_ETCD_DIR from .services/env (services.ts only exposes the URLs). */
function envDir(): string | undefined {
  return SERVICES.etcdCluster ? join(REPO_ROOT, ".services", "etcd") : undefined;
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

// ── Conformance against the shared single member ───────────────────────────
describeLeaseStore("etcd", () => openEtcdStore(SERVICES.etcd ?? "etcd://127.0.0.1:1"), {
  ...single,
  // Counted: every KV and Lease request the store sends (unary calls, and each
  // keep-alive message written on the shared stream). One batch is a read
  // transaction and one keep-alive, in flight at once: one round trip.
  counted: {
    open: async () => {
      const client = new Etcd3({
        hosts: etcdPorts(SERVICES.etcd!).map((p) => `http://127.0.0.1:${p}`),
      });
      let n = 0;
      const count = <T extends object>(
        target: T,
        wrapResult?: (prop: string, r: unknown) => unknown,
      ): T =>
        new Proxy(target, {
          get(t, prop) {
            const v = Reflect.get(t, prop);
            if (typeof v !== "function") return v;
            return (...args: unknown[]) => {
              if (prop !== "leaseKeepAlive") n++;
              const r = (v as (...a: unknown[]) => unknown).apply(t, args);
              return wrapResult ? wrapResult(String(prop), r) : r;
            };
          },
        });
      const leaseClient = count(client.leaseClient, (prop, r) =>
        prop === "leaseKeepAlive"
          ? (r as Promise<{ write(m: unknown): unknown }>).then(
              (stream) =>
                new Proxy(stream, {
                  get(t, p) {
                    const v = Reflect.get(t, p);
                    if (p === "write") {
                      return (m: unknown) => {
                        n++;
                        return (v as (m: unknown) => unknown).call(t, m);
                      };
                    }
                    return typeof v === "function" ? v.bind(t) : v;
                  },
                }),
            )
          : r,
      );
      const store = new EtcdStore(
        {
          kv: count(client.kv),
          leaseClient,
          watch: client.watch.bind(client),
          close: client.close.bind(client),
        } as unknown as ConstructorParameters<typeof EtcdStore>[0],
        { ownsClient: true },
      );
      return { store, requests: () => n };
    },
    perBatch: 2,
    // acquireMany of 1 000: ten transactions of 100 items and one keep-alive, all at once.
    perAcquireBatch: 11,
    // releaseMany of 1 000: ten transactions of 100 items, all at once.
    perReleaseBatch: 10,
  },
});

// ── …and through a loopback TCP proxy, so a store's connections can be reset ─
const proxies = new Map<LeaseStore, FaultProxy>();
describeLeaseStore(
  "etcd (through a TCP proxy: killed connections)",
  async () => {
    const proxy = new FaultProxy("127.0.0.1", etcdPorts(SERVICES.etcd!)[0]!);
    const port = await proxy.start();
    const s = await openEtcdStore(`etcd://127.0.0.1:${port}`);
    proxies.set(s, proxy);
    return s;
  },
  {
    ...single,
    concurrency: 4,
    killConnection: async (s) => {
      const proxy = proxies.get(s)!;
      return proxy.resetAll();
    },
    proxied: {
      target: { host: "127.0.0.1", port: etcdPorts(SERVICES.etcd ?? "etcd://127.0.0.1:1")[0]! },
      open: (port) => openEtcdStore(`etcd://127.0.0.1:${port}`),
      inFlight: "transient",
    },
  },
);
after(async () => {
  await Promise.allSettled([...proxies.values()].map((p) => p.stop()));
});

// ── Conformance against a throwaway member restarted with the same data ─────
let throwaway: ThrowawayEtcd | undefined;
const throwawayUrl = async () => {
  throwaway ??= await ThrowawayEtcd.start();
  return throwaway.url;
};
describeLeaseStore(
  "etcd (throwaway member, restart keeps data)",
  async () => openEtcdStore(await throwawayUrl()),
  {
    ...binary,
    concurrency: 4,
    restartServer: async () => {
      await throwaway!.restart();
    },
  },
);
after(async () => {
  await throwaway?.dispose();
});

// ── etcd specifics on the shared member ────────────────────────────────────
describe("etcd store", { ...single }, () => {
  let store: EtcdStore;
  let raw: Etcd3;
  before(async () => {
    store = await openEtcdStore(SERVICES.etcd!);
    raw = new Etcd3({ hosts: etcdPorts(SERVICES.etcd!).map((p) => `http://127.0.0.1:${p}`) });
  });
  after(async () => {
    await store?.close();
    raw?.close();
  });

  it("the lease key holds the holder, is attached to an etcd lease, and its create revision is the token", async () => {
    const n = uniqueName("layout");
    const a = await store.acquire(n, "host:1", 1500);
    assert.ok(a.acquired);
    const r = await raw.kv.range({ key: Buffer.from(`tenure/lease/${n}`) });
    const kv = r.kvs[0];
    assert.ok(kv);
    assert.equal(kv.value.toString(), "host:1");
    assert.equal(BigInt(kv.create_revision), a.lease.token);
    const ttl = await raw.leaseClient.leaseTimeToLive({ ID: kv.lease });
    assert.equal(ttl.grantedTTL, "2", "1500 ms rounds up to 2 s");
    assert.equal(ttlSeconds(1), 1);
    assert.equal(ttlSeconds(1000), 1);
    assert.equal(ttlSeconds(1001), 2);
  });

  it("renew with the same TTL keeps the etcd lease; a different TTL moves the key to that TTL's session lease, same token", async () => {
    const n = uniqueName("relase");
    const key = Buffer.from(`tenure/lease/${n}`);
    const a = await store.acquire(n, "a", 3000);
    assert.ok(a.acquired);
    const l1 = (await raw.kv.range({ key })).kvs[0]!.lease;
    assert.deepEqual(await store.renew(a.lease, 3000), { renewed: true });
    assert.equal((await raw.kv.range({ key })).kvs[0]!.lease, l1);
    assert.deepEqual(await store.renew(a.lease, 9000), { renewed: true });
    const kv = (await raw.kv.range({ key })).kvs[0]!;
    assert.notEqual(kv.lease, l1);
    assert.equal(BigInt(kv.create_revision), a.lease.token);
    assert.equal((await raw.leaseClient.leaseTimeToLive({ ID: kv.lease })).grantedTTL, "9");
    // the 3 s session lease is not revoked: it carries the store's other 3 s terms
    assert.ok(Number((await raw.leaseClient.leaseTimeToLive({ ID: l1 })).TTL) > 0);
    const info = await store.read(n);
    assert.ok(info && info.expiresInMs > 7000 && info.expiresInMs <= 9000, `${info?.expiresInMs}`);
    // concurrent renews of one term with new TTLs: both report renewed, the token stays
    const both = await Promise.all([store.renew(a.lease, 4000), store.renew(a.lease, 4000)]);
    assert.deepEqual(both, [{ renewed: true }, { renewed: true }]);
    assert.equal((await store.read(n))?.token, a.lease.token);
  });

  it("same holder re-acquiring its live key keeps the term: the same create revision, on the same session lease", async () => {
    const n = uniqueName("again");
    const key = Buffer.from(`tenure/lease/${n}`);
    const a1 = await store.acquire(n, "a", 5000);
    assert.ok(a1.acquired);
    const k1 = (await raw.kv.range({ key })).kvs[0]!;
    const a2 = await store.acquire(n, "a", 5000);
    assert.ok(a2.acquired);
    assert.deepEqual(a2.lease, a1.lease);
    const k2 = (await raw.kv.range({ key })).kvs[0]!;
    assert.equal(k2.create_revision, k1.create_revision);
    assert.equal(k2.mod_revision, k1.mod_revision, "the key was not written again");
    assert.equal(k2.lease, k1.lease);
    assert.equal((await store.renew(a1.lease, 5000)).renewed, true);
  });

  it("terms of one TTL share one session lease: renewing 150 terms costs a few calls, not 150", async () => {
    const client = new Etcd3({ hosts: `http://127.0.0.1:${etcdPorts(SERVICES.etcd!)[0]}` });
    const calls = { txn: 0, range: 0, keepAlive: 0, grant: 0 };
    const count =
      <A extends unknown[], R>(k: keyof typeof calls, f: (...a: A) => R) =>
      (...a: A): R => {
        calls[k]++;
        return f(...a);
      };
    client.kv.txn = count("txn", client.kv.txn.bind(client.kv));
    client.kv.range = count("range", client.kv.range.bind(client.kv));
    client.leaseClient.leaseKeepAlive = count(
      "keepAlive",
      client.leaseClient.leaseKeepAlive.bind(client.leaseClient),
    );
    client.leaseClient.leaseGrant = count(
      "grant",
      client.leaseClient.leaseGrant.bind(client.leaseClient),
    );
    const s = new EtcdStore(client, { prefix: "share/" });
    try {
      const n = uniqueName("share");
      const terms = await Promise.all(
        Array.from({ length: 150 }, (_, i) => s.acquire(`${n}-${i}`, "a", 5000)),
      );
      const leases = terms.map((t) => (t.acquired ? t.lease : assert.fail("not acquired")));
      assert.equal(calls.grant, 1, "one session lease for every 5 s term");
      const ids = new Set(
        await Promise.all(
          leases.map(
            async (l) =>
              (await raw.kv.range({ key: Buffer.from(`share/lease/${l.name}`) })).kvs[0]!.lease,
          ),
        ),
      );
      assert.equal(ids.size, 1);
      const before = { ...calls };
      const renewed = await Promise.all(leases.map((l) => s.renew(l, 5000)));
      assert.ok(renewed.every((r) => r.renewed));
      const reads = calls.txn + calls.range - before.txn - before.range;
      assert.ok(reads <= 4, `${reads} read calls for 150 renewals (batches of 100)`);
      assert.ok(
        calls.keepAlive - before.keepAlive <= 2,
        `${calls.keepAlive - before.keepAlive} keep-alives`,
      );
      for (const l of leases) await s.release(l);
    } finally {
      await s.close();
      client.close();
    }
  });

  it("a grant stuck on one member does not hold later acquires: after a quarter ttl a new grant goes out", async () => {
    const client = new Etcd3({ hosts: `http://127.0.0.1:${etcdPorts(SERVICES.etcd!)[0]}` });
    const realGrant = client.leaseClient.leaseGrant.bind(client.leaseClient);
    let grants = 0;
    let unstick: (e: Error) => void = () => {};
    client.leaseClient.leaseGrant = ((...a: Parameters<typeof realGrant>) => {
      // the first grant hangs, as on a member that accepted the call and went away
      if (++grants === 1) return new Promise<never>((_, reject) => (unstick = reject));
      return realGrant(...a);
    }) as typeof realGrant;
    const s = new EtcdStore(client, { prefix: "stuck-grant/" });
    try {
      const n = uniqueName("stuck");
      const first = s.acquire(n, "a", 1000).then(
        (r) => r,
        (e: unknown) => e,
      );
      const startedAt = performance.now();
      // the grant is stale a quarter ttl (250 ms) after it was sent
      await waitFor("a quarter ttl to pass", () => performance.now() - startedAt >= 260, {
        timeoutMs: 2000,
      });
      const second = await s.acquire(n, "b", 1000);
      assert.equal(grants, 2, "one more grant, not one per caller");
      assert.ok(second.acquired, "the second acquire got its own session");
      unstick(new Error("grant abandoned"));
      assert.ok((await first) instanceof Error, "the stuck acquire fails with its grant");
      await s.release(second.lease);
    } finally {
      unstick(new Error("grant abandoned"));
      await s.close();
      client.close();
    }
  });

  it("acquire + release is one transaction each on the session lease; keep-alives share one stream", async () => {
    const client = new Etcd3({ hosts: `http://127.0.0.1:${etcdPorts(SERVICES.etcd!)[0]}` });
    const calls = { txn: 0, range: 0, streams: 0, keepAlives: 0, grant: 0, ttl: 0 };
    const realKa = client.leaseClient.leaseKeepAlive.bind(client.leaseClient);
    client.leaseClient.leaseKeepAlive = (async (...a: Parameters<typeof realKa>) => {
      calls.streams++;
      const st = await realKa(...a);
      const write = st.write.bind(st);
      st.write = ((...w: Parameters<typeof write>) => {
        calls.keepAlives++;
        return write(...w);
      }) as typeof st.write;
      return st;
    }) as typeof realKa;
    const count =
      <A extends unknown[], R>(k: keyof typeof calls, f: (...a: A) => R) =>
      (...a: A): R => {
        calls[k]++;
        return f(...a);
      };
    client.kv.txn = count("txn", client.kv.txn.bind(client.kv));
    client.kv.range = count("range", client.kv.range.bind(client.kv));
    client.leaseClient.leaseGrant = count(
      "grant",
      client.leaseClient.leaseGrant.bind(client.leaseClient),
    );
    client.leaseClient.leaseTimeToLive = count(
      "ttl",
      client.leaseClient.leaseTimeToLive.bind(client.leaseClient),
    );
    const s = new EtcdStore(client, { prefix: "hot/" });
    const other = await openEtcdStore(SERVICES.etcd!, { prefix: "hot/" });
    try {
      const n = uniqueName("hot");
      for (let i = 0; i < 20; i++) {
        const a = await s.acquire(n, "a", 5000);
        assert.ok(a.acquired);
        assert.equal(await s.release(a.lease), true);
      }
      assert.deepEqual(
        calls,
        // the first acquire's grant was sent after it began: it needs no keep-alive
        { txn: 40, range: 0, streams: 1, keepAlives: 19, grant: 1, ttl: 0 },
        "per cycle: 2 transactions + 1 keep-alive message on one stream",
      );
      // A held lock: failed tries cost one transaction each; the holder's
      // remaining time is asked once and then aged (never overstated).
      const held = await other.acquire(n, "b", 5000);
      assert.ok(held.acquired);
      const before = { ...calls };
      const seen: number[] = [];
      for (let i = 0; i < 10; i++) {
        const r = await s.acquire(n, "a", 5000);
        assert.ok(!r.acquired && r.current?.holder === "b");
        seen.push(r.current.expiresInMs);
      }
      assert.equal(calls.txn - before.txn, 10);
      assert.equal(
        calls.ttl - before.ttl,
        1,
        "one TTL request for 10 failed tries within a second",
      );
      assert.ok(seen[0]! > 3000 && seen[0]! <= 5000, `${seen[0]}`);
      for (let i = 1; i < seen.length; i++) {
        assert.ok(seen[i]! <= seen[i - 1]! && seen[i]! < seen[0]!, `aged: ${seen.join(",")}`);
      }
      const truth = await other.read(n);
      assert.ok(
        seen[seen.length - 1]! <= truth!.expiresInMs + 1000,
        "a lower bound (whole seconds)",
      );
      await other.release(held.lease);
    } finally {
      await s.close();
      await other.close();
      client.close();
    }
  });

  it("an idle session past its TTL is replaced by a new grant, not used (no LEASE_NOT_FOUND round trip)", async () => {
    const client = new Etcd3({ hosts: `http://127.0.0.1:${etcdPorts(SERVICES.etcd!)[0]}` });
    const calls = { txn: 0, grant: 0 };
    const realTxn = client.kv.txn.bind(client.kv);
    client.kv.txn = ((...a: Parameters<typeof realTxn>) => {
      calls.txn++;
      return realTxn(...a);
    }) as typeof realTxn;
    const realGrant = client.leaseClient.leaseGrant.bind(client.leaseClient);
    client.leaseClient.leaseGrant = ((...a: Parameters<typeof realGrant>) => {
      calls.grant++;
      return realGrant(...a);
    }) as typeof realGrant;
    const s = new EtcdStore(client, { prefix: "idle/" });
    try {
      const n = uniqueName("idle");
      const a = await s.acquire(`${n}-a`, "a", 1000);
      assert.ok(a.acquired);
      const idleFrom = performance.now();
      await waitFor(
        "the 1 s session to go idle for its TTL",
        () => performance.now() - idleFrom >= 1100,
        {
          timeoutMs: 3000,
        },
      );
      const before = { ...calls };
      const b = await s.acquire(`${n}-b`, "a", 1000);
      assert.ok(b.acquired);
      assert.deepEqual(
        { txn: calls.txn - before.txn, grant: calls.grant - before.grant },
        { txn: 1, grant: 1 },
      );
      await s.release(b.lease);
    } finally {
      await s.close();
      client.close();
    }
  });

  it("a keep-alive stream that stops answering is left after a quarter ttl: the keep-alive goes again on a new stream, which the next one uses", async () => {
    const client = new Etcd3({ hosts: `http://127.0.0.1:${etcdPorts(SERVICES.etcd!)[0]}` });
    const realKa = client.leaseClient.leaseKeepAlive.bind(client.leaseClient);
    /** Keep-alives written on each stream opened, in order. */
    const writes: number[] = [];
    client.leaseClient.leaseKeepAlive = (async (...a: Parameters<typeof realKa>) => {
      const st = await realKa(...a);
      const i = writes.push(0) - 1;
      const realWrite = st.write.bind(st);
      // the first stream swallows what is written, as on a member that went away
      st.write = ((...w: Parameters<typeof realWrite>) => {
        writes[i]!++;
        return i === 0 ? true : realWrite(...w);
      }) as typeof st.write;
      return st;
    }) as typeof realKa;
    const s = new EtcdStore(client, { prefix: "stuck-ka/", callTimeoutMs: 2000 });
    try {
      const n = uniqueName("stuckka");
      // the session's grant serves the first acquire; the next needs a keep-alive
      const zero = await s.acquire(`${n}-0`, "a", 1000);
      assert.ok(zero.acquired);
      const startedAt = performance.now();
      // its keep-alive goes on the mute stream; stale a quarter ttl (250 ms) after it was
      // sent, it is sent again on a new stream, whose answer counts
      const first = await s.acquire(n, "a", 1000);
      const tookMs = performance.now() - startedAt;
      assert.ok(first.acquired, "the keep-alive sent again on a new stream was answered");
      assert.equal(writes[0], 1);
      assert.ok(writes.length >= 2, "a new stream was opened");
      assert.ok(tookMs >= 245, `answered after ${tookMs} ms: before the first stream was stale`);
      const newest = writes.length - 1;
      const before = writes[newest]!;
      const second = await s.acquire(`${n}-2`, "a", 1000);
      assert.ok(second.acquired);
      assert.equal(writes[0], 1, "the mute stream is left");
      assert.ok(writes[newest]! > before, "the next keep-alive went out on the new stream");
      await s.release(second.lease);
      await s.release(first.lease);
      await s.release(zero.lease);
    } finally {
      await s.close();
      client.close();
    }
  });

  it("a renewal is one round trip: under +150 ms each way it answers in one, and a ttl-1000 leader keeps its term", async () => {
    const proxy = new FaultProxy("127.0.0.1", etcdPorts(SERVICES.etcd!)[0]!);
    const port = await proxy.start();
    const s = await openEtcdStore(`etcd://127.0.0.1:${port}`, { prefix: "rtt/" });
    const n = uniqueName("rtt");
    const elector = createElector({ store: s, name: `${n}-e`, ttlMs: 1000, retryMs: 200 });
    try {
      const a = await s.acquire(n, "a", 5000);
      assert.ok(a.acquired);
      proxy.latency(150);
      // A round trip is now ≥ 300 ms; the read and the keep-alive one after
      // the other took ≥ 600 ms. The fastest of three tells, whatever the load.
      const took: number[] = [];
      for (let i = 0; i < 3; i++) {
        const t = performance.now();
        assert.deepEqual(await s.renew(a.lease, 5000), { renewed: true });
        took.push(performance.now() - t);
      }
      assert.ok(
        Math.min(...took) >= 300 && Math.min(...took) < 450,
        `renewals took ${took.map((x) => x.toFixed(0)).join(", ")} ms (one round trip: 300)`,
      );
      // A leader renews every ttl/3 and trusts ttl − 100 ms from each
      // renewal's send: a renewal begun 333 ms in has 567 ms, which one round
      // trip fits and two do not.
      proxy.heal();
      const demoted: string[] = [];
      elector.on("demoted", (d) => demoted.push(d.reason));
      await elector.start();
      await waitFor("elected", () => elector.isLeader(), { timeoutMs: 3000 });
      proxy.latency(150);
      const from = elector.stats().renewals;
      await waitFor(
        "6 renewals (or a demotion) under latency",
        () => demoted.length > 0 || elector.stats().renewals - from >= 6,
        { timeoutMs: 4000 },
      );
      assert.deepEqual(demoted, [], "the leader kept its term under +150 ms each way");
      assert.ok(elector.isLeader());
      proxy.heal();
      await s.release(a.lease);
    } finally {
      proxy.heal();
      await elector.stop();
      await s.close();
      await proxy.stop();
    }
  });

  it("a renewal whose read saw the key but whose keep-alive (sent beside it) finds the session gone is not renewed", async () => {
    // The server applies the read first, then the session expires (here:
    // revoked), then the keep-alive: only the keep-alive's TTL 0 tells.
    const client = new Etcd3({ hosts: `http://127.0.0.1:${etcdPorts(SERVICES.etcd!)[0]}` });
    let readDone: () => void = () => {};
    let armed = false;
    const realRange = client.kv.range.bind(client.kv);
    client.kv.range = (async (...a: Parameters<typeof realRange>) => {
      const r = await realRange(...a);
      if (armed) readDone();
      return r;
    }) as typeof realRange;
    const realKa = client.leaseClient.leaseKeepAlive.bind(client.leaseClient);
    client.leaseClient.leaseKeepAlive = (async (...a: Parameters<typeof realKa>) => {
      const st = await realKa(...a);
      const write = st.write.bind(st);
      st.write = ((req: { ID: string }) => {
        if (!armed) return write(req);
        const read = new Promise<void>((r) => {
          readDone = r;
        });
        void read.then(() => raw.leaseClient.leaseRevoke({ ID: req.ID })).then(() => write(req));
        return true;
      }) as typeof st.write;
      return st;
    }) as typeof realKa;
    const s = new EtcdStore(client, { prefix: "ka-after-read/" });
    try {
      const n = uniqueName("karead");
      const a = await s.acquire(n, "a", 5000);
      assert.ok(a.acquired);
      armed = true;
      assert.deepEqual(await s.renew(a.lease, 5000), { renewed: false, current: null });
    } finally {
      await s.close();
      client.close();
    }
  });

  it("a term nobody renews or releases ends one ttl after its last renewal, while its session lives on for the others", async () => {
    const s = await openEtcdStore(SERVICES.etcd!);
    const observer = await openEtcdStore(SERVICES.etcd!);
    try {
      const n = uniqueName("abandon");
      const x = await s.acquire(`${n}-x`, "a", 1500);
      const t0 = performance.now();
      const y = await s.acquire(`${n}-y`, "a", 1500);
      assert.ok(x.acquired && y.acquired);
      // keep y (and so the shared session) alive; leave x alone
      let lastRenew = performance.now();
      const gone = await waitFor(
        "the abandoned term's key to be deleted",
        async () => {
          if (performance.now() - lastRenew > 300) {
            assert.equal((await s.renew(y.lease, 1500)).renewed, true);
            lastRenew = performance.now();
          }
          return (await observer.read(`${n}-x`)) === null ? performance.now() - t0 : null;
        },
        { timeoutMs: 6000, intervalMs: 50 },
      );
      assert.ok(gone >= 1500, `ended after ${gone.toFixed(0)} ms, before its ttl`);
      assert.equal((await observer.read(`${n}-y`))?.token, y.lease.token);
      assert.equal((await s.renew(x.lease, 1500)).renewed, false);
      const b = await observer.acquire(`${n}-x`, "b", 1500);
      assert.ok(b.acquired && b.lease.token > x.lease.token);
    } finally {
      await s.close();
      await observer.close();
    }
  });

  it("a lost session lease (revoked) ends its terms; the next acquire grants a new one", async () => {
    const n = uniqueName("lost");
    const key = Buffer.from(`tenure/lease/${n}`);
    const s = await openEtcdStore(SERVICES.etcd!);
    try {
      const a = await s.acquire(n, "a", 7000);
      assert.ok(a.acquired);
      const l1 = (await raw.kv.range({ key })).kvs[0]!.lease;
      await raw.leaseClient.leaseRevoke({ ID: l1 });
      assert.deepEqual(await s.renew(a.lease, 7000), { renewed: false, current: null });
      const b = await s.acquire(n, "a", 7000);
      assert.ok(b.acquired && b.lease.token > a.lease.token);
      const l2 = (await raw.kv.range({ key })).kvs[0]!.lease;
      assert.notEqual(l2, l1);
      assert.deepEqual(await s.renew(b.lease, 7000), { renewed: true });
    } finally {
      await s.close();
    }
  });

  it("a lease key without an etcd lease (not Tenure's) is a fatal schema error", async () => {
    const n = uniqueName("schema");
    await raw.put(`tenure/lease/${n}`).value("someone");
    for (const call of [() => store.read(n), () => store.acquire(n, "a", 1000)]) {
      const e = await expectStoreError(call());
      assert.equal(e.kind, "schema", e.message);
      assert.equal(e.transient, false);
    }
    await raw.delete().key(`tenure/lease/${n}`);
  });

  it("watch reports acquired, changed (re-lease) and released; a put names its term's token", async () => {
    const n = uniqueName("watch");
    const events: LeaseEvent[] = [];
    const unwatch = await store.watch(n, (e) => events.push(e));
    try {
      const a = await store.acquire(n, "a", 2000);
      assert.ok(a.acquired);
      await store.renew(a.lease, 4000);
      await store.release(a.lease);
      await waitFor("three events", () => events.length >= 3, { timeoutMs: 3000 });
      assert.deepEqual(
        events.map((e) => [e.type, e.token]),
        [
          ["acquired", a.lease.token],
          ["changed", a.lease.token],
          ["released", undefined],
        ],
      );
    } finally {
      await unwatch();
    }
  });

  it("a watch survives its connection being reset and still reports the release", async () => {
    const proxy = new FaultProxy("127.0.0.1", etcdPorts(SERVICES.etcd!)[0]!);
    const port = await proxy.start();
    const watcher = await openEtcdStore(`etcd://127.0.0.1:${port}`);
    try {
      const n = uniqueName("wreset");
      const events: LeaseEvent["type"][] = [];
      await watcher.watch(n, (e) => events.push(e.type));
      const a = await store.acquire(n, "a", 5000);
      assert.ok(a.acquired);
      await waitFor("acquired event", () => events.includes("acquired"), { timeoutMs: 3000 });
      proxy.resetAll();
      await store.release(a.lease);
      await waitFor("released event after the reset", () => events.includes("released"), {
        timeoutMs: 5000,
      });
    } finally {
      await watcher.close();
      await proxy.stop();
    }
  });

  it("putFenced stores value and token under the data prefix; a prefix option separates stores", async () => {
    const n = uniqueName("data");
    const a = await store.acquire(n, "a", 5000);
    assert.ok(a.acquired);
    assert.deepEqual(await store.putFenced(a.lease, "cp/x", "v"), { ok: true });
    assert.equal((await raw.get(`tenure/data/${n}!cp/x`).string()) ?? "", "v");
    assert.equal(await raw.get(`tenure/fence/${n}!cp/x`).string(), String(a.lease.token));
    const other = await openEtcdStore(`${SERVICES.etcd}?prefix=app2/`);
    try {
      assert.equal(await other.read(n), null);
      assert.equal(await other.getFenced(n, "cp/x"), null);
      const b = await other.acquire(n, "b", 5000);
      assert.ok(b.acquired);
      assert.ok((await other.list()).every((l) => l.name !== n || l.holder === "b"));
    } finally {
      await other.close();
    }
  });

  it("an older acquire of the same holder never ends the term a newer acquire started", async () => {
    const client = new Etcd3({ hosts: `http://127.0.0.1:${etcdPorts(SERVICES.etcd!)[0]}` });
    // Hold the first acquire's transaction until the second acquire is done:
    // the first (an acquire its caller gave up on) then finds the second's term.
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    let txns = 0;
    const txn = client.kv.txn.bind(client.kv);
    client.kv.txn = async (...args: Parameters<typeof txn>) => {
      if (++txns === 1) await held;
      return txn(...args);
    };
    const s = new EtcdStore(client, { prefix: "serial/" });
    try {
      const n = uniqueName("serial");
      const older = s.acquire(n, "a", 5000);
      const newer = await s.acquire(n, "a", 5000);
      assert.ok(newer.acquired);
      release();
      const late = await older;
      // The older acquire answers the newer one's term: it goes on, nothing is taken over.
      assert.ok(late.acquired, "the older acquire answers the live term of its holder");
      assert.deepEqual(late.lease, newer.lease);
      assert.equal((await s.renew(newer.lease, 5000)).renewed, true);
      assert.equal((await s.read(n))?.token, newer.lease.token);
      // Once released, the holder's next acquire starts a new term.
      assert.ok(await s.release(newer.lease));
      const again = await s.acquire(n, "a", 5000);
      assert.ok(again.acquired && again.lease.token > newer.lease.token);
    } finally {
      await s.close();
      client.close();
    }
  });

  it("an EtcdStore on your own client leaves the client open on close; openStore dispatches etcd://", async () => {
    const client = new Etcd3({ hosts: `http://127.0.0.1:${etcdPorts(SERVICES.etcd!)[0]}` });
    try {
      const s = new EtcdStore(client, { prefix: "own/" });
      const n = uniqueName("own");
      assert.ok((await s.acquire(n, "a", 2000)).acquired);
      await s.close();
      await s.close();
      assert.equal((await expectStoreError(s.read(n))).kind, "closed");
      assert.equal(await client.get(`own/lease/${n}`).string(), "a");
    } finally {
      client.close();
    }
    const s2 = await openStore(SERVICES.etcd!);
    try {
      assert.equal(s2.kind, "etcd");
      assert.equal(s2.notifies, true);
    } finally {
      await s2.close();
    }
  });
});

// ── URL parsing and classification (no server) ─────────────────────────────
describe("etcd URL and errors", () => {
  it("parses members, default port, credentials and options; rejects bad input by name", async () => {
    const u = parseEtcdUrl(
      "etcd://u:s3cret@127.0.0.1:1,[::1]:2,localhost/?prefix=p/&callTimeoutMs=50",
    );
    assert.deepEqual(u.hosts, ["127.0.0.1:1", "[::1]:2", "localhost:2379"]);
    assert.equal(u.username, "u");
    assert.equal(u.password, "s3cret");
    assert.equal(u.params.get("prefix"), "p/");
    assert.equal(parseEtcdUrl("etcds://h:1").tls, true);
    const bad: [string, string][] = [
      ["etcd://", "store"],
      ["etcd://h:99999", "store"],
      ["etcd://u:pw@h:1?nope=1", "store ?nope"],
      ["etcd://h:1?ca=/x", "store ?ca"],
      ["http://h:1", "store"],
    ];
    for (const [url, field] of bad) {
      assert.throws(
        () => parseEtcdUrl(url),
        (e) => isConfigError(e) && e.field === field && !e.message.includes("pw"),
        url,
      );
    }
    // openStore routes etcds:// to this store: its own TLS file check answers.
    await assert.rejects(openStore("etcds://127.0.0.1:1?ca=/nonexistent/ca.pem"), (e) => {
      assert.ok(isConfigError(e));
      assert.equal(e.field, "store ?ca");
      return true;
    });
    await assert.rejects(openEtcdStore("etcd://127.0.0.1:1?callTimeoutMs=0"), (e) => {
      assert.ok(isConfigError(e));
      assert.equal(e.field, "callTimeoutMs");
      return true;
    });
    await assert.rejects(openEtcdStore("etcd://127.0.0.1:1?prefix=a b"), (e) => {
      assert.ok(isConfigError(e));
      assert.equal(e.field, "prefix");
      return true;
    });
  });

  it("classifies etcd3 errors: unavailable/deadline/leader changed transient, auth fatal", async () => {
    const m = await import("etcd3");
    const cases: [Error, boolean, string][] = [
      [new m.GRPCUnavailableError("14 UNAVAILABLE: No connection established"), true, "connection"],
      [
        new m.GRPCUnavailableError("14 UNAVAILABLE: etcdserver: leader changed"),
        true,
        "unavailable",
      ],
      [new m.GRPCUnavailableError("14 UNAVAILABLE: etcdserver: no leader"), true, "unavailable"],
      [new m.GRPCDeadlineExceededError("4 DEADLINE_EXCEEDED: Deadline exceeded"), true, "timeout"],
      [new m.GRPCGenericError("connect ECONNREFUSED 127.0.0.1:1"), true, "connection"],
      [new m.EtcdAuthenticationFailedError("etcdserver: authentication failed"), false, "auth"],
      [new m.EtcdPermissionDeniedError("etcdserver: permission denied"), false, "auth"],
      [new m.GRPCUnauthenticatedError("16 UNAUTHENTICATED"), false, "auth"],
      [new m.ClientClosedError("KV"), false, "closed"],
      [new m.GRPCInvalidArgumentError("3 INVALID_ARGUMENT: duplicate key"), false, "unknown"],
    ];
    for (const [e, transient, kind] of cases) {
      const c = classifyEtcdError(e);
      assert.equal(c.transient, transient, e.message);
      assert.equal(c.kind, kind, e.message);
    }
  });
});

// ── Faults provoked on a throwaway member ──────────────────────────────────
describe("etcd faults (throwaway member)", { ...binary }, () => {
  let tw: ThrowawayEtcd;
  before(async () => {
    tw = await ThrowawayEtcd.start();
  });
  after(async () => {
    await tw?.dispose();
  });

  it("SIGSTOP ⇒ transient timeout within the call deadline (renew, read, watch); SIGCONT ⇒ the next call succeeds", async () => {
    const s = await openEtcdStore(`${tw.url}?callTimeoutMs=400`);
    try {
      const n = uniqueName("stop");
      const a = await s.acquire(n, "a", 10_000);
      assert.ok(a.acquired);
      tw.pause();
      try {
        // watch: its timeout path must not wait for the paused member to
        // acknowledge the cancel (that hung an elector's start() for good).
        const calls: Array<() => Promise<unknown>> = [
          () => s.renew(a.lease, 10_000),
          () => s.read(n),
          () => s.watch(n, () => {}).then(async (unwatch) => unwatch()),
        ];
        for (const call of calls) {
          const t0 = Date.now();
          const e = await expectStoreError(within("the call under SIGSTOP", 5000, call()));
          assert.equal(e.transient, true, `${e.kind}: ${e.message}`);
          assert.equal(e.kind, "timeout", e.message);
          assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
        }
      } finally {
        tw.resume();
      }
      const r = await waitFor(
        "renew after SIGCONT",
        async () => {
          try {
            return (await s.renew(a.lease, 10_000)).renewed;
          } catch (e) {
            assert.ok(isStoreError(e) && e.transient, String(e));
            return false;
          }
        },
        { timeoutMs: 5000, intervalMs: 50 },
      );
      assert.equal(r, true);
    } finally {
      await s.close();
    }
  });

  it("SIGKILL ⇒ transient connection error; restart (same data) ⇒ the next call succeeds, tokens keep increasing", async () => {
    const s = await openEtcdStore(`${tw.url}?callTimeoutMs=1000`);
    try {
      const n = uniqueName("kill");
      const a = await s.acquire(n, "a", 10_000);
      assert.ok(a.acquired);
      await tw.kill();
      const e = await expectStoreError(s.read(n));
      assert.equal(e.transient, true, `${e.kind}: ${e.message}`);
      assert.ok(["connection", "unavailable", "timeout"].includes(e.kind), e.kind);
      await tw.start();
      const info = await waitFor(
        "read after restart",
        async () => {
          try {
            return await s.read(n);
          } catch (err) {
            assert.ok(isStoreError(err) && err.transient, String(err));
            return null;
          }
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      // etcd persisted the lease: still held by a, same token
      assert.equal(info.token, a.lease.token);
      const b = await s.acquire(uniqueName("after"), "b", 2000);
      assert.ok(b.acquired && b.lease.token > a.lease.token);
    } finally {
      await s.close();
    }
  });

  it("an unreachable member at open is not fatal: open succeeds, calls fail transiently", async () => {
    const s = await openEtcdStore("etcd://127.0.0.1:1?callTimeoutMs=300");
    try {
      const e = await expectStoreError(s.read("x"));
      assert.equal(e.transient, true, e.message);
      const t0 = Date.now();
      const w = await expectStoreError(s.watch("x", () => {}));
      assert.equal(w.transient, true, w.message);
      assert.ok(Date.now() - t0 < 2000, `watch took ${Date.now() - t0} ms`);
    } finally {
      await s.close();
    }
  });

  it("wrong credentials are a fatal auth error at open, with the password redacted", async () => {
    const admin = new Etcd3({ hosts: `http://127.0.0.1:${tw.port}` });
    try {
      await admin.user("root").create("rootpw");
      await admin.user("root").addRole("root");
      await admin.auth.authEnable();
      await assert.rejects(openEtcdStore(`etcd://root:wrongpw@127.0.0.1:${tw.port}`), (e) => {
        assert.ok(isStoreError(e), String(e));
        assert.equal(e.kind, "auth", e.message);
        assert.equal(e.transient, false);
        assert.ok(!e.message.includes("wrongpw"), e.message);
        return true;
      });
      const ok = await openEtcdStore(`etcd://root:rootpw@127.0.0.1:${tw.port}`);
      try {
        assert.ok((await ok.acquire(uniqueName("auth"), "a", 2000)).acquired);
      } finally {
        await ok.close();
      }
    } finally {
      admin.close();
    }
  });
});

// ── The 3-member cluster ────────────────────────────────────────────────────
describe("etcd 3-member cluster", { ...clusterOk }, () => {
  const members = ClusterMember.all(process.env.TENURE_TEST_ETCD_DIR ?? envDir());

  /** The member that leads the raft group now. */
  async function leader(): Promise<ClusterMember> {
    for (const m of members) {
      const c = new Etcd3({ hosts: `http://127.0.0.1:${m.port}` });
      try {
        const st = await c.maintenance.status({ deadline: Date.now() + 1000 });
        if (st.leader === st.header.member_id) return m;
      } catch {
        // try the next member
      } finally {
        c.close();
      }
    }
    throw new Error("no etcd leader found");
  }

  it("a held lease survives killing the raft leader: renew and read keep working within a bound", async () => {
    const s = await openEtcdStore(`${SERVICES.etcdCluster}?callTimeoutMs=1000`);
    const victim = await leader();
    try {
      const n = uniqueName("cluster");
      const a = await s.acquire(n, "a", 10_000);
      assert.ok(a.acquired);
      await victim.kill();
      const t0 = Date.now();
      let transient = 0;
      const ok = await waitFor(
        "renew after the leader died",
        async () => {
          try {
            return (await s.renew(a.lease, 10_000)).renewed;
          } catch (e) {
            assert.ok(isStoreError(e) && e.transient, String(e));
            transient++;
            return false;
          }
        },
        { timeoutMs: 8000, intervalMs: 50 },
      );
      assert.equal(ok, true);
      const info = await s.read(n);
      assert.equal(info?.token, a.lease.token);
      assert.equal(info?.holder, "a");
      assert.ok(Date.now() - t0 < 8000);
      // another holder still cannot take it
      assert.equal((await s.acquire(n, "b", 5000)).acquired, false);
      process.stderr.write(
        `# etcd cluster: renew ok ${Date.now() - t0} ms after killing ${victim.name} (${transient} transient errors)\n`,
      );
    } finally {
      await victim.start();
      await s.close();
    }
  });
});

// ── close() lets the process exit ──────────────────────────────────────────
describe("etcd store process exit", { ...single }, () => {
  it("a process that opens, acquires, watches, renews, releases and closes exits on its own", async () => {
    const mod = join(REPO_ROOT, "dist", "src", "stores", "etcd", "index.js");
    const script = `
      const { openEtcdStore } = await import(${JSON.stringify(mod)});
      const s = await openEtcdStore(${JSON.stringify(SERVICES.etcd)});
      const n = "exit-" + process.pid;
      const w = await s.watch(n, () => {});
      const a = await s.acquire(n, "a", 3000);
      if (!a.acquired) process.exit(3);
      await s.renew(a.lease, 3000);
      await s.renew(a.lease, 5000);
      await s.read(n);
      await s.release(a.lease);
      await w();
      await s.close();
      // a store that never reached etcd, with a failed watch, lets go too
      const down = await openEtcdStore("etcd://127.0.0.1:1?callTimeoutMs=300");
      await down.read(n).catch(() => {});
      await down.watch(n, () => {}).catch(() => {});
      await down.close();
      console.log("closed");
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      out += d;
    });
    const code = await new Promise<number | string>((resolve) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        resolve("did not exit within 8 s after close()");
      }, 8000);
      child.once("exit", (c) => {
        clearTimeout(timer);
        resolve(c ?? -1);
      });
    });
    assert.equal(code, 0, out);
    assert.match(out, /closed/);
  });
});

describe("etcd session lease keep-alives", () => {
  /** A SessionLease over a scripted send: each call is held until the test answers it. */
  function scripted() {
    const sent: { at: number; answer: (ttl: number) => void; fail: (e: Error) => void }[] = [];
    const lease = new SessionLease("7", 1, monotonicMs(), 1, () => {
      return new Promise<number>((answer, fail) => sent.push({ at: monotonicMs(), answer, fail }));
    });
    return { sent, lease };
  }

  it("a session nothing kept alive for its whole TTL counts as expired; one with a keep-alive in flight does not", async () => {
    const idle = new SessionLease("8", 1, 1000, 1, () => Promise.resolve(1));
    assert.equal(idle.idleExpired(1999), false);
    assert.equal(idle.idleExpired(2000), true);
    const { sent, lease } = scripted();
    const now = monotonicMs();
    assert.equal(lease.idleExpired(now), false);
    // the keep-alive is sent inside refresh(): between these two readings
    const sendFrom = monotonicMs();
    const p = lease.refresh(now + 1);
    const sendTo = monotonicMs();
    assert.equal(lease.idleExpired(now + 5000), false, "a keep-alive is in flight");
    sent[0]!.answer(1);
    await p;
    assert.equal(lease.idleExpired(sendFrom + 999), false);
    assert.equal(lease.idleExpired(sendTo + 1000), true);
  });

  it("callers join one keep-alive sent after they asked, and queue at most one more", async () => {
    const { sent, lease } = scripted();
    const a = lease.refresh(monotonicMs());
    const b = lease.refresh(monotonicMs());
    const c = lease.refresh(monotonicMs());
    assert.equal(sent.length, 1, "b and c queue behind the keep-alive in flight");
    sent[0]!.answer(1);
    assert.equal(await a, 1);
    await waitFor("the queued keep-alive", () => sent.length === 2, { timeoutMs: 1000 });
    sent[1]!.answer(1);
    assert.deepEqual(await Promise.all([b, c]), [1, 1]);
    assert.equal(sent.length, 2);
  });

  it("a keep-alive stuck for a quarter ttl no longer holds the queue: another goes out", async () => {
    const { sent, lease } = scripted();
    const stuck = lease.refresh(monotonicMs()).catch((e: Error) => e);
    const askedAt = monotonicMs();
    const queued = lease.refresh(askedAt);
    await waitFor("a second keep-alive", () => sent.length === 2, { timeoutMs: 2000 });
    // timers may fire a millisecond or two early
    const gap = sent[1]!.at - sent[0]!.at;
    assert.ok(gap >= staleAfterMs(1) - 5, `not before the first is stale (${gap} ms)`);
    sent[1]!.answer(1);
    assert.equal(await queued, 1);
    // a caller arriving now is served by the answered keep-alive, not the stuck one
    assert.equal(await lease.refresh(askedAt), 1);
    sent[0]!.fail(new Error("deadline exceeded"));
    assert.ok((await stuck) instanceof Error);
    assert.equal(sent.length, 2);
  });

  it("a keep-alive answering TTL 0 marks the session lost for every later caller", async () => {
    const { sent, lease } = scripted();
    const a = lease.refresh(monotonicMs());
    sent[0]!.answer(0);
    assert.equal(await a, 0);
    assert.equal(lease.lost, true);
    assert.equal(await lease.refresh(monotonicMs()), 0);
    assert.equal(sent.length, 1);
  });
});

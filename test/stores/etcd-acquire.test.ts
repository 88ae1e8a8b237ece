/**
 * Two paths of the etcd store's acquire, against the shared etcd member.
 *
 * An acquire first ends a term of its own store past its ttl (`settle`),
 * then takes the name. The end is a delete that can be slow (sent while a
 * cluster's raft leader died, it waited for its deadline). The new term must
 * count its ttl from after that wait: counted from the acquire's start, it was
 * recorded already past its ttl, and the store's sweep deleted it again as
 * soon as it was won (chaos group:etcd-cluster:rolling-restart:1610901752).
 *
 * An acquireMany item that finds its holder's own live term (an earlier
 * acquire answered after its elector gave up) is renewed by the batch's own
 * round trip; it went to `acquire` alone, two more round trips, and under a
 * cluster's restarts that answer often came too late to be trusted.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import { EtcdStore } from "../../src/stores/etcd/index.js";
import { etcdAnswers, etcdPorts } from "../helpers/etcd.js";
import { requireService, SERVICES } from "../helpers/services.js";
import { uniqueName, waitFor } from "../helpers/wait.js";

const HOW =
  "start it with `bash scripts/services.sh start` (needs etcd: `apt-get install -y etcd-server`) or set TENURE_TEST_ETCD_URL";
const single = requireService("etcd", await etcdAnswers(SERVICES.etcd), HOW);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client of the shared etcd member. */
const shared = () =>
  new Etcd3({ hosts: etcdPorts(SERVICES.etcd!).map((p) => `http://127.0.0.1:${p}`) });

/** A store over `client` whose KV calls go through `kv` (a wrapper that counts or delays them). */
function storeOver(client: Etcd3, kv: Etcd3["kv"]): EtcdStore {
  return new EtcdStore(
    {
      kv,
      leaseClient: client.leaseClient,
      watch: client.watch.bind(client),
      close: client.close.bind(client),
    } as unknown as ConstructorParameters<typeof EtcdStore>[0],
    { ownsClient: true },
  );
}

describe("etcd store: acquire paths", single, () => {
  it("an acquire after a slow end of its overdue term counts the new term from after the wait: it is not swept at once", async () => {
    let holdDeletesMs = 0;
    let deletes = 0;
    // The store's term ends are transactions whose success branch deletes the key.
    const client = shared();
    const kv = new Proxy(client.kv, {
      get(t, prop) {
        const v = Reflect.get(t, prop);
        if (prop !== "txn") return typeof v === "function" ? v.bind(t) : v;
        return async (req: { success?: { request_delete_range?: unknown }[] }, o: unknown) => {
          if (req.success?.some((op) => op.request_delete_range) && holdDeletesMs > 0) {
            deletes++;
            await sleep(holdDeletesMs); // the fault: this delete is answered late
          }
          return t.txn(req as never, o as never);
        };
      },
    });
    const store = storeOver(client, kv);
    const name = uniqueName("settle");
    try {
      const first = await store.acquire(name, "h", 1000);
      assert.ok(first.acquired);
      holdDeletesMs = 1500;
      // Nobody renews: a ttl later the sweep starts ending the term (slowly).
      await waitFor("the sweep to start ending the overdue term", () => deletes > 0, {
        timeoutMs: 3000,
      });
      const second = await store.acquire(name, "h", 1000);
      assert.ok(second.acquired, "the name was free once the old term ended");
      assert.ok(second.lease.token > first.lease.token);
      // A read ends a term of this store past its ttl first: the new one must not be.
      const now = await store.read(name);
      assert.equal(now?.token, second.lease.token, "the new term was ended as soon as it was won");
      assert.ok(
        (await store.list()).some((l) => l.name === name && l.token === second.lease.token),
        "the new term is listed as live",
      );
      holdDeletesMs = 0;
      assert.equal(await store.release(second.lease), true);
    } finally {
      await store.close();
    }
  });

  it("acquireMany renews the holder's own live term in its one round trip", async () => {
    let kvCalls = 0;
    const client = shared();
    const kv = new Proxy(client.kv, {
      get(t, prop) {
        const v = Reflect.get(t, prop);
        if (typeof v !== "function") return v;
        return (...args: unknown[]) => {
          kvCalls++;
          return (v as (...a: unknown[]) => unknown).apply(t, args);
        };
      },
    });
    const store = storeOver(client, kv);
    const a = uniqueName("own-a");
    const b = uniqueName("own-b");
    try {
      const [first] = await store.acquireMany([{ name: a, holder: "h", ttlMs: 5000 }]);
      assert.ok(first?.acquired);
      kvCalls = 0;
      // The retry of an elector that gave up on the first answer: its own term, and a free name.
      const again = await store.acquireMany([
        { name: a, holder: "h", ttlMs: 5000 },
        { name: b, holder: "h", ttlMs: 5000 },
      ]);
      assert.equal(kvCalls, 1, "the batch's one transaction, nothing for the own term alone");
      assert.ok(again[0]?.acquired && again[1]?.acquired);
      assert.equal(again[0].lease.token, first.lease.token, "the same term goes on");
      assert.ok(again[1].lease.token > first.lease.token);
      // It is a live term of this store: renewed, then released.
      assert.deepEqual(await store.renew(again[0].lease, 5000), { renewed: true });
      assert.deepEqual(await store.releaseMany([again[0].lease, again[1].lease]), [true, true]);
    } finally {
      await store.close();
    }
  });
});

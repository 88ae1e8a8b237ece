import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import { openStore } from "../../src/open.js";
import { etcdAnswers, etcdPorts } from "../helpers/etcd.js";
import { requireService, SERVICES } from "../helpers/services.js";
import { uniqueName, waitFor } from "../helpers/wait.js";

/**
 * A session lease of one TTL left idle past that TTL is gone in etcd; a later
 * renew that moves a term onto that TTL must grant a new session, not fail
 * with `LEASE_NOT_FOUND` (seen as a flaky "watch reports …" test under load).
 */
const up = await etcdAnswers(SERVICES.etcd);
describe(
  "etcd: an idle session lease that expired",
  requireService("etcd", up, "bash scripts/services.sh start (needs etcd)"),
  () => {
    it("a renew onto a TTL whose cached session expired grants a new session and succeeds", async () => {
      const store = await openStore(SERVICES.etcd!);
      const raw = new Etcd3({
        hosts: etcdPorts(SERVICES.etcd!).map((p) => `http://127.0.0.1:${p}`),
      });
      try {
        const first = uniqueName("idle");
        const a0 = await store.acquire(first, "a", 2000);
        assert.ok(a0.acquired);
        const kv = await raw.get(`tenure/lease/${first}`).exec();
        const sessionId = kv.kvs[0]!.lease;
        assert.equal(await store.release(a0.lease), true);
        // Nothing renews that session now: wait (bounded) until etcd has let it expire.
        await waitFor(
          "the idle 2 s session lease to expire in etcd",
          async () =>
            Number((await raw.leaseClient.leaseTimeToLive({ ID: sessionId, keys: false })).TTL) < 0,
          { timeoutMs: 10_000, intervalMs: 100 },
        );
        const n = uniqueName("moved");
        const a = await store.acquire(n, "a", 1000); // another TTL's session
        assert.ok(a.acquired);
        const r = await store.renew(a.lease, 2000); // moves the key onto the expired 2 s session
        assert.deepEqual(r, { renewed: true });
        assert.equal((await store.read(n))?.token, a.lease.token);
        await store.release(a.lease);
      } finally {
        raw.close();
        await store.close();
      }
    });
  },
);

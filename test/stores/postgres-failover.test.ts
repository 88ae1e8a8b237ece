import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import pg from "pg";
import { isFencedError } from "../../src/errors.js";
import type { LeaseRef } from "../../src/store/types.js";
import { openPostgresStore, type PostgresStore } from "../../src/stores/postgres/index.js";
import { withAdmin, withParams } from "../helpers/pg.js";
import { PgStandbyPair, standbyUnavailable } from "../helpers/pg-standby.js";
import { requireService, SERVICES } from "../helpers/services.js";
import { uniqueName } from "../helpers/wait.js";

const TABLE = `tenure_t_pgfailover_${process.pid}`;

/** fence() in a transaction of its own on `url`; true when it passed, false on FencedError. */
async function fencePasses(store: PostgresStore, url: string, term: LeaseRef): Promise<boolean> {
  const c = new pg.Client({ connectionString: url });
  c.on("error", () => {});
  await c.connect();
  try {
    await c.query("BEGIN");
    try {
      await store.fence(c, term);
      return true;
    } catch (e) {
      if (isFencedError(e)) return false;
      throw e;
    } finally {
      await c.query("ROLLBACK");
    }
  } finally {
    await c.end().catch(() => {});
  }
}

/** fence() and putFenced() both refuse `stale` and both accept `current`, on one server. */
async function onlyCurrentPasses(
  store: PostgresStore,
  url: string,
  stale: LeaseRef,
  current: LeaseRef,
  what: string,
): Promise<void> {
  assert.equal(await fencePasses(store, url, stale), false, `${what}: fence passed the stale term`);
  assert.equal(await fencePasses(store, url, current), true, `${what}: fence refused the term`);
  assert.deepEqual(
    await store.putFenced(stale, "cp", "stale"),
    { ok: false, reason: "fenced" },
    `${what}: putFenced took the stale term`,
  );
  assert.deepEqual(await store.putFenced(current, "cp", `by ${current.holder}`), { ok: true });
  assert.equal((await store.getFenced(current.name, "cp"))?.value, `by ${current.holder}`);
}

describe("postgres: a term passes fence/putFenced only while it is the term in force", () => {
  let store: PostgresStore;
  after(async () => {
    await store?.close();
    await withAdmin((c) => c.query(`DROP TABLE IF EXISTS "${TABLE}", "${TABLE}_fenced"`));
  });

  it("same token, other holder (a promoted standby whose clock lagged); released; expired", async () => {
    store = await openPostgresStore(withParams(SERVICES.postgres, { tenure_table: TABLE }));
    const n = uniqueName("pg-term");
    const b = await store.acquire(n, "B", 60_000);
    assert.ok(b.acquired);
    await store.release(b.lease);
    const c = await store.acquire(n, "C", 60_000);
    assert.ok(c.acquired);
    // What a promoted standby whose clock lags the old primary's by more than
    // the failover took would hold: C's term with B's token.
    await withAdmin((a) =>
      a.query(`UPDATE "${TABLE}" SET token = $2::bigint WHERE name = $1 AND holder = 'C'`, [
        n,
        b.lease.token.toString(),
      ]),
    );
    const cSame: LeaseRef = { ...c.lease, token: b.lease.token };
    await onlyCurrentPasses(store, SERVICES.postgres, b.lease, cSame, "same token");

    await store.release(cSame);
    assert.equal(await fencePasses(store, SERVICES.postgres, cSame), false, "released: fence");
    assert.deepEqual(await store.putFenced(cSame, "cp", "x"), { ok: false, reason: "fenced" });

    const d = await store.acquire(n, "D", 60_000);
    assert.ok(d.acquired);
    await withAdmin((a) =>
      a.query(`UPDATE "${TABLE}" SET expires_at = now() WHERE name = $1`, [n]),
    );
    assert.equal(await fencePasses(store, SERVICES.postgres, d.lease), false, "expired: fence");
    assert.deepEqual(await store.putFenced(d.lease, "cp", "x"), { ok: false, reason: "fenced" });
  });

  it("a term object without its holder is a ConfigError naming the field", async () => {
    const n = uniqueName("pg-term");
    const bare = { name: n, token: 1n } as unknown as LeaseRef;
    await assert.rejects(store.putFenced(bare, "cp", "x"), /lease\.holder/);
    await assert.rejects(fencePasses(store, SERVICES.postgres, bare), /term.*holder, token/);
  });
});

const missing = standbyUnavailable();
describe(
  "postgres: failover to a promoted async standby",
  requireService("pg_basebackup", missing === null, missing ?? ""),
  () => {
    let pair: PgStandbyPair | null = null;
    const stores: PostgresStore[] = [];
    after(async () => {
      for (const s of stores) await s.close().catch(() => {});
      await pair?.stop();
    });

    it("the promoted server's next token is larger than the lost one, and only its term passes the fence", async (t) => {
      pair = await PgStandbyPair.start();
      const open = async (url: string) => {
        const s = await openPostgresStore(withParams(url, { tenure_table: TABLE }));
        stores.push(s);
        return s;
      };
      const n = "failover";
      const primary = await open(pair.url("primary"));
      let last = 0n;
      for (let i = 1; i <= 5; i++) {
        const a = await primary.acquire(n, `h${i}`, 60_000);
        assert.ok(a.acquired);
        assert.ok(a.lease.token > last);
        last = a.lease.token;
        await primary.release(a.lease);
      }
      await pair.waitReplayed();
      await pair.freezeWalsender();

      const b = await primary.acquire(n, "B", 60_000);
      assert.ok(b.acquired);
      // A lease whose first row the standby never sees at all.
      const fresh = await primary.acquire("fresh", "B", 60_000);
      assert.ok(fresh.acquired);
      assert.deepEqual(await primary.putFenced(b.lease, "cp", "by B"), { ok: true });
      // The standby missed B's term (its walsender is frozen): it still has the 5th.
      const [seen] = await pair.query(
        "standby",
        `SELECT holder, token::text AS token FROM "${TABLE}" WHERE name = $1`,
        [n],
      );
      assert.deepEqual(seen, { holder: null, token: last.toString() });

      const crashAt = performance.now();
      await pair.crashPrimary();
      await pair.promote();
      const promotedUrl = pair.url("primary");
      const promoted = await open(promotedUrl);
      const c = await promoted.acquire(n, "C", 60_000);
      assert.ok(c.acquired, "the promoted server does not know B's term");
      t.diagnostic(
        `crash to C's term: ${Math.round(performance.now() - crashAt)} ms; tokens: 5th ${last}, B ${b.lease.token} (lost), C ${c.lease.token} (+${Number(c.lease.token - b.lease.token) / 1000} ms of server clock)`,
      );
      assert.ok(
        c.lease.token > b.lease.token,
        `token after failover ${c.lease.token} must exceed the lost term's ${b.lease.token}`,
      );
      await onlyCurrentPasses(promoted, promotedUrl, b.lease, c.lease, "after failover");
      // Had the promoted server's clock lagged by more than the failover took,
      // C would hold B's token: the holder check must still refuse B.
      await pair.query("primary", `UPDATE "${TABLE}" SET token = $2::bigint WHERE name = $1`, [
        n,
        b.lease.token.toString(),
      ]);
      const cSame: LeaseRef = { ...c.lease, token: b.lease.token };
      await onlyCurrentPasses(promoted, promotedUrl, b.lease, cSame, "same token after failover");
      const cFresh = await promoted.acquire("fresh", "C", 60_000);
      assert.ok(cFresh.acquired && cFresh.lease.token > fresh.lease.token, "fresh lease");
    });
  },
);

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import postgres from "postgres";
import { FencedError, isFencedError } from "../../src/errors.js";
import type { LeaseRef } from "../../src/store/types.js";
import { fence, openPostgresStore, type PostgresStore } from "../../src/stores/postgres/index.js";
import { withAdmin, withParams } from "../helpers/pg.js";
import { SERVICES } from "../helpers/services.js";
import { uniqueName, waitFor } from "../helpers/wait.js";

const LEASES = `tenure_t_fence_${process.pid}`;
const STATE = `tenure_t_fence_state_${process.pid}`;

/**
 * The invariant: a table written only through fence never has a write with
 * token t committed after a write with a larger token. The state row is
 * updated by every write; updates of one row serialize in commit order, so
 * `violations` counts exactly the stale writes that landed after newer ones.
 */
async function fencedWrite(c: pg.PoolClient, token: bigint): Promise<void> {
  await c.query(
    `UPDATE "${STATE}" SET violations = violations + (CASE WHEN last_token > $1::bigint THEN 1 ELSE 0 END),
       last_token = $1::bigint, writes = writes + 1 WHERE id = 1`,
    [token.toString()],
  );
}

/** The server ended an idle fenced transaction (idle_in_transaction_session_timeout). */
const isIdleTimeout = (e: unknown) =>
  (e as { code?: string }).code === "25P03" ||
  /terminat|ECONNRESET/i.test(String((e as Error)?.message ?? e));

const jitter = () => new Promise((r) => setTimeout(r, Math.random() * 3));

describe("postgres fence(tx, term)", () => {
  let storeA: PostgresStore;
  let storeB: PostgresStore;
  let pool: pg.Pool;
  before(async () => {
    const url = withParams(SERVICES.postgres, { tenure_table: LEASES });
    storeA = await openPostgresStore(url);
    storeB = await openPostgresStore(url);
    pool = new pg.Pool({ connectionString: SERVICES.postgres, max: 4 });
    pool.on("error", () => {}); // an idle client the server closed (fence idle limit)
    await withAdmin(async (c) => {
      await c.query(`DROP TABLE IF EXISTS "${STATE}"`);
      await c.query(
        `CREATE TABLE "${STATE}" (id int PRIMARY KEY, last_token bigint NOT NULL, violations int NOT NULL, writes int NOT NULL)`,
      );
      await c.query(`INSERT INTO "${STATE}" VALUES (1, 0, 0, 0)`);
    });
  });
  after(async () => {
    await storeA.close();
    await storeB.close();
    await pool.end();
    await withAdmin((c) =>
      c.query(`DROP TABLE IF EXISTS "${STATE}", "${LEASES}", "${LEASES}_fenced"`),
    );
  });

  const state = async () =>
    (await pool.query(`SELECT last_token, violations, writes FROM "${STATE}" WHERE id = 1`))
      .rows[0] as { last_token: string; violations: number; writes: number };

  it("the detector sees a stale write without the fence (control)", async () => {
    const name = uniqueName("control");
    const a = await storeA.acquire(name, "A", 60_000);
    assert.ok(a.acquired);
    const ca = await pool.connect();
    const cb = await pool.connect();
    try {
      await ca.query("BEGIN");
      await storeB.forceRelease(name);
      const b = await storeB.acquire(name, "B", 60_000);
      assert.ok(b.acquired);
      await cb.query("BEGIN");
      await fencedWrite(cb, b.lease.token);
      await cb.query("COMMIT");
      await fencedWrite(ca, a.lease.token); // no fence: the stale leader's write lands
      await ca.query("COMMIT");
      assert.equal((await state()).violations, 1);
      await pool.query(`UPDATE "${STATE}" SET violations = 0 WHERE id = 1`);
    } finally {
      ca.release();
      cb.release();
    }
  });

  it("200 racing takeovers: a stale term's write commits before the newer term exists or fails", async (t) => {
    const name = uniqueName("race");
    // `ended`: the server closed A's connection because its fenced transaction sat idle past
    // the lease; only the 30 ms terms below (every fifth round) can get there. Nothing of it
    // committed, like a fenced one.
    const outcomes = { committed: 0, fenced: 0, ended: 0, expiredTakeovers: 0 };
    let ca = await pool.connect();
    let caBroken = false;
    const watch = (c: pg.PoolClient) =>
      c.on("error", () => {
        caBroken = true;
      });
    watch(ca);
    const cb = await pool.connect();
    try {
      for (let i = 0; i < 200; i++) {
        const byExpiry = i % 5 === 0;
        const a = await storeA.acquire(name, "A", byExpiry ? 30 : 60_000);
        assert.ok(a.acquired, `iteration ${i}: A could not acquire`);
        const termA = a.lease;
        if (caBroken) {
          ca.release(true);
          ca = await pool.connect();
          caBroken = false;
          watch(ca);
        }
        const runA = async () => {
          await jitter();
          await ca.query("BEGIN");
          try {
            await storeA.fence(ca, termA);
            // leader work between the check and the write (long enough for B's takeover)
            await new Promise((r) => setTimeout(r, Math.random() * 8));
            await fencedWrite(ca, termA.token);
            await ca.query("COMMIT");
            outcomes.committed++;
          } catch (e) {
            if (!isFencedError(e) && (caBroken || isIdleTimeout(e))) {
              caBroken = true;
              // Only a 30 ms term's idle limit can end it; a 60 s term's never does.
              assert.ok(
                byExpiry,
                `iteration ${i}: a 60 s term's transaction was ended: ${String(e)}`,
              );
              outcomes.ended++;
              return;
            }
            await ca.query("ROLLBACK");
            if (!isFencedError(e)) throw e;
            assert.equal(e.token, termA.token);
            outcomes.fenced++;
          }
        };
        const runB = async () => {
          await jitter();
          let termB: LeaseRef | null = null;
          if (byExpiry) {
            outcomes.expiredTakeovers++;
            while (!termB) {
              const r = await storeB.acquire(name, "B", 60_000);
              if (r.acquired) termB = r.lease;
              else await new Promise((res) => setTimeout(res, 5));
            }
          } else {
            await storeB.forceRelease(name); // waits while A's fenced transaction is open
            // A fence that failed its re-check may still hold the row FOR SHARE until A rolls
            // back; acquire does not wait for that lock, it answers "busy" (nobody named).
            let r = await storeB.acquire(name, "B", 60_000);
            for (let k = 0; k < 500 && !r.acquired && r.current === null; k++) {
              await new Promise((res) => setTimeout(res, 2));
              r = await storeB.acquire(name, "B", 60_000);
            }
            assert.ok(r.acquired, `iteration ${i}: B could not acquire`);
            termB = r.lease;
          }
          assert.ok(termB.token > termA.token);
          await cb.query("BEGIN");
          await storeB.fence(cb, termB);
          await fencedWrite(cb, termB.token);
          await cb.query("COMMIT");
          await storeB.release(termB);
        };
        await Promise.all([runA(), runB()]);
      }
    } finally {
      ca.release(caBroken ? true : undefined);
      cb.release();
    }
    t.diagnostic(`outcomes: ${JSON.stringify(outcomes)}`);
    const s = await state();
    assert.equal(s.violations, 0, `stale writes committed after newer ones: ${JSON.stringify(s)}`);
    assert.equal(outcomes.committed + outcomes.fenced + outcomes.ended, 200);
    assert.ok(outcomes.ended <= outcomes.expiredTakeovers, JSON.stringify(outcomes));
    assert.ok(outcomes.committed > 0 && outcomes.fenced > 0, JSON.stringify(outcomes));
  });

  it("works in a postgres.js transaction and as a standalone function", async () => {
    const sql = postgres(SERVICES.postgres, { max: 2, onnotice: () => {} });
    try {
      const name = uniqueName("pgjs");
      const a = await storeA.acquire(name, "A", 60_000);
      assert.ok(a.acquired);
      const ok = await sql.begin(async (tx) => {
        await storeA.fence(tx, a.lease);
        return (await tx`SELECT 1 AS one`)[0]?.one;
      });
      assert.equal(ok, 1);
      await storeA.forceRelease(name);
      const b = await storeB.acquire(name, "B", 60_000);
      assert.ok(b.acquired);
      await assert.rejects(
        sql.begin(async (tx) => fence(tx, a.lease, { table: LEASES })),
        (e: unknown) => {
          assert.ok(e instanceof FencedError, String(e));
          assert.equal(e.currentToken, b.lease.token);
          return true;
        },
      );
      await sql.begin(async (tx) => fence(tx, b.lease, { table: LEASES }));
    } finally {
      await sql.end({ timeout: 1 });
    }
  });

  it("a leader that stops inside a fenced transaction cannot hold a failover off: the server ends it when the lease runs out", async () => {
    const name = uniqueName("idle");
    const a = await storeA.acquire(name, "A", 1000);
    assert.ok(a.acquired);
    const before = (await state()).writes;
    const ca = await pool.connect();
    let caError: Error | undefined;
    ca.on("error", (e) => {
      caError = e;
    });
    try {
      await ca.query("BEGIN");
      await storeA.fence(ca, a.lease);
      await fencedWrite(ca, a.lease.token);
      // the leader now goes quiet with its transaction open (a pause, a lost network)
      const idleSince = Date.now();
      const b = await waitFor(
        "a new term after the idle fenced transaction",
        async () => {
          const r = await storeB.acquire(name, "B", 60_000).catch(() => null);
          return r?.acquired ? r : null;
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      assert.ok(b.lease.token > a.lease.token);
      assert.ok(Date.now() - idleSince < 5000, `took ${Date.now() - idleSince} ms`);
      await assert.rejects(ca.query("COMMIT"), "the stopped leader's transaction is gone");
      assert.equal((await state()).writes, before, "its fenced write never committed");
      assert.ok(caError, "the server closed the idle connection");
    } finally {
      ca.release(caError ?? true);
    }
  });
});

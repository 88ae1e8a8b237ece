/**
 * A pooled PostgreSQL connection reset while it sat idle fails the first
 * statement sent on it; the pool then opens a new one. The store sends a
 * statement that may run twice (reads, renewals) once more at once: left to
 * the elector's retry after its backoff, a renewal of a 1 s ttl came back
 * after its window, and one reset of every connection demoted every member
 * of a group from every partition (chaos group:postgres:reset:1545514212).
 * Against the shared PostgreSQL: the first statement of the chosen kind
 * fails as a reset connection does, the rest go to the server.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import pg from "pg";
import { isStoreError } from "../../src/errors.js";
import { PostgresStore, pgQueryable } from "../../src/stores/postgres/index.js";
import { withAdmin } from "../helpers/pg.js";
import { SERVICES } from "../helpers/services.js";
import { uniqueName } from "../helpers/wait.js";

const TABLE = `tenure_t_pgreconnect_${process.pid}`;

after(async () => {
  await withAdmin(async (c) => {
    await c.query(`DROP TABLE IF EXISTS "${TABLE}", "${TABLE}_fenced"`);
  });
});

/** A store whose next statement matching `fail` fails with ECONNRESET before reaching the server. */
function store() {
  const pool = new pg.Pool({ connectionString: SERVICES.postgres, max: 2 });
  const inner = pgQueryable(pool);
  const sent: string[] = [];
  let fail: RegExp | null = null;
  const s = new PostgresStore({
    queryable: {
      query: (text, params, timeoutMs) => {
        if (fail?.test(text)) {
          fail = null;
          sent.push("reset");
          return Promise.reject(
            Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }),
          );
        }
        sent.push("sent");
        return inner.query(text, params, timeoutMs);
      },
    },
    table: TABLE,
    onClose: () => pool.end(),
  });
  return { s, sent, failNext: (re: RegExp) => (fail = re) };
}

describe("postgres store: a statement on a connection reset while idle", () => {
  it("a renewal goes again at once and renews", async () => {
    const { s, sent, failNext } = store();
    try {
      const a = await s.acquire(uniqueName("reconnect"), "h", 5000);
      assert.ok(a.acquired);
      failNext(/UPDATE/);
      sent.length = 0;
      assert.deepEqual(await s.renew(a.lease, 5000), { renewed: true });
      assert.deepEqual(sent, ["reset", "sent"]);
      failNext(/UPDATE/);
      const [r] = await s.renewMany([{ lease: a.lease, ttlMs: 5000 }]);
      assert.deepEqual(r, { renewed: true });
      failNext(/SELECT/);
      assert.equal((await s.read(a.lease.name))?.token, a.lease.token);
    } finally {
      await s.close();
    }
  });

  it("an acquire is not sent again: the reset is the caller's (a transient connection error)", async () => {
    const { s, sent, failNext } = store();
    try {
      await s.read("warm-up"); // the table exists before the acquire
      failNext(/INSERT|UPDATE/);
      sent.length = 0;
      await assert.rejects(
        s.acquire(uniqueName("reconnect"), "h", 5000),
        (e: unknown) => isStoreError(e) && e.kind === "connection" && e.transient,
      );
      assert.deepEqual(sent, ["reset"]);
    } finally {
      await s.close();
    }
  });
});

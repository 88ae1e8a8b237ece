import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import pg from "pg";
import postgres from "postgres";
import { isConfigError, isStoreError, type StoreError } from "../../src/errors.js";
import { openStore } from "../../src/open.js";
import type { LeaseStore } from "../../src/store/types.js";
import { openPostgresStore, PostgresStore, pgQueryable } from "../../src/stores/postgres/index.js";
import { missingBinaries, PgBouncerServer } from "../helpers/chaos-servers.js";
import { describeLeaseStore } from "../helpers/conformance.js";
import { FaultProxy } from "../helpers/fault-proxy.js";
import {
  appName,
  startThrowawayCluster,
  type ThrowawayCluster,
  terminateApp,
  withAdmin,
  withParams,
} from "../helpers/pg.js";
import { requireService, SERVICES } from "../helpers/services.js";
import { uniqueName, waitFor } from "../helpers/wait.js";

/** This file's own tables, so parallel test files never share rows. */
const TABLE = `tenure_t_pgstore_${process.pid}`;
const apps = new WeakMap<LeaseStore, string>();

after(async () => {
  await withAdmin(async (c) => {
    for (const t of [
      TABLE,
      `${TABLE}_pooled`,
      `${TABLE}_bad`,
      `${TABLE}_garbage`,
      `${TABLE}_race`,
    ]) {
      await c.query(`DROP TABLE IF EXISTS "${t}", "${t}_fenced"`);
    }
  });
});

async function openPg(url = SERVICES.postgres, extra: Record<string, string> = {}) {
  const app = appName("tenure-pg");
  const s = await openPostgresStore(
    withParams(url, { application_name: app, tenure_table: TABLE, ...extra }),
  );
  apps.set(s, app);
  return s;
}

async function openPostgresJs(
  url = SERVICES.postgres,
  opts: { queryTimeoutMs?: number; onQuery?: (text: string) => void } = {},
) {
  const app = appName("tenure-pgjs");
  const { onQuery, ...storeOpts } = opts;
  const sql = postgres(url, {
    max: 4,
    prepare: false,
    fetch_types: false,
    onnotice: () => {},
    connection: { application_name: app },
    ...(onQuery ? { debug: (_conn: number, text: string) => onQuery(text) } : {}),
  });
  const s = new PostgresStore({
    sql,
    table: TABLE,
    onClose: () => sql.end({ timeout: 1 }),
    ...storeOpts,
  });
  await s.init();
  apps.set(s, app);
  return s;
}

const killOn =
  (url: () => Promise<string> | string = () => SERVICES.postgres) =>
  async (s: LeaseStore) => {
    const app = apps.get(s);
    assert.ok(app, "store opened without an application_name");
    return terminateApp(app, await url());
  };
const kill = killOn();

/** The same URL, at 127.0.0.1:`port` (a fault proxy in front of its server). */
function viaPort(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = "127.0.0.1";
  u.port = String(port);
  return u.toString();
}
function target(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 5432) };
}

describeLeaseStore("postgres (pg, direct)", () => openPg(), {
  killConnection: kill,
  // Counted: every statement the store sends through its Queryable (one query each).
  counted: {
    open: async () => {
      const pool = new pg.Pool({ connectionString: SERVICES.postgres, max: 2 });
      const inner = pgQueryable(pool);
      let n = 0;
      const store = new PostgresStore({
        queryable: {
          query: (text, params, timeoutMs) => {
            n++;
            return inner.query(text, params, timeoutMs);
          },
        },
        table: TABLE,
        onClose: () => pool.end(),
      });
      return { store, requests: () => n };
    },
    perBatch: 1,
  },
  proxied: {
    target: target(SERVICES.postgres),
    open: (port) => openPg(viaPort(SERVICES.postgres, port)),
    inFlight: "transient",
  },
});
describeLeaseStore("postgres (postgres.js, direct)", () => openPostgresJs(), {
  killConnection: kill,
  proxied: {
    target: target(SERVICES.postgres),
    open: (port) => openPostgresJs(viaPort(SERVICES.postgres, port)),
    inFlight: "transient",
  },
});

const bouncer = requireService(
  "pgbouncer",
  Boolean(SERVICES.pgbouncer),
  "run `bash scripts/services.sh start` (needs pgbouncer: apt-get install pgbouncer)",
);
describeLeaseStore(
  "postgres (pg through PgBouncer, transaction mode, direct LISTEN beside it)",
  // tenure_listen: release notifications reach watchers although queries go through the pooler
  () => openPg(SERVICES.pgbouncer, { tenure_listen: SERVICES.postgres }),
  {
    ...bouncer,
    // Terminating the server backend never touches the client's connection to
    // PgBouncer: the kill goes between the client and PgBouncer, mid-renew.
    ...(SERVICES.pgbouncer
      ? {
          proxied: {
            target: target(SERVICES.pgbouncer),
            open: (port: number) => openPg(viaPort(SERVICES.pgbouncer!, port)),
            inFlight: "transient" as const,
          },
        }
      : {}),
  },
);

let cluster: Promise<ThrowawayCluster> | null = null;
const clusterUrl = async () => {
  cluster ??= startThrowawayCluster();
  return (await cluster).url;
};
let bouncerOnCluster: PgBouncerServer | null = null;
after(async () => {
  await bouncerOnCluster?.stop();
  await (await cluster?.catch(() => null))?.stop();
});
const restartCluster = async () => {
  await (await cluster!).restart();
};
describeLeaseStore(
  "postgres (throwaway cluster, restarted)",
  async () => openPg(await clusterUrl()),
  {
    concurrency: 4,
    killConnection: killOn(clusterUrl),
    restartServer: restartCluster,
  },
);
describeLeaseStore(
  "postgres (postgres.js, throwaway cluster, restarted)",
  async () => openPostgresJs(await clusterUrl()),
  { concurrency: 4, killConnection: killOn(clusterUrl), restartServer: restartCluster },
);
const pgbouncerBinary = requireService(
  "pgbouncer (binary, for a throwaway PgBouncer)",
  !missingBinaries().pgbouncer,
  "apt-get install pgbouncer",
);
describeLeaseStore(
  "postgres (pg through a throwaway PgBouncer, PgBouncer restarted)",
  async () => {
    const port = Number(new URL(await clusterUrl()).port);
    if (!bouncerOnCluster) {
      bouncerOnCluster = new PgBouncerServer(() => port);
      await bouncerOnCluster.start();
    }
    // tenure_listen: the notification case runs here too (LISTEN direct on the cluster).
    return openPg(bouncerOnCluster.url, { tenure_listen: await clusterUrl() });
  },
  {
    ...pgbouncerBinary,
    concurrency: 4,
    restartServer: async () => {
      await bouncerOnCluster!.restart();
    },
  },
);

describe("postgres store", () => {
  it(
    "through PgBouncer: notifies is false and watch refuses; postgres.js works too",
    bouncer,
    async () => {
      const s = await openPg(SERVICES.pgbouncer);
      const app = appName("tenure-pgjs-bouncer");
      const url = new URL(SERVICES.pgbouncer!);
      url.search = "";
      const sql = postgres(url.toString(), {
        max: 2,
        prepare: false,
        fetch_types: false,
        onnotice: () => {},
        connection: { application_name: app },
      });
      const js = PostgresStore.fromPostgresJs(sql, { table: TABLE, pooled: true });
      try {
        assert.equal(s.notifies, false);
        assert.equal(js.notifies, false);
        await assert.rejects(
          s.watch(uniqueName("w"), () => {}),
          /transaction pooler/,
        );
        const n = uniqueName("bouncer");
        const a = await js.acquire(n, "a", 5000);
        assert.ok(a.acquired);
        assert.equal((await s.read(n))?.token, a.lease.token);
        assert.equal(await s.release(a.lease), true);
        const b = await js.acquire(n, "b", 5000);
        assert.ok(b.acquired && b.lease.token > a.lease.token);
      } finally {
        await s.close();
        await sql.end({ timeout: 1 });
      }
    },
  );

  it("direct stores notify; the pooler flag in the URL turns it off", async () => {
    const direct = await openPg();
    const pooled = await openPg(SERVICES.postgres, { tenure_pooler: "transaction" });
    const beside = await openPg(SERVICES.postgres, {
      tenure_pooler: "transaction",
      tenure_listen: SERVICES.postgres,
    });
    try {
      assert.equal(direct.notifies, true);
      assert.equal(pooled.notifies, false);
      assert.equal(beside.notifies, true);
    } finally {
      await direct.close();
      await pooled.close();
      await beside.close();
    }
  });

  it("the LISTEN connection comes back after it is killed, with a `changed` event", async () => {
    const s = await openPg();
    const other = await openPg();
    const n = uniqueName("relisten");
    const events: string[] = [];
    try {
      const unwatch = await s.watch(n, (e) => events.push(e.type));
      await kill(s);
      await waitFor("changed event after reconnect", () => events.includes("changed"), {
        timeoutMs: 8000,
      });
      const a = await other.acquire(n, "a", 5000);
      assert.ok(a.acquired);
      await other.release(a.lease);
      await waitFor("release event after reconnect", () => events.includes("released"), {
        timeoutMs: 5000,
      });
      await unwatch();
    } finally {
      await s.close();
      await other.close();
    }
  });

  /** Holds the lease row locked from an admin transaction while `fn` runs. */
  async function whileRowLocked(name: string, fn: () => Promise<void>) {
    await withAdmin(async (c) => {
      await c.query("BEGIN");
      await c.query(`SELECT 1 FROM "${TABLE}" WHERE name = $1 FOR UPDATE`, [name]);
      try {
        await fn();
      } finally {
        await c.query("ROLLBACK");
      }
    });
  }

  async function waitingBackend(app: string): Promise<number> {
    return withAdmin(async (c) =>
      waitFor(`a waiting query of ${app}`, async () => {
        const r = await c.query(
          "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND wait_event_type = 'Lock'",
          [app],
        );
        return r.rows[0]?.pid as number | undefined;
      }),
    );
  }

  for (const driver of ["pg", "postgres.js"] as const) {
    it(`${driver}: a backend terminated mid-query (57P01) is transient; the store recovers`, async () => {
      const s = driver === "pg" ? await openPg() : await openPostgresJs();
      const n = uniqueName("term");
      try {
        const a = await s.acquire(n, "a", 30_000);
        assert.ok(a.acquired);
        await whileRowLocked(n, async () => {
          const pending = s.renew(a.lease, 30_000);
          pending.catch(() => {});
          const pid = await waitingBackend(apps.get(s)!);
          await withAdmin((c) => c.query("SELECT pg_terminate_backend($1)", [pid]));
          await assert.rejects(pending, (e: unknown) => {
            assert.ok(isStoreError(e), String(e));
            assert.equal(e.transient, true, `${e.kind} ${e.code} ${e.message}`);
            assert.equal(e.kind, "connection");
            assert.ok(
              ["57P01", "CONNECTION_CLOSED", "CONNECTION_ENDED"].includes(e.code ?? "") ||
                /terminat/i.test(e.message),
              `${e.code}: ${e.message}`,
            );
            return true;
          });
        });
        const r = await waitFor(
          "renew after reconnect",
          async () => (await s.renew(a.lease, 30_000)).renewed,
        );
        assert.equal(r, true);
      } finally {
        await s.close();
      }
    });

    it(`${driver}: a query that gets no answer times out as a transient error`, async () => {
      const s =
        driver === "pg"
          ? await openPg(SERVICES.postgres, { tenure_timeout_ms: "300" })
          : await openPostgresJs(SERVICES.postgres, { queryTimeoutMs: 300 });
      const n = uniqueName("timeout");
      try {
        const a = await s.acquire(n, "a", 30_000);
        assert.ok(a.acquired);
        await whileRowLocked(n, async () => {
          const t0 = performance.now();
          await assert.rejects(s.renew(a.lease, 30_000), (e: unknown) => {
            assert.ok(isStoreError(e), String(e));
            assert.equal(e.transient, true);
            assert.equal(e.kind, "timeout", `${e.code} ${e.message}`);
            return true;
          });
          assert.ok(performance.now() - t0 < 2000);
        });
        assert.equal((await s.renew(a.lease, 30_000)).renewed, true);
      } finally {
        await s.close();
      }
    });
  }

  it("postgres.js: a timed-out query whose cancel request fails leaves no unhandled rejection (it would crash the process)", async () => {
    const proxy = new FaultProxy("127.0.0.1", Number(new URL(SERVICES.postgres).port || 5432));
    await proxy.start();
    const url = new URL(SERVICES.postgres);
    url.hostname = "127.0.0.1";
    url.port = String(proxy.port);
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    const s = await openPostgresJs(url.toString(), { queryTimeoutMs: 1000 });
    try {
      const n = uniqueName("cancel");
      const a = await s.acquire(n, "a", 30_000);
      assert.ok(a.acquired);
      const before = proxy.accepted;
      proxy.blackhole();
      const renewal = s.renew(a.lease, 30_000);
      renewal.catch(() => {});
      // The driver cancels at the timeout on a connection of its own: once it
      // is open (and unanswered), reset it, so the cancel request fails.
      await waitFor("the cancel request's connection", () => proxy.accepted > before, {
        timeoutMs: 5000,
      });
      proxy.resetAll();
      await assert.rejects(renewal, (e: unknown) => isStoreError(e) && e.transient);
      proxy.heal();
      // Let the failed cancel's rejection surface (it is settled by now or soon).
      await waitFor(
        "a renewal after the heal",
        async () => (await s.renew(a.lease, 30_000)).renewed,
        {
          timeoutMs: 10_000,
          intervalMs: 50,
        },
      );
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(unhandled.map(String), []);
    } finally {
      process.off("unhandledRejection", onUnhandled);
      await s.close();
      await proxy.stop();
    }
  });

  it("authentication failure is fatal kind auth and never shows the password", async () => {
    // The machine's PostgreSQL trusts loopback, which ignores passwords; a role
    // that does not exist is the honest way to be refused: FATAL 28000.
    const secret = "s3cret-Pa55word";
    const url = SERVICES.postgres.replace("postgres@", `tenure_no_such_role:${secret}@`);
    for (const open of [() => openStore(url), () => openPostgresStore(`${url}?tenure_pooler=x`)]) {
      await assert.rejects(open(), (e: unknown) => {
        assert.ok(!String((e as Error).message).includes(secret), (e as Error).message);
        assert.ok(!String((e as Error).stack).includes(secret));
        return true;
      });
    }
    await assert.rejects(openStore(url), (e: unknown) => {
      assert.ok(isStoreError(e), String(e));
      assert.equal(e.kind, "auth");
      assert.equal(e.transient, false);
      assert.equal(e.code, "28000");
      return true;
    });
    const noDb = new URL(SERVICES.postgres);
    noDb.password = secret;
    noDb.pathname = "/tenure_no_such_db";
    await assert.rejects(openStore(noDb.toString()), (e: StoreError) => {
      assert.equal(e.kind, "config");
      assert.equal(e.code, "3D000");
      assert.ok(!e.message.includes(secret));
      return true;
    });
    await assert.rejects(openStore(`postgres://u:${secret}@[bad`), (e: unknown) => {
      assert.ok(isConfigError(e));
      assert.ok(!(e as Error).message.includes(secret), (e as Error).message);
      return true;
    });
  });

  it("a lease table with other columns is fatal kind schema; garbage in a row too", async () => {
    const bad = `${TABLE}_bad`;
    await withAdmin((c) => c.query(`CREATE TABLE IF NOT EXISTS "${bad}" (name text PRIMARY KEY)`));
    await assert.rejects(openPg(SERVICES.postgres, { tenure_table: bad }), (e: StoreError) => {
      assert.equal(e.kind, "schema", e.message);
      assert.equal(e.transient, false);
      return true;
    });
    const garbage = `${TABLE}_garbage`;
    const s = await openPg(SERVICES.postgres, { tenure_table: garbage });
    try {
      await withAdmin((c) =>
        c.query(
          `INSERT INTO "${garbage}" (name, holder, token, expires_at) VALUES ('junk', 'a', -5, now() + interval '1 hour') ON CONFLICT DO NOTHING`,
        ),
      );
      await assert.rejects(s.read("junk"), (e: StoreError) => e.kind === "schema" && !e.transient);
    } finally {
      await s.close();
    }
  });

  it("concurrent renewals go out together in one statement, each with its own answer", async (t) => {
    /** Every statement counts (per driver below): a renewal sent alone is a statement too. */
    const STATEMENT = /\S/;
    // Holders with the characters a text[] literal must escape.
    const odd = 'h "q" \\ {b},c';
    const check = async (label: string, s: LeaseStore, statements: () => number) => {
      const base = uniqueName("batch");
      const names = Array.from({ length: 40 }, (_, i) => `${base}-${i}`);
      const leases = [];
      for (const [i, n] of names.entries()) {
        const r = await s.acquire(n, i % 2 ? odd : `a${i}`, 30_000);
        assert.ok(r.acquired, `${label}: acquire ${n}`);
        leases.push(r.lease);
      }
      assert.equal(await s.release(leases[0]!), true); // → renewed false, nobody
      assert.equal(await s.release(leases[1]!), true);
      assert.ok((await s.acquire(names[1]!, "b", 30_000)).acquired); // → someone else
      const before = statements();
      const results = await Promise.all(leases.map((l) => s.renew(l, 30_000)));
      const used = statements() - before;
      assert.deepEqual(results[0], { renewed: false, current: null }, label);
      const lost = results[1]!;
      assert.ok(
        !lost.renewed && lost.current?.holder === "b",
        `${label}: ${String(lost.renewed)} ${String(lost.renewed ? "" : lost.current?.holder)}`,
      );
      for (const [i, r] of results.entries()) {
        if (i > 1) assert.deepEqual(r, { renewed: true }, `${label}: lease ${i}`);
      }
      assert.ok(used >= 1 && used <= 4, `${label}: ${used} statements for 40 renewals`);
      t.diagnostic(`${label}: 40 renewals in ${used} statements`);
      // The renewed leases kept their tokens and holders.
      const l2 = await s.read(names[2]!);
      assert.equal(l2?.token, leases[2]!.token);
      assert.equal((await s.read(names[3]!))?.holder, odd);
    };
    const pool = new pg.Pool({ connectionString: SERVICES.postgres, max: 4 });
    let n = 0;
    const inner = pgQueryable(pool);
    const counted = new PostgresStore({
      queryable: {
        query: (text, params, timeoutMs) => {
          if (STATEMENT.test(text)) n += 1;
          return inner.query(text, params, timeoutMs);
        },
      },
      table: TABLE,
    });
    try {
      await check("pg", counted, () => n);
    } finally {
      await counted.close();
      await pool.end();
    }
    let jsStatements = 0;
    const js = await openPostgresJs(SERVICES.postgres, {
      onQuery: (text) => {
        if (STATEMENT.test(text)) jsStatements += 1;
      },
    });
    try {
      await check("postgres.js", js, () => jsStatements);
    } finally {
      await js.close();
    }
    if (SERVICES.pgbouncer) {
      const bPool = new pg.Pool({ connectionString: SERVICES.pgbouncer, max: 4 });
      bPool.on("error", () => {});
      let bStatements = 0;
      const bInner = pgQueryable(bPool);
      const b = new PostgresStore({
        queryable: {
          query: (text, params, timeoutMs) => {
            if (STATEMENT.test(text)) bStatements += 1;
            return bInner.query(text, params, timeoutMs);
          },
        },
        table: TABLE,
        pooled: true,
      });
      try {
        await check("pg through PgBouncer", b, () => bStatements);
      } finally {
        await b.close();
        await bPool.end();
      }
    }
  });

  for (const via of ["direct", "PgBouncer"] as const) {
    it(
      `${via}: a try never waits for another transaction's lock on the lease row`,
      via === "PgBouncer" ? bouncer : {},
      async () => {
        // A short query timeout: a try that queued behind the lock fails with a timeout
        // instead of answering, while the locking transaction is still open.
        const url = via === "PgBouncer" ? SERVICES.pgbouncer : SERVICES.postgres;
        const s = await openPg(url, { tenure_timeout_ms: "2000" });
        const other = new pg.Client({ connectionString: SERVICES.postgres });
        other.on("error", () => {});
        await other.connect();
        const n = uniqueName("nowait");
        const lockRow = `SELECT 1 FROM "${TABLE}" WHERE name = $1 FOR UPDATE`;
        const stillOpen = async () => {
          const r = await other.query("SELECT now() = statement_timestamp() AS fresh");
          assert.equal(r.rows[0].fresh, false, "the locking transaction must still be open");
        };
        try {
          const a = await s.acquire(n, "a", 10_000);
          assert.ok(a.acquired);

          // 1. The leader's fenced transaction holds the row FOR SHARE: a follower's try
          //    answers with the term in force.
          await other.query("BEGIN");
          await s.fence(other, a.lease);
          const held = await s.acquire(n, "b", 10_000);
          assert.equal(held.acquired, false);
          assert.equal(!held.acquired && held.current?.holder, "a");
          assert.equal(!held.acquired && held.current?.token, a.lease.token);
          await stillOpen();
          await other.query("COMMIT");

          // 2. A held row locked FOR UPDATE (a renewal in flight): the holder is still named.
          await other.query("BEGIN");
          await other.query(lockRow, [n]);
          const held2 = await s.acquire(n, "b", 10_000);
          assert.equal(!held2.acquired && held2.current?.holder, "a");
          await stillOpen();
          await other.query("COMMIT");

          // 3. A free row locked by another transaction (an acquire in flight): "held,
          //    retry shortly", naming nobody, and nothing is granted.
          assert.equal(await s.release(a.lease), true);
          await other.query("BEGIN");
          await other.query(lockRow, [n]);
          const busy = await s.acquire(n, "b", 10_000);
          assert.equal(busy.acquired, false);
          assert.equal(!busy.acquired && busy.current, null);
          assert.ok(!busy.acquired && (busy.retryInMs ?? 0) > 0, "retryInMs");
          await stillOpen();
          await other.query("COMMIT");
          assert.equal(await s.read(n), null);

          // Once the lock is gone the same try wins, with a larger token.
          const b = await s.acquire(n, "b", 10_000);
          assert.ok(b.acquired);
          assert.ok(b.lease.token > a.lease.token);

          // 4. The caller's own row, locked (its renewal in flight): busy too, never "held by
          //    b" (a holder that would be taken for someone else) and no new term.
          await other.query("BEGIN");
          await other.query(lockRow, [n]);
          const own = await s.acquire(n, "b", 10_000);
          assert.equal(!own.acquired && own.current, null);
          await stillOpen();
          await other.query("COMMIT");
          assert.equal((await s.read(n))?.token, b.lease.token);
        } finally {
          await other.query("ROLLBACK").catch(() => {});
          await other.end().catch(() => {});
          await s.close();
        }
      },
    );
  }

  it("concurrent creators of a new table do not fail", async () => {
    const t = `${TABLE}_race`;
    const stores = await Promise.all(
      Array.from({ length: 6 }, () => openPg(SERVICES.postgres, { tenure_table: t })),
    );
    try {
      const rs = await Promise.all(stores.map((s, i) => s.acquire("race", `h${i}`, 5000)));
      assert.equal(rs.filter((r) => r.acquired).length, 1);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it("bad URL parameters name the store field", async () => {
    for (const url of [
      `${SERVICES.postgres}?tenure_pooler=sometimes`,
      `${SERVICES.postgres}?tenure_table=drop;table`,
      `${SERVICES.postgres}?tenure_timeout_ms=-1`,
    ]) {
      await assert.rejects(openStore(url), (e: unknown) => isConfigError(e));
    }
    for (const listen of ["redis://u:secret@h/", "not-a-url"]) {
      await assert.rejects(
        openStore(`${SERVICES.postgres}?tenure_listen=${encodeURIComponent(listen)}`),
        (e: unknown) =>
          isConfigError(e) && /tenure_listen/.test(e.message) && !e.message.includes("secret"),
      );
    }
  });
});

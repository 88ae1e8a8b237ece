import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import { Redis } from "ioredis";
import { isStoreError, type StoreError } from "../../src/errors.js";
import { openStore } from "../../src/open.js";
import type { InvalidLease, LeaseStore } from "../../src/store/types.js";
import { Tenure } from "../cli/harness.js";
import { etcdAnswers, etcdPorts } from "../helpers/etcd.js";
import { withAdmin, withParams } from "../helpers/pg.js";
import { redisAnswers } from "../helpers/redis.js";
import { requireService, SERVICES } from "../helpers/services.js";
import { uniqueName } from "../helpers/wait.js";

/**
 * Garbage that is caught as garbage (issue 11, defects 5 and 6): a record that
 * is not a valid lease is a fatal `schema` StoreError naming it, on every
 * operation that meets it; `list()` and `tenure status` show the good leases
 * and name each bad record with what is wrong with it.
 */
const TABLE = `tenure_t_garbage_${process.pid}`;
const PG_URL = withParams(SERVICES.postgres, { tenure_table: TABLE });
const BIGINT_MAX = "9223372036854775807";

async function pgUp(): Promise<boolean> {
  try {
    await withAdmin(async () => {});
    return true;
  } catch {
    return false;
  }
}

after(async () => {
  await withAdmin(async (c) => {
    await c.query(`DROP TABLE IF EXISTS "${TABLE}", "${TABLE}_fenced"`);
  }).catch(() => {});
});

async function schemaError(p: Promise<unknown>, ...mentions: string[]): Promise<StoreError> {
  let err: unknown = null;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  assert.ok(isStoreError(err), `expected a StoreError, got ${String(err)}`);
  assert.equal(err.kind, "schema", err.message);
  assert.equal(err.transient, false, err.message);
  for (const m of mentions) assert.ok(err.message.includes(m), `"${m}" in: ${err.message}`);
  return err;
}

async function cli(args: string[]) {
  const t = new Tenure(args);
  const r = await t.exited;
  return { code: r.code, stdout: t.stdout, stderr: t.stderr };
}

describe(
  "garbage in the PostgreSQL lease table",
  requireService("PostgreSQL", await pgUp(), "start PostgreSQL on 127.0.0.1:5432"),
  () => {
    it("an infinite expiry and a token at the bigint maximum are fatal schema errors naming the row; nothing overflows", async () => {
      const s = await openStore(PG_URL);
      const inf = uniqueName("inf");
      const max = uniqueName("max");
      try {
        await withAdmin(async (c) => {
          await c.query(
            `INSERT INTO "${TABLE}" (name, holder, token, expires_at) VALUES ($1, 'x', 3, 'infinity'), ($2, NULL, ${BIGINT_MAX}, now())`,
            [inf, max],
          );
        });
        await schemaError(s.read(inf), JSON.stringify(inf), "infinity");
        await schemaError(s.acquire(inf, "b", 1000), JSON.stringify(inf), "infinity");
        await schemaError(s.acquire(max, "b", 1000), JSON.stringify(max), BIGINT_MAX);
        const row = await withAdmin((c) =>
          c.query(`SELECT holder, token::text AS token FROM "${TABLE}" WHERE name = $1`, [max]),
        );
        assert.deepEqual(row.rows, [{ holder: null, token: BIGINT_MAX }], "nothing was written");
        // A token no PostgreSQL bigint can hold is refused before it reaches the server.
        await assert.rejects(
          s.renew({ name: max, holder: "b", token: BigInt(BIGINT_MAX) + 1n }, 1000),
          (e: unknown) => (e as { field?: string }).field === "lease.token",
        );
      } finally {
        await withAdmin((c) =>
          c.query(`DELETE FROM "${TABLE}" WHERE name = ANY($1)`, [[inf, max]]),
        );
        await s.close();
      }
    });

    it("one bad row does not break list() or `tenure status`: the good leases are shown, each bad row is named", async () => {
      const s = await openStore(PG_URL);
      const good = uniqueName("good");
      const inf = uniqueName("inf");
      const neg = uniqueName("neg");
      try {
        assert.ok((await s.acquire(good, "alice", 60_000)).acquired);
        await withAdmin(async (c) => {
          await c.query(
            `INSERT INTO "${TABLE}" (name, holder, token, expires_at) VALUES ($1, 'x', 3, 'infinity'), ($2, 'y', -5, now() + interval '1 hour')`,
            [inf, neg],
          );
        });
        const invalid: InvalidLease[] = [];
        const all = await s.list({ onInvalid: (b) => invalid.push(b) });
        assert.ok(all.some((l) => l.name === good && l.holder === "alice"));
        assert.ok(!all.some((l) => l.name === inf || l.name === neg));
        const byName = new Map(invalid.map((b) => [b.name, b.problem]));
        assert.match(byName.get(inf) ?? "", /expires_at is infinity/);
        assert.match(byName.get(neg) ?? "", /token "-5"/);

        const table = await cli(["status", "--store", PG_URL]);
        assert.equal(table.code, 65, table.stderr);
        assert.match(table.stdout, new RegExp(`${good}\\s+alice`));
        assert.match(table.stdout, new RegExp(`${inf}: not a valid lease: .*infinity`));
        assert.match(table.stdout, new RegExp(`${neg}: not a valid lease: .*token`));
        assert.doesNotMatch(table.stderr, /unavailable/);

        const json = await cli(["status", "--store", PG_URL, "--json"]);
        assert.equal(json.code, 65, json.stderr);
        const rows = JSON.parse(json.stdout) as {
          name: string;
          holder: string;
          problem?: string;
        }[];
        assert.equal(rows.find((r) => r.name === good)?.holder, "alice");
        assert.match(rows.find((r) => r.name === inf)?.problem ?? "", /infinity/);

        const one = await cli(["status", "--store", PG_URL, inf]);
        assert.equal(one.code, 65, one.stderr);
        assert.match(one.stderr, new RegExp(`bad data: .*${inf}.*infinity`));
        assert.doesNotMatch(one.stderr, /unavailable/);
      } finally {
        await withAdmin((c) =>
          c.query(`DELETE FROM "${TABLE}" WHERE name = ANY($1)`, [[good, inf, neg]]),
        );
        await s.close();
      }
    });
  },
);

/** list() on the key-value stores: a bad key is named, the good leases still listed. */
const kv: {
  name: string;
  url: string | undefined;
  up: () => Promise<boolean>;
  plant: (name: string) => Promise<() => Promise<void>>;
}[] = [
  {
    name: "redis",
    url: SERVICES.redis,
    up: () => redisAnswers(SERVICES.redis),
    plant: async (name) => {
      const r = new Redis(SERVICES.redis);
      await r.set(`tenure:{${name}}:lease`, "not a tenure lease", "PX", 60_000);
      return async () => {
        await r.del(`tenure:{${name}}:lease`);
        r.disconnect();
      };
    },
  },
  {
    name: "etcd",
    url: SERVICES.etcd,
    up: () => etcdAnswers(SERVICES.etcd),
    plant: async (name) => {
      const c = new Etcd3({ hosts: etcdPorts(SERVICES.etcd!).map((p) => `http://127.0.0.1:${p}`) });
      await c.put(`tenure/lease/${name}`).value("no etcd lease");
      return async () => {
        await c.delete().key(`tenure/lease/${name}`);
        c.close();
      };
    },
  },
];

for (const b of kv) {
  const up = b.url ? await b.up() : false;
  describe(
    `garbage in ${b.name}`,
    requireService(b.name, up, "see test/helpers/services.ts"),
    () => {
      it("one bad key does not break list(): the good leases are listed, the bad key is named", async () => {
        const s: LeaseStore = await openStore(b.url!);
        const good = uniqueName("good");
        const bad = uniqueName("bad");
        const unplant = await b.plant(bad);
        try {
          assert.ok((await s.acquire(good, "alice", 60_000)).acquired);
          await schemaError(s.read(bad), bad);
          const invalid: InvalidLease[] = [];
          const all = await s.list({ onInvalid: (x) => invalid.push(x) });
          assert.ok(all.some((l) => l.name === good && l.holder === "alice"));
          assert.ok(
            invalid.some((x) => x.name === bad && x.problem.length > 0),
            JSON.stringify(invalid),
          );
        } finally {
          await unplant();
          await s.forceRelease(good).catch(() => {});
          await s.close();
        }
      });
    },
  );
}

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { isConfigError } from "../../src/errors.js";
import { openStore } from "../../src/open.js";
import type { LeaseStore } from "../../src/store/types.js";
import { etcdAnswers } from "../helpers/etcd.js";
import { withAdmin, withParams } from "../helpers/pg.js";
import { redisAnswers } from "../helpers/redis.js";
import { requireService, SERVICES } from "../helpers/services.js";

/**
 * Every operation of every store validates its arguments the same way (issue
 * 11, defect 7): bad input is a ConfigError naming the field, thrown before
 * the store is asked anything (so the same on every backend), never a silent null or a driver error.
 */
const TABLE = `tenure_t_validate_${process.pid}`;
const tmp = mkdtempSync(join(tmpdir(), "tenure-validate-"));
after(async () => {
  rmSync(tmp, { recursive: true, force: true });
  await withAdmin(async (c) => {
    await c.query(`DROP TABLE IF EXISTS "${TABLE}", "${TABLE}_fenced"`);
  }).catch(() => {});
});

async function pgUp(): Promise<boolean> {
  try {
    await withAdmin(async () => {});
    return true;
  } catch {
    return false;
  }
}

const backends: { name: string; url: string | undefined; up: () => Promise<boolean> }[] = [
  { name: "memory", url: "memory:", up: async () => true },
  { name: "sqlite", url: `sqlite:${join(tmp, "leases.db")}`, up: async () => true },
  {
    name: "postgres",
    url: withParams(SERVICES.postgres, { tenure_table: TABLE }),
    up: pgUp,
  },
  { name: "redis", url: SERVICES.redis, up: () => redisAnswers(SERVICES.redis) },
  { name: "etcd", url: SERVICES.etcd, up: () => etcdAnswers(SERVICES.etcd) },
];

const ok = { name: "ok-lease", holder: "h", token: 1n };
type Call = [label: string, field: string, call: (s: LeaseStore) => Promise<unknown>];
// biome-ignore lint/suspicious/noExplicitAny: deliberately wrong types, as a JavaScript caller could pass
const bad = (v: unknown) => v as any;
const CALLS: Call[] = [
  ["acquire name with a space", "name", (s) => s.acquire("a b", "h", 1000)],
  ["acquire empty holder", "holder", (s) => s.acquire("ok-lease", "", 1000)],
  ["acquire ttl 0", "ttlMs", (s) => s.acquire("ok-lease", "h", 0)],
  ["acquire ttl 1.5", "ttlMs", (s) => s.acquire("ok-lease", "h", 1.5)],
  ["renew bad name", "lease.name", (s) => s.renew({ ...ok, name: "a b" }, 1000)],
  ["renew empty holder", "lease.holder", (s) => s.renew({ ...ok, holder: "" }, 1000)],
  ["renew token -1", "lease.token", (s) => s.renew({ ...ok, token: -1n }, 1000)],
  ["renew token a number", "lease.token", (s) => s.renew({ ...ok, token: bad(1) }, 1000)],
  ["renew ttl -1", "ttlMs", (s) => s.renew(ok, -1)],
  ["renew no lease", "lease", (s) => s.renew(bad(null), 1000)],
  ["release bad name", "lease.name", (s) => s.release({ ...ok, name: "" })],
  ["release token -1", "lease.token", (s) => s.release({ ...ok, token: -1n })],
  ["release holder not a string", "lease.holder", (s) => s.release({ ...ok, holder: bad(7) })],
  ["read name with a space", "name", (s) => s.read("a b")],
  ["read name not a string", "name", (s) => s.read(bad(undefined))],
  ["forceRelease bad name", "name", (s) => s.forceRelease("-x")],
  ["watch bad name", "name", (s) => (s.watch ? s.watch("a b", () => {}) : skipped())],
  [
    "putFenced bad name",
    "lease.name",
    (s) => s.putFenced({ name: "a b", holder: "h", token: 1n }, "k", "v"),
  ],
  [
    "putFenced token -2",
    "lease.token",
    (s) => s.putFenced({ name: "ok", holder: "h", token: -2n }, "k", "v"),
  ],
  [
    "putFenced no holder",
    "lease.holder",
    (s) => s.putFenced(bad({ name: "ok", token: 1n }), "k", "v"),
  ],
  [
    "putFenced empty key",
    "key",
    (s) => s.putFenced({ name: "ok", holder: "h", token: 1n }, "", "v"),
  ],
  [
    "putFenced key too long",
    "key",
    (s) => s.putFenced({ name: "ok", holder: "h", token: 1n }, "k".repeat(1025), "v"),
  ],
  ["putFenced value not a string", "value", (s) => s.putFenced(ok, "k", bad(5))],
  [
    "putFenced expect a number",
    "opts.expect",
    (s) => s.putFenced(ok, "k", "v", { expect: bad(1) }),
  ],
  ["getFenced bad name", "name", (s) => s.getFenced("a b", "k")],
  ["getFenced empty key", "key", (s) => s.getFenced("ok", "")],
];

const SKIPPED = Symbol("skipped");
function skipped(): Promise<never> {
  return Promise.reject(SKIPPED);
}

for (const b of backends) {
  const up = b.url ? await b.up() : false;
  describe(
    `argument validation: ${b.name}`,
    requireService(b.name, up, "see test/helpers/services.ts"),
    () => {
      it("every operation rejects bad arguments with a ConfigError naming the field", async () => {
        const inner = await openStore(b.url!);
        try {
          for (const [label, field, call] of CALLS) {
            let err: unknown = null;
            try {
              await call(inner);
            } catch (e) {
              err = e;
            }
            if (err === SKIPPED) continue;
            assert.ok(
              isConfigError(err),
              `${b.name} ${label}: expected a ConfigError, got ${String(err)}`,
            );
            assert.equal(err.field, field, `${b.name} ${label}: ${err.message}`);
          }
          // The valid forms still work against the real store.
          assert.equal(await inner.read("ok-lease-unused"), null);
        } finally {
          await inner.close();
        }
      });
    },
  );
}

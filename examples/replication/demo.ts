/**
 * The replication example in one command, against a PostgreSQL of yours with
 * wal_level = logical (see docs/replication.md):
 *
 *   REPLICATION_SOURCE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run example:replication
 *
 * Starts three replicas of examples/replication/main.js, a writer changing
 * the source table, SIGKILLs the leader halfway, stops the writer, waits for
 * the sink to equal the source, and drops the slot and publication it used
 * (a forgotten slot keeps WAL on the server forever). The tables stay, for
 * you to look at.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { Writer } from "./writer.js";

const MAIN = fileURLToPath(new URL("./main.js", import.meta.url));
const url = process.env.REPLICATION_SOURCE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const names = {
  REPLICATION_SLOT: "tenure_demo",
  REPLICATION_PUBLICATION: "tenure_demo",
  REPLICATION_SOURCE_TABLE: "tenure_demo_source",
  REPLICATION_SINK_TABLE: "tenure_demo_sink",
  REPLICATION_LEASE: "tenure-demo-replication",
};
const say = (s: string) => console.log(`\n=== ${s}`);

async function query(text: string, params: unknown[] = []): Promise<pg.QueryResultRow[]> {
  const c = new pg.Client({ connectionString: url, application_name: "tenure-demo" });
  c.on("error", () => {});
  await c.connect();
  try {
    return (await c.query(text, params)).rows;
  } finally {
    await c.end().catch(() => {});
  }
}

const wal = (await query("SHOW wal_level"))[0]?.wal_level;
if (wal !== "logical") {
  console.error(
    `wal_level is ${wal}; logical replication needs wal_level = logical:\n` +
      "  ALTER SYSTEM SET wal_level = logical;  -- then restart PostgreSQL\n" +
      "(see docs/replication.md)",
  );
  process.exit(1);
}

const replicas: { name: string; proc: ChildProcess; exit: Promise<unknown> }[] = [];
function start(name: string) {
  const proc = spawn(process.execPath, [MAIN], {
    stdio: ["ignore", "inherit", "inherit"],
    env: {
      ...process.env,
      ...names,
      REPLICATION_SOURCE_URL: url,
      REPLICATION_HOLDER: name,
      REPLICATION_APP_NAME: `tenure-demo-${name}`,
      REPLICATION_TTL_MS: "3000",
      REPLICATION_RECONNECT_INITIAL_DELAY_MS: "200",
    },
  });
  replicas.push({ name, proc, exit: new Promise((r) => proc.once("exit", r)) });
}

async function cleanUp() {
  for (const r of replicas) r.proc.kill("SIGTERM");
  await Promise.all(replicas.map((r) => r.exit));
  await query(
    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
    [names.REPLICATION_SLOT],
  ).catch((e) => console.error(`could not drop the slot: ${e}`));
  await query(`DROP PUBLICATION IF EXISTS ${names.REPLICATION_PUBLICATION}`).catch(() => {});
}
process.once("SIGINT", () => void cleanUp().then(() => process.exit(130)));

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, ms: number, f: () => Promise<boolean>) {
  const deadline = Date.now() + ms;
  while (!(await f().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await wait(100);
  }
}

say("three replicas start; one is elected and creates the slot if missing");
for (const n of ["A", "B", "C"]) start(n);
await until("the slot", 20_000, async () => {
  const r = await query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [
    names.REPLICATION_SLOT,
  ]);
  return r.length > 0;
});
say("a writer inserts, updates and deletes source rows (50 transactions/s)");
const writer = new Writer({ url, table: names.REPLICATION_SOURCE_TABLE, txPerSecond: 50 });
writer.start();
await wait(3_000);
const [lease] = await query("SELECT holder FROM tenure_leases WHERE name = $1", [
  names.REPLICATION_LEASE,
]);
const victim = replicas.find((r) => r.name === lease?.holder);
if (victim) {
  say(`SIGKILL the leader ${victim.name}; another takes over after the ttl (3 s)`);
  victim.proc.kill("SIGKILL");
}
await wait(5_000);
say("stop the writer; wait for the sink to equal the source");
await writer.stop();
const src = names.REPLICATION_SOURCE_TABLE;
const sink = names.REPLICATION_SINK_TABLE;
await until("the drain", 30_000, async () => {
  const [d] = await query(
    `SELECT count(*)::int AS n FROM (
       (SELECT id, val, version FROM ${src} EXCEPT SELECT id, val, version FROM ${sink})
       UNION ALL (SELECT id, val, version FROM ${sink} EXCEPT SELECT id, val, version FROM ${src})) d`,
  );
  return d?.n === 0;
});
const [twice] = await query(`SELECT count(*)::int AS n FROM ${sink} WHERE applied <> version`);
const [rows] = await query(`SELECT count(*)::int AS n FROM ${src}`);
say(
  `sink equals source (${rows?.n} rows); writer committed ${writer.committed} transactions; ` +
    `rows whose changes were not applied exactly once: ${twice?.n}`,
);
await cleanUp();
say("done (slot and publication dropped; tables kept)");
process.exit(twice?.n === 0 ? 0 : 1);

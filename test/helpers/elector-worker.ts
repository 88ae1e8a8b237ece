/**
 * A candidate process for multi-process tests: campaigns for one lease and
 * prints one JSON line per event on stdout, stamped with CLOCK_MONOTONIC
 * nanoseconds (`t`), which all processes on this host share.
 * Usage: node elector-worker.js STORE_URL NAME HOLDER TTL_MS [RETRY_MS]
 * SIGTERM/SIGINT: elector.stop() (fast handoff), prints "stopped", exits 0.
 */
import { createElector, openStore } from "../../src/index.js";

const [url, name, holder, ttl, retry] = process.argv.slice(2);
if (!url || !name || !holder || !ttl) {
  process.stderr.write("usage: elector-worker STORE_URL NAME HOLDER TTL_MS [RETRY_MS]\n");
  process.exit(64);
}
const out = (event: string, extra: Record<string, unknown> = {}) =>
  process.stdout.write(
    `${JSON.stringify({ event, holder, pid: process.pid, t: process.hrtime.bigint().toString(), ...extra })}\n`,
  );

const store = await openStore(url);
const elector = createElector({
  store,
  name,
  holderId: holder,
  ttlMs: Number(ttl),
  ...(retry ? { retryMs: Number(retry) } : {}),
});
elector.on("elected", (t) => out("elected", { token: t.token.toString() }));
elector.on("demoted", (d) => out("demoted", { token: d.token.toString(), reason: d.reason }));
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await elector.stop();
  out("stopped");
  await store.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
await elector.start();
out("started");

/**
 * A leader-held logical replication stream from a PostgreSQL source table
 * into a PostgreSQL sink table, exactly once across failovers.
 * See docs/replication.md.
 *
 * Run several copies; one leads and streams, the others wait:
 *   REPLICATION_SOURCE_URL=postgres://localhost/app node dist/examples/replication/main.js
 *
 * In your own code the imports below are `tenure` and `tenure/postgres`.
 *
 * Or let the CLI do the election (same code; the child gets TENURE_TOKEN):
 *   TENURE_STORE=postgres://localhost/app tenure run --name replication -- \
 *     node dist/examples/replication/main.js
 */
import { createServer } from "node:http";
import { Registry } from "prom-client";
import {
  backoffDelay,
  createElector,
  createStreamLogger,
  errorMessage,
  type Logger,
  type LogLevel,
  serveHealth,
  strategyFromEnv,
} from "../../src/index.js";
import {
  fence,
  openPostgresStore,
  type PostgresStore,
  parsePostgresUrl,
} from "../../src/stores/postgres/index.js";
import { type ReplicationConfig, Replicator } from "./replicator.js";

const env = process.env;

function int(name: string, def: number, min: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return def;
  if (!/^\d+$/.test(raw) || Number(raw) < min) {
    console.error(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(raw)}`);
    process.exit(64);
  }
  return Number(raw);
}

function withApp(url: string, app: string): string {
  const u = new URL(url);
  if (!u.searchParams.has("application_name")) u.searchParams.set("application_name", app);
  return u.toString();
}

const sourceUrl = env.REPLICATION_SOURCE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const sinkUrl = env.REPLICATION_SINK_URL ?? sourceUrl;
/** The lease table must live in the sink database: the fence runs inside the sink transaction. */
const storeUrl = env.TENURE_STORE || sinkUrl;
const appName = env.REPLICATION_APP_NAME ?? "tenure-replication";
const cfg: ReplicationConfig = {
  sourceUrl,
  sinkUrl,
  slot: env.REPLICATION_SLOT ?? "tenure_example",
  publication: env.REPLICATION_PUBLICATION ?? "tenure_example",
  sourceTable: env.REPLICATION_SOURCE_TABLE ?? "tenure_example_source",
  sinkTable: env.REPLICATION_SINK_TABLE ?? "tenure_example_sink",
  batchMaxChanges: int("REPLICATION_BATCH_MAX_CHANGES", 500, 1),
  batchMaxMs: int("REPLICATION_BATCH_MAX_MS", 50, 0),
  takeover: env.REPLICATION_TAKEOVER !== "0",
  appName,
  ...(env.REPLICATION_TEST_HOLD_FILE ? { holdFile: env.REPLICATION_TEST_HOLD_FILE } : {}),
};
const level = env.REPLICATION_LOG_LEVEL || "info";
if (!["debug", "info", "warn", "error"].includes(level)) {
  console.error(
    `REPLICATION_LOG_LEVEL must be debug, info, warn or error, got ${JSON.stringify(level)}`,
  );
  process.exit(64);
}
const logger = createStreamLogger({
  format: env.REPLICATION_LOG_FORMAT === "json" ? "json" : "human",
  level: level as LogLevel,
  base: { app: appName },
});
const recovery = strategyFromEnv("REPLICATION");
const healthPort = env.REPLICATION_HEALTH_PORT ? int("REPLICATION_HEALTH_PORT", 0, 0) : null;

if (env.TENURE_TOKEN) await underCli(logger);
else await withElector(logger);

/** The elector does the election; the stream runs under `strategyFromEnv("REPLICATION")`. */
async function withElector(log: Logger): Promise<void> {
  const store = await openWithRetry(log);
  const replicator = new Replicator(cfg, (tx, term) => store.fence(tx, term), log);
  const elector = createElector({
    store,
    name: env.REPLICATION_LEASE ?? "replication",
    ttlMs: int("REPLICATION_TTL_MS", 10_000, 10),
    logger: log,
    ...(env.REPLICATION_HOLDER ? { holderId: env.REPLICATION_HOLDER } : {}),
  });
  elector.stream({
    name: "replication",
    recovery,
    run: (term, ctx) => replicator.run(term, ctx),
  });
  let health: { close(): Promise<void> } | null = null;
  if (healthPort !== null) {
    const registry = new Registry();
    replicator.registerMetrics(registry);
    const h = await serveHealth(elector, { port: healthPort, registry });
    health = h;
    log.info("health and metrics", { port: h.port });
  }
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await elector.stop(); // stops the stream first, then releases the lease: fast handoff
    await health?.close();
    await replicator.close();
    await store.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  await elector.start();
}

/** The store may be down when we start (a restarting server): keep trying, with backoff. */
async function openWithRetry(log: Logger): Promise<PostgresStore> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await openPostgresStore(withApp(storeUrl, `${appName}-lease`), { logger: log });
    } catch (e) {
      const delayMs = backoffDelay(attempt, { initialMs: 200, maxMs: 10_000, jitter: 0.2 });
      log.warn("cannot open the lease store; retrying", { attempt, delayMs, err: e });
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}

/**
 * Under `tenure run`: the CLI holds the lease and gives us its term in
 * TENURE_NAME / TENURE_TOKEN; it sends SIGTERM when the term ends. The same
 * replicator runs, fenced with that token, under the same recovery strategy.
 */
async function underCli(log: Logger): Promise<void> {
  const token = env.TENURE_TOKEN ?? "";
  if (!/^[1-9][0-9]*$/.test(token)) {
    console.error(`TENURE_TOKEN must be a positive integer, got ${JSON.stringify(token)}`);
    process.exit(64);
  }
  const holder = env.TENURE_HOLDER ?? "";
  if (holder === "") {
    console.error("TENURE_HOLDER must be set (tenure run sets it with TENURE_TOKEN)");
    process.exit(64);
  }
  // The whole term: fence checks the lease's holder and token.
  const term = { name: env.TENURE_NAME ?? "replication", holder, token: BigInt(token) };
  const { options } = parsePostgresUrl(storeUrl);
  const replicator = new Replicator(cfg, (tx, t) => fence(tx, t, options), log);
  const ac = new AbortController();
  const onSignal = () => ac.abort();
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  const server = healthPort === null ? null : metricsServer(replicator, healthPort);
  let failures = 0;
  while (!ac.signal.aborted) {
    try {
      await replicator.run(term, { signal: ac.signal, healthy: () => (failures = 0) });
      if (ac.signal.aborted) break;
    } catch (e) {
      if (ac.signal.aborted) break;
      failures += 1;
      if (recovery.strategy === "exit") {
        log.error("stream failed; exiting (strategy exit)", {
          err: e,
          exitCode: recovery.exitCode,
        });
        await new Promise((r) => setTimeout(r, recovery.exitDelayMs));
        process.exit(recovery.exitCode);
      }
      if (
        recovery.strategy === "log" ||
        (recovery.maxAttempts > 0 && failures > recovery.maxAttempts)
      ) {
        log.error("stream failed; leaving it stopped until the term ends", { err: e });
        await new Promise((r) => ac.signal.addEventListener("abort", r, { once: true }));
        break;
      }
      const delayMs = backoffDelay(failures, {
        initialMs: recovery.initialDelayMs,
        maxMs: recovery.maxDelayMs,
        jitter: 0.2,
      });
      log.warn("stream failed; reconnecting", { attempt: failures, delayMs, err: e });
      await new Promise<void>((r) => {
        // The listener goes when the wait ends either way: a long run retries many times.
        const wake = () => {
          clearTimeout(timer);
          r();
        };
        const timer = setTimeout(() => {
          ac.signal.removeEventListener("abort", wake);
          r();
        }, delayMs);
        ac.signal.addEventListener("abort", wake, { once: true });
      });
    }
  }
  server?.close();
  await replicator.close();
  process.exit(0);
}

/** Replication metrics on their own port (the CLI's --health-port serves the lease's). */
function metricsServer(replicator: Replicator, port: number) {
  const registry = new Registry();
  replicator.registerMetrics(registry);
  const server = createServer((_req, res) => {
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (e) => res.writeHead(500).end(errorMessage(e)),
    );
  });
  server.on("error", (e) => logger.warn("metrics server failed", { port, err: e }));
  server.listen(port, "127.0.0.1");
  return server;
}

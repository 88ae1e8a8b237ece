import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Where the test services are. Defaults are the machine's own PostgreSQL and
 * Redis; scripts/services.sh writes the ports of what it started (PgBouncer,
 * etcd) to .services/env, which is read here. Environment variables win.
 */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

function fileEnv(): Record<string, string> {
  const p = join(ROOT, ".services", "env");
  if (!existsSync(p)) return {};
  const out: Record<string, string> = {};
  for (const line of readFileSync(p, "utf8").split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

const env = { ...fileEnv(), ...process.env } as Record<string, string | undefined>;

export const SERVICES = {
  postgres: env.TENURE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test",
  redis: env.TENURE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379",
  pgbouncer: env.TENURE_TEST_PGBOUNCER_URL,
  etcd: env.TENURE_TEST_ETCD_URL,
  /** Comma-separated client URLs of a 3-member etcd cluster, when started. */
  etcdCluster: env.TENURE_TEST_ETCD_CLUSTER_URL,
} as const;

export const IN_CI = process.env.CI === "true" || process.env.CI === "1";

export const REPO_ROOT = ROOT;

/**
 * Options for node:test `describe`/`it` that skip (locally) or fail (in CI) when
 * a service is missing, with a message naming it and how to start it.
 */
export function requireService(
  name: string,
  available: boolean,
  howToStart: string,
): { skip?: string } {
  if (available) return {};
  const msg = `${name} is not available: ${howToStart}`;
  if (IN_CI) throw new Error(`CI requires every backend: ${msg}`);
  process.stderr.write(`# SKIP ${msg}\n`);
  return { skip: msg };
}

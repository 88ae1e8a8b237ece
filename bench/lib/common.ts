/**
 * Shared helpers of the benchmark: service locations, timing statistics and a
 * child-process runner. Every measurement runs in its own child process so one
 * library's leaked timers or sockets cannot slow the next one, and each child
 * ends with process.exit after printing its JSON result.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Repository root (dist/bench/lib → ../../..). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

function fileEnv(): Record<string, string> {
  const p = join(ROOT, ".services", "env");
  if (!existsSync(p)) return {};
  const out: Record<string, string> = {};
  for (const line of readFileSync(p, "utf8").split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m?.[1] && m[2] !== undefined) out[m[1]] = m[2];
  }
  return out;
}

/** Where the servers are: environment, then .services/env, then the machine defaults. */
export function serviceUrls(): {
  postgres: string;
  redis: string;
  etcd: string | undefined;
  /** PgBouncer in transaction mode in front of `postgres` (failover only). */
  pgbouncer: string | undefined;
} {
  const env = { ...fileEnv(), ...process.env } as Record<string, string | undefined>;
  return {
    postgres:
      env.TENURE_BENCH_PG_URL ??
      env.TENURE_TEST_PG_URL ??
      "postgres://postgres@127.0.0.1:5432/test",
    redis: env.TENURE_BENCH_REDIS_URL ?? env.TENURE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379",
    etcd: env.TENURE_BENCH_ETCD_URL ?? env.TENURE_TEST_ETCD_URL,
    pgbouncer: env.TENURE_BENCH_PGBOUNCER_URL ?? env.TENURE_TEST_PGBOUNCER_URL,
  };
}

/** `etcd://host:port` → `http://host:port` for the etcd3 client. */
export function etcdHosts(url: string): string[] {
  return url
    .replace(/^etcd:\/\//, "")
    .split(",")
    .map((h) => (h.startsWith("http") ? h : `http://${h}`));
}

/** Monotonic nanoseconds, shared by every process on this host (CLOCK_MONOTONIC). */
export function nowNs(): bigint {
  return process.hrtime.bigint();
}

export function msSince(startNs: bigint): number {
  return Number(nowNs() - startNs) / 1e6;
}

export interface Stats {
  n: number;
  p50: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** Percentiles (nearest-rank) of a list of milliseconds. */
export function stats(samples: number[]): Stats {
  if (samples.length === 0)
    return {
      n: 0,
      p50: Number.NaN,
      p99: Number.NaN,
      mean: Number.NaN,
      min: Number.NaN,
      max: Number.NaN,
    };
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) =>
    s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] as number;
  return {
    n: s.length,
    p50: round(at(0.5)),
    p99: round(at(0.99)),
    mean: round(s.reduce((a, b) => a + b, 0) / s.length),
    min: round(s[0] as number),
    max: round(s[s.length - 1] as number),
  };
}

export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Random lease/key names so concurrent test runs on the same servers never collide. */
export function uniqueName(prefix: string): string {
  return `bench-${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Path of a compiled bench entry point next to this file's parent. */
export function benchScript(file: string): string {
  return join(dirname(fileURLToPath(import.meta.url)), "..", file);
}

export interface ChildResult<T> {
  ok: boolean;
  result?: T;
  error?: string;
  stderr: string;
}

/**
 * Runs `node script args…`, passing `input` as JSON in argv, and parses the last
 * stdout line starting with `{"result"` or `{"error"`. Kills it after `timeoutMs`.
 */
export function runChild<T>(
  script: string,
  input: unknown,
  timeoutMs: number,
  nodeArgs: string[] = [],
): Promise<ChildResult<T>> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [...nodeArgs, benchScript(script), JSON.stringify(input)],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      err += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const line = out
        .trim()
        .split("\n")
        .reverse()
        .find((l) => l.startsWith("{"));
      if (line) {
        try {
          const parsed = JSON.parse(line) as { result?: T; error?: string };
          if (parsed.error !== undefined) {
            resolve({ ok: false, error: parsed.error, stderr: err.slice(-2000) });
            return;
          }
          if (parsed.result !== undefined) {
            resolve({ ok: true, result: parsed.result, stderr: err.slice(-2000) });
            return;
          }
        } catch {
          /* fall through */
        }
      }
      resolve({
        ok: false,
        error:
          signal === "SIGKILL"
            ? `timed out after ${timeoutMs} ms`
            : `exited with ${code ?? signal} without a result`,
        stderr: err.slice(-2000),
      });
    });
  });
}

/** Child side: prints the result (or the error) as one JSON line and exits. */
export async function childMain<T>(fn: (input: T) => Promise<unknown>): Promise<void> {
  let code = 0;
  try {
    const input = JSON.parse(process.argv[2] ?? "{}") as T;
    const result = await fn(input);
    process.stdout.write(`${JSON.stringify({ result }, bigintSafe)}\n`);
  } catch (e) {
    code = 1;
    const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    process.stdout.write(`${JSON.stringify({ error: msg })}\n`);
  }
  // Some peers (etcd3 Lock/Election) leave keepalive timers behind: exit explicitly.
  process.exit(code);
}

export function bigintSafe(_k: string, v: unknown): unknown {
  return typeof v === "bigint" ? v.toString() : v;
}

/** Version of an installed package, from its package.json. */
export function pkgVersion(name: string): string {
  try {
    const p = join(ROOT, "node_modules", name, "package.json");
    return String((JSON.parse(readFileSync(p, "utf8")) as { version: string }).version).replace(
      /^v/,
      "",
    );
  } catch {
    return "not installed";
  }
}

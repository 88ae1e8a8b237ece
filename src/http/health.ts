import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Elector } from "../elector/elector.js";
import { ConfigError } from "../errors.js";
import { checkInt } from "../limits.js";
import { logReplacer } from "../logger.js";
import { createMetrics, type MetricsOptions, type TenureMetrics } from "./metrics.js";

/** What `/readyz` requires (see {@link HealthHandlerOptions.readiness}). */
export type Readiness = "reachable" | "leader";

/** Options of {@link healthHandler}. */
export interface HealthHandlerOptions extends MetricsOptions {
  /** Path of the whole-health check (`health().healthy`). Default `/healthz`. */
  healthPath?: string;
  /** Path of the liveness check (the elector loop runs). Default `/livez`. */
  livePath?: string;
  /** Path of the readiness check. Default `/readyz`. */
  readyPath?: string;
  /** Path that answers 200 only on the leader. Default `/leader`. */
  leaderPath?: string;
  /** Path of the Prometheus metrics. Default `/metrics`. */
  metricsPath?: string;
  /**
   * When `/readyz` answers 200: `reachable` (default) while every elector
   * campaigns or leads, is healthy and its last store call succeeded;
   * `leader` only while every elector leads (a Service that routes to the
   * leader alone).
   */
  readiness?: Readiness;
}

/**
 * A request handler for node:http, Express (`app.use(handler)`; unknown
 * paths go to `next`) and Fastify (`reply.hijack()` then
 * `handler(req.raw, reply.raw)`). Also carries `metrics` and `close()`.
 */
export interface HealthHandler {
  (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void;
  readonly metrics: TenureMetrics;
  /** Unsubscribes the metrics from the electors. */
  close(): void;
}

function snapshot(e: Elector) {
  const h = e.health();
  return { name: e.name, holder: e.holderId, isLeader: e.isLeader(), ...h };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.statusCode = status;
  res.setHeader("content-type", type);
  res.setHeader("cache-control", "no-store");
  res.end(body);
}

type Snapshot = ReturnType<typeof snapshot>;

/** Is the store answering this elector now (it has answered, and its last call did not fail)? */
function reachable(s: Snapshot): boolean {
  return s.lastStoreContactMs !== null && s.consecutiveFailures === 0;
}

/**
 * Health and metrics over HTTP for one or more electors:
 * `GET /livez` — 200 while every elector's loop runs (`health().live`); a
 * store outage never fails it (the liveness probe);
 * `GET /readyz` — see {@link HealthHandlerOptions.readiness} (the readiness probe);
 * `GET /leader` — 200 only while every elector leads (`?lease=NAME`: that one);
 * `GET /healthz` — 200 while every elector's `health()` is healthy, store
 * reachability and leader work included (for alerts, not for liveness);
 * `GET /metrics` — Prometheus text (is_leader, term_token, elections, demotions
 * by reason, renew latency, store errors by class, tick runs/skips…).
 * Bodies of the checks are JSON (tokens as strings).
 */
export function healthHandler(
  electors: Elector | readonly Elector[],
  opts: HealthHandlerOptions = {},
): HealthHandler {
  const list = Array.isArray(electors) ? [...electors] : [electors as Elector];
  if (list.length === 0) throw new ConfigError("electors", "must name at least one elector");
  const paths = {
    health: opts.healthPath ?? "/healthz",
    live: opts.livePath ?? "/livez",
    ready: opts.readyPath ?? "/readyz",
    leader: opts.leaderPath ?? "/leader",
    metrics: opts.metricsPath ?? "/metrics",
  };
  const readiness = opts.readiness ?? "reachable";
  if (readiness !== "reachable" && readiness !== "leader") {
    throw new ConfigError(
      "readiness",
      `must be "reachable" or "leader", got ${JSON.stringify(readiness)}`,
    );
  }
  const checks: Record<string, (s: Snapshot) => boolean> = {
    [paths.health]: (s) => s.healthy,
    [paths.live]: (s) => s.live,
    [paths.ready]:
      readiness === "leader"
        ? (s) => s.isLeader && s.healthy
        : (s) => s.healthy && (s.state === "follower" || s.state === "leader") && reachable(s),
    [paths.leader]: (s) => s.isLeader,
  };
  for (const [k, v] of Object.entries(paths)) {
    if (typeof v !== "string" || !v.startsWith("/"))
      throw new ConfigError(`${k}Path`, `must start with "/", got ${JSON.stringify(v)}`);
  }
  if (new Set(Object.values(paths)).size !== Object.keys(paths).length) {
    throw new ConfigError("paths", `must all differ, got ${JSON.stringify(paths)}`);
  }
  const metrics = createMetrics(list, opts);
  const handler = ((req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => {
    const [path = "/", query = ""] = (req.url ?? "/").split("?");
    const method = req.method ?? "GET";
    const known = path === paths.metrics || Object.hasOwn(checks, path);
    if (!known) {
      if (next) return next();
      return send(res, 404, "application/json", `{"error":"not found"}\n`);
    }
    if (method !== "GET" && method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      return send(res, 405, "application/json", `{"error":"method not allowed"}\n`);
    }
    if (path === paths.metrics) {
      metrics.text().then(
        (text) => send(res, 200, metrics.registry.contentType, text),
        (e) =>
          send(res, 500, "text/plain", `metrics failed: ${String((e as Error)?.message ?? e)}\n`),
      );
      return;
    }
    const lease = path === paths.leader ? new URLSearchParams(query).get("lease") : null;
    const chosen = lease === null ? list : list.filter((e) => e.name === lease);
    if (chosen.length === 0) {
      return send(res, 404, "application/json", `${JSON.stringify({ error: "no such lease" })}\n`);
    }
    const snaps = chosen.map(snapshot);
    const ok = snaps.every(checks[path]!);
    const body = { status: ok ? "ok" : "unavailable", electors: snaps };
    send(res, ok ? 200 : 503, "application/json", `${JSON.stringify(body, logReplacer)}\n`);
  }) as HealthHandler;
  Object.defineProperty(handler, "metrics", { value: metrics });
  Object.defineProperty(handler, "close", { value: () => metrics.close() });
  return handler;
}

/** A running health server. */
export interface HealthServer {
  readonly server: Server;
  /** The port it listens on (useful with port 0). */
  readonly port: number;
  close(): Promise<void>;
}

/** Options of {@link serveHealth}. */
export interface ServeHealthOptions extends HealthHandlerOptions {
  /** TCP port; 0 picks a free one. Required. */
  port: number;
  /** Interface to bind. Default `127.0.0.1`. */
  host?: string;
}

/** Starts a node:http server answering {@link healthHandler}'s paths (used by the CLI's `--health-port`). */
export async function serveHealth(
  electors: Elector | readonly Elector[],
  opts: ServeHealthOptions,
): Promise<HealthServer> {
  checkInt("port", opts?.port, 0, 65_535);
  const handler = healthHandler(electors, opts);
  const server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        handler.close();
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Elector } from "../elector/elector.js";
import { ConfigError } from "../errors.js";
import type { Disposable } from "../events.js";

/** Options of {@link createMetrics}. */
export interface MetricsOptions {
  /** Prefix of every metric name. Default `tenure_`. */
  prefix?: string;
  /** Registry to register into. Default: a new private Registry (never the global one). */
  registry?: Registry;
  /** Renew latency histogram buckets, in seconds. Default 0.001 … 5. */
  renewBuckets?: number[];
  /**
   * Add a `holder` label to every metric. Default false: a holder id
   * (`host:pid:random`) changes on every restart, so as a label it makes new
   * series forever; the current leader is in `tenure_leader_info{lease,holder}`
   * instead. Needed (and then required) only when several electors of one
   * lease share a registry.
   */
  holderLabel?: boolean;
}

/** Prometheus metrics of a set of electors; values are read from the electors at scrape time. */
export interface TenureMetrics {
  readonly registry: Registry;
  /** The metrics in Prometheus text format. */
  text(): Promise<string>;
  /** Unsubscribes from the electors' events. */
  close(): void;
}

const DEFAULT_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Builds the Tenure metrics for `electors` in a private prom-client Registry. */
export function createMetrics(
  electors: readonly Elector[],
  opts: MetricsOptions = {},
): TenureMetrics {
  const p = opts.prefix ?? "tenure_";
  const holderLabel = opts.holderLabel ?? false;
  if (!holderLabel) {
    const seen = new Set<string>();
    for (const e of electors) {
      if (seen.has(e.name)) {
        throw new ConfigError(
          "holderLabel",
          `must be true when several electors of one lease ("${e.name}") share the metrics`,
        );
      }
      seen.add(e.name);
    }
  }
  /** Labels naming one elector: its lease (and its holder, with holderLabel). */
  const who = (e: Elector): Record<string, string> =>
    holderLabel ? { lease: e.name, holder: e.holderId } : { lease: e.name };
  const base = holderLabel ? ["lease", "holder"] : ["lease"];
  const registry = opts.registry ?? new Registry();
  const registers = [registry];
  // One definition of "a metric whose value is collected at scrape time".
  const collected = <M extends { reset(): void }>(
    name: string,
    help: string,
    labelNames: string[],
    collect: (m: M) => void,
  ) => ({
    name: p + name,
    help,
    labelNames,
    registers,
    collect(this: M) {
      this.reset();
      collect(this);
    },
  });
  const gauge = (name: string, help: string, labelNames: string[], collect: (g: Gauge) => void) =>
    new Gauge(collected(name, help, labelNames, collect));
  const counter = (
    name: string,
    help: string,
    labelNames: string[],
    collect: (c: Counter) => void,
  ) => new Counter(collected(name, help, labelNames, collect));

  gauge(
    "leader_info",
    "1 for the leader of each lease as this process last learned it (holder label: its id).",
    ["lease", "holder"],
    (g) => {
      const done = new Set<string>();
      for (const e of electors) {
        const l = e.leader();
        if (!l || done.has(e.name)) continue;
        done.add(e.name);
        g.set({ lease: e.name, holder: l.holder }, 1);
      }
    },
  );
  gauge("is_leader", "1 while this process leads the lease (clock-checked), else 0.", base, (g) => {
    for (const e of electors) g.set(who(e), e.isLeader() ? 1 : 0);
  });
  gauge("healthy", "1 while health() reports healthy, else 0.", base, (g) => {
    for (const e of electors) g.set(who(e), e.health().healthy ? 1 : 0);
  });
  gauge("term_token", "Fencing token of the current term (0 when not leading).", base, (g) => {
    for (const e of electors) g.set(who(e), Number(e.term()?.token ?? 0n));
  });
  counter("elections_total", "Terms won by this process.", base, (c) => {
    for (const e of electors) c.inc(who(e), e.stats().elections);
  });
  counter("demotions_total", "Terms ended, by reason.", [...base, "reason"], (c) => {
    for (const e of electors) {
      for (const [reason, n] of Object.entries(e.stats().demotions))
        c.inc({ ...who(e), reason }, n);
    }
  });
  counter("renewals_total", "Confirmed renewals.", base, (c) => {
    for (const e of electors) c.inc(who(e), e.stats().renewals);
  });
  counter(
    "store_errors_total",
    "Failed store calls, by class (transient or fatal).",
    [...base, "class"],
    (c) => {
      for (const e of electors) {
        const s = e.stats().storeErrors;
        c.inc({ ...who(e), class: "transient" }, s.transient);
        c.inc({ ...who(e), class: "fatal" }, s.fatal);
      }
    },
  );
  const tickCounter = (
    name: string,
    help: string,
    field: "runs" | "skips" | "errors" | "notLeader" | "claimLost",
  ) =>
    counter(name, help, [...base, "tick"], (c) => {
      for (const e of electors) {
        for (const t of e.leaderWork.stats().ticks) c.inc({ ...who(e), tick: t.name }, t[field]);
      }
    });
  tickCounter("tick_runs_total", "Leader-only tick runs started.", "runs");
  tickCounter(
    "tick_skips_total",
    "Tick fire times skipped because the previous run was still going.",
    "skips",
  );
  tickCounter("tick_errors_total", "Tick runs that failed.", "errors");
  tickCounter(
    "tick_not_leader_total",
    "Tick fire times that found this process not leading.",
    "notLeader",
  );
  tickCounter(
    "tick_claim_lost_total",
    "Claimed tick fire times already taken (or fenced off).",
    "claimLost",
  );
  gauge(
    "service_running",
    "1 while a leader-only service is running, else 0.",
    [...base, "service"],
    (g) => {
      for (const e of electors) {
        for (const s of e.leaderWork.stats().services)
          g.set({ ...who(e), service: s.name }, s.state === "running" ? 1 : 0);
      }
    },
  );
  counter(
    "stream_failures_total",
    "Leader-held stream runs that failed while leading.",
    [...base, "stream"],
    (c) => {
      for (const e of electors) {
        for (const s of e.leaderWork.stats().streams)
          c.inc({ ...who(e), stream: s.name }, s.failures);
      }
    },
  );
  counter("stream_reconnects_total", "Stream reconnects.", [...base, "stream"], (c) => {
    for (const e of electors) {
      for (const s of e.leaderWork.stats().streams)
        c.inc({ ...who(e), stream: s.name }, s.reconnects);
    }
  });
  const latency = new Histogram({
    name: `${p}renew_latency_seconds`,
    help: "Round trip of confirmed renewals.",
    labelNames: base,
    buckets: opts.renewBuckets ?? DEFAULT_BUCKETS,
    registers,
  });
  const subs: Disposable[] = electors.map((e) =>
    e.on("renewed", (r) => latency.observe(who(e), r.latencyMs / 1000)),
  );
  return {
    registry,
    text: () => registry.metrics(),
    close: () => {
      for (const off of subs) off();
    },
  };
}

import type { Elector } from "../elector/elector.js";
import { ConfigError } from "../errors.js";
import type { Disposable } from "../events.js";

/** Attributes of one observation. */
type Attrs = Record<string, string>;

/** The part of an OpenTelemetry `ObservableResult` used here. */
export interface ObservableResultLike {
  observe(value: number, attributes?: Attrs): void;
}
type Callback = (r: ObservableResultLike) => void;
/** The part of an OpenTelemetry observable instrument used here. */
export interface ObservableLike {
  addCallback(cb: Callback): void;
  removeCallback(cb: Callback): void;
}
/** The part of an OpenTelemetry `Meter` used here (typed locally: `@opentelemetry/api` is an optional peer). */
export interface MeterLike {
  createObservableGauge(
    name: string,
    opts?: { description?: string; unit?: string },
  ): ObservableLike;
  createObservableCounter(
    name: string,
    opts?: { description?: string; unit?: string },
  ): ObservableLike;
  createHistogram(
    name: string,
    opts?: { description?: string; unit?: string },
  ): { record(value: number, attributes?: Attrs): void };
}

/** Options of {@link createOtelMetrics}. */
export interface OtelMetricsOptions {
  /** Meter to create the instruments on. Default `metrics.getMeter("tenure")` of `@opentelemetry/api`. */
  meter?: MeterLike;
  /** Prefix of every instrument name. Default `tenure.`. */
  prefix?: string;
}

/** OpenTelemetry instruments of a set of electors; `close()` detaches them. */
export interface OtelMetrics {
  close(): void;
}

/**
 * Tenure's metrics through OpenTelemetry (`@opentelemetry/api`, an optional
 * peer dependency), beside prom-client's `/metrics`: observable gauges
 * `tenure.is_leader`, `tenure.healthy`, `tenure.term_token`,
 * `tenure.leader_info` (1, attributes `lease` and `holder` of the known
 * leader), observable counters `tenure.elections`, `tenure.demotions`
 * (`reason`), `tenure.renewals`, `tenure.store_errors` (`class`), and the
 * histogram `tenure.renew_latency` (seconds). Attributes: `lease` (never the
 * holder id, which changes on every restart, except on `leader_info`).
 */
export async function createOtelMetrics(
  electors: Elector | readonly Elector[],
  opts: OtelMetricsOptions = {},
): Promise<OtelMetrics> {
  const list: Elector[] = Array.isArray(electors) ? [...electors] : [electors as Elector];
  let meter = opts.meter;
  if (!meter) {
    try {
      const api = await import("@opentelemetry/api");
      meter = api.metrics.getMeter("tenure") as unknown as MeterLike;
    } catch {
      throw new ConfigError(
        "meter",
        "OpenTelemetry metrics need the @opentelemetry/api package (npm install @opentelemetry/api), or pass a meter",
      );
    }
  }
  const p = opts.prefix ?? "tenure.";
  const m = meter;
  const attached: [ObservableLike, Callback][] = [];
  const observe = (
    kind: "gauge" | "counter",
    name: string,
    description: string,
    cb: Callback,
    unit?: string,
  ) => {
    const o = { description, ...(unit ? { unit } : {}) };
    const inst =
      kind === "gauge"
        ? m.createObservableGauge(p + name, o)
        : m.createObservableCounter(p + name, o);
    inst.addCallback(cb);
    attached.push([inst, cb]);
  };
  const lease = (e: Elector) => ({ lease: e.name });

  observe(
    "gauge",
    "is_leader",
    "1 while this process leads the lease (clock-checked), else 0.",
    (r) => {
      for (const e of list) r.observe(e.isLeader() ? 1 : 0, lease(e));
    },
  );
  observe("gauge", "healthy", "1 while health() reports healthy, else 0.", (r) => {
    for (const e of list) r.observe(e.health().healthy ? 1 : 0, lease(e));
  });
  observe("gauge", "term_token", "Fencing token of the current term (0 when not leading).", (r) => {
    for (const e of list) r.observe(Number(e.term()?.token ?? 0n), lease(e));
  });
  observe(
    "gauge",
    "leader_info",
    "1 for the known leader of each lease (holder attribute).",
    (r) => {
      for (const e of list) {
        const l = e.leader();
        if (l) r.observe(1, { lease: e.name, holder: l.holder });
      }
    },
  );
  observe("counter", "elections", "Terms won by this process.", (r) => {
    for (const e of list) r.observe(e.stats().elections, lease(e));
  });
  observe("counter", "demotions", "Terms ended, by reason.", (r) => {
    for (const e of list) {
      for (const [reason, n] of Object.entries(e.stats().demotions)) {
        r.observe(n, { ...lease(e), reason });
      }
    }
  });
  observe("counter", "renewals", "Confirmed renewals.", (r) => {
    for (const e of list) r.observe(e.stats().renewals, lease(e));
  });
  observe("counter", "store_errors", "Failed store calls, by class.", (r) => {
    for (const e of list) {
      const s = e.stats().storeErrors;
      r.observe(s.transient, { ...lease(e), class: "transient" });
      r.observe(s.fatal, { ...lease(e), class: "fatal" });
    }
  });
  const latency = m.createHistogram(`${p}renew_latency`, {
    description: "Round trip of confirmed renewals.",
    unit: "s",
  });
  const subs: Disposable[] = list.map((e) =>
    e.on("renewed", (x) => latency.record(x.latencyMs / 1000, lease(e))),
  );
  return {
    close: () => {
      for (const [inst, cb] of attached) inst.removeCallback(cb);
      for (const off of subs) off();
    },
  };
}

/**
 * Interleaved rounds (issue 13): the peers of one server take turns in short
 * rounds (A B C D, B C D A, C D A B …) for the whole measurement, so a noisy
 * second hits every peer alike. Each peer gets one figure per round; a peer is
 * judged by the median of its per-round figures and by the median of its
 * per-round ratio to the best peer, with the spread (p10–p90) of that ratio.
 */

/** The figures of one peer in one round. */
export interface RoundFigure {
  /** Completed cycles in the round. */
  cycles: number;
  /** Cycles per second over the round. */
  opsPerSec: number;
  /** Median cycle latency in the round (ms). */
  p50: number;
  /** 99th percentile cycle latency in the round (ms). */
  p99: number;
  /** CPU of this (client) process per cycle, user + system (µs). */
  cpuUsPerOp: number;
  /** Failed tries per completed cycle (contended rounds). */
  failedTriesPerCycle?: number;
}

export interface PeerSeries {
  id: string;
  /** One entry per round, `null` where the peer had no completed cycle. */
  rounds: (RoundFigure | null)[];
  error?: string;
}

/** Round `r`'s order: the peer list rotated by `r`. */
export function roundOrder<T>(peers: readonly T[], r: number): T[] {
  const n = peers.length;
  if (n === 0) return [];
  const k = ((r % n) + n) % n;
  return [...peers.slice(k), ...peers.slice(0, k)];
}

/** Nearest-rank quantile of a list (q in 0..1); NaN for an empty list. */
export function quantile(xs: readonly number[], q: number): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] as number;
}

export const median = (xs: readonly number[]) => quantile(xs, 0.5);

export interface Ratio {
  /** Median of the per-round ratios. */
  median: number;
  p10: number;
  p90: number;
  /** Rounds in which both peers had a figure. */
  rounds: number;
  /** The p10–p90 spread contains 1.0: this run does not say which of the two is faster. */
  noClearWinner: boolean;
}

/** Per-round ratio `a[r] / b[r]` of one figure over the rounds both peers have. */
export function ratioOver(a: PeerSeries, b: PeerSeries, figure: (f: RoundFigure) => number): Ratio {
  const rs: number[] = [];
  const n = Math.min(a.rounds.length, b.rounds.length);
  for (let i = 0; i < n; i++) {
    const x = a.rounds[i];
    const y = b.rounds[i];
    if (!x || !y) continue;
    const r = figure(x) / figure(y);
    if (Number.isFinite(r)) rs.push(r);
  }
  const p10 = quantile(rs, 0.1);
  const p90 = quantile(rs, 0.9);
  return {
    median: median(rs),
    p10,
    p90,
    rounds: rs.length,
    noClearWinner: rs.length > 0 && p10 <= 1 && p90 >= 1,
  };
}

export interface PeerSummary {
  id: string;
  rounds: number;
  opsPerSec: number;
  p50: number;
  p99: number;
  cpuUsPerOp: number;
  failedTriesPerCycle?: number;
  /** Throughput over the best peer's, per round (higher is better). */
  opsRatio?: Ratio;
  /** p50 over the best peer's, per round (lower is better). */
  p50Ratio?: Ratio;
  /** p50 over the floor's p50, per round. */
  floorRatio?: Ratio;
  error?: string;
}

export interface PhaseSummary {
  /** Peer with the lowest median p50 (the floor excluded). */
  bestP50?: string;
  /** Peer with the highest median throughput (the floor excluded). */
  bestOps?: string;
  peers: PeerSummary[];
}

const figures = (s: PeerSeries) => s.rounds.filter((f): f is RoundFigure => f !== null);

/**
 * Medians of each peer's per-round figures and its per-round ratios to the
 * best peer and to the floor (`floorId`). Floors (`floorId` and `otherFloors`)
 * are never the best and get no ratios.
 */
export function summarize(
  series: readonly PeerSeries[],
  floorId?: string,
  otherFloors: readonly string[] = [],
): PhaseSummary {
  const isFloor = (id: string) => id === floorId || otherFloors.includes(id);
  const live = series.filter((s) => figures(s).length > 0);
  const base = (s: PeerSeries): PeerSummary => {
    const fs = figures(s);
    const failed = fs
      .map((f) => f.failedTriesPerCycle)
      .filter((x): x is number => typeof x === "number");
    return {
      id: s.id,
      rounds: fs.length,
      opsPerSec: median(fs.map((f) => f.opsPerSec)),
      p50: median(fs.map((f) => f.p50)),
      p99: median(fs.map((f) => f.p99)),
      cpuUsPerOp: median(fs.map((f) => f.cpuUsPerOp)),
      ...(failed.length ? { failedTriesPerCycle: median(failed) } : {}),
      ...(s.error ? { error: s.error } : {}),
    };
  };
  const sums = new Map(series.map((s) => [s.id, base(s)]));
  const contenders = live.filter((s) => !isFloor(s.id));
  const by = (k: "p50" | "opsPerSec", better: (a: number, b: number) => boolean) => {
    let best: PeerSeries | undefined;
    for (const s of contenders) {
      const v = sums.get(s.id)?.[k] ?? Number.NaN;
      const bv = best ? (sums.get(best.id)?.[k] ?? Number.NaN) : Number.NaN;
      if (!best || better(v, bv)) best = s;
    }
    return best;
  };
  const bestP50 = by("p50", (a, b) => a < b);
  const bestOps = by("opsPerSec", (a, b) => a > b);
  const floor = live.find((s) => s.id === floorId);
  for (const s of live) {
    const sum = sums.get(s.id) as PeerSummary;
    if (isFloor(s.id)) continue;
    if (bestOps) sum.opsRatio = ratioOver(s, bestOps, (f) => f.opsPerSec);
    if (bestP50) sum.p50Ratio = ratioOver(s, bestP50, (f) => f.p50);
    if (floor) sum.floorRatio = ratioOver(s, floor, (f) => f.p50);
  }
  return {
    ...(bestP50 ? { bestP50: bestP50.id } : {}),
    ...(bestOps ? { bestOps: bestOps.id } : {}),
    peers: series.map((s) => sums.get(s.id) as PeerSummary),
  };
}

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type PeerSeries,
  quantile,
  type RoundFigure,
  ratioOver,
  roundOrder,
  summarize,
} from "../../bench/lib/rounds.js";

const fig = (p50: number, opsPerSec = 1000 / p50): RoundFigure => ({
  cycles: 10,
  opsPerSec,
  p50,
  p99: p50 * 2,
  cpuUsPerOp: 5,
});
const series = (id: string, p50s: (number | null)[]): PeerSeries => ({
  id,
  rounds: p50s.map((x) => (x === null ? null : fig(x))),
});

describe("bench rounds", () => {
  it("rotates the order every round so each peer takes every position", () => {
    const peers = ["a", "b", "c"];
    assert.deepEqual(
      [0, 1, 2, 3].map((r) => roundOrder(peers, r).join("")),
      ["abc", "bca", "cab", "abc"],
    );
    assert.deepEqual(roundOrder([], 5), []);
  });

  it("nearest-rank quantiles", () => {
    const xs = [5, 1, 4, 2, 3, 6, 7, 8, 9, 10];
    assert.equal(quantile(xs, 0.5), 5);
    assert.equal(quantile(xs, 0.1), 1);
    assert.equal(quantile(xs, 0.9), 9);
    assert.ok(Number.isNaN(quantile([], 0.5)));
  });

  it("judges by per-round ratios: a slow round for both does not change the verdict", () => {
    // b is 1.5× a in every round although the rounds' absolute times vary 10×.
    const a = series("a", [1, 10, 2, 1, 5, 1, 3, 1, 1, 2]);
    const b = series("b", [1.5, 15, 3, 1.5, 7.5, 1.5, 4.5, 1.5, 1.5, 3]);
    const r = ratioOver(b, a, (f) => f.p50);
    assert.equal(r.median, 1.5);
    assert.equal(r.p10, 1.5);
    assert.equal(r.p90, 1.5);
    assert.equal(r.rounds, 10);
    assert.equal(r.noClearWinner, false);
  });

  it("marks a ratio whose p10–p90 spread contains 1 as no clear winner", () => {
    const a = series("a", [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    const b = series("b", [0.8, 0.9, 1.1, 1.2, 1.05, 0.95, 1.1, 1.3, 0.85, 1.15]);
    const r = ratioOver(b, a, (f) => f.p50);
    assert.equal(r.noClearWinner, true);
    const c = series("c", [1.1, 1.2, 1.3, 1.2, 1.1, 1.25, 1.2, 1.3, 1.15, 1.1]);
    assert.equal(ratioOver(c, a, (f) => f.p50).noClearWinner, false);
    const d = series("d", [0.7, 0.8, 0.9, 0.8, 0.75, 0.85, 0.8, 0.9, 0.7, 0.8]);
    assert.equal(ratioOver(d, a, (f) => f.p50).noClearWinner, false);
  });

  it("skips rounds a peer has no figure for", () => {
    const a = series("a", [1, null, 1, 1]);
    const b = series("b", [2, 2, null, 2]);
    assert.equal(ratioOver(b, a, (f) => f.p50).rounds, 2);
  });

  it("summarize picks the best peer without the floor and gives ratios to it and to the floor", () => {
    const floor = series("floor-x", [0.1, 0.2, 0.1, 0.1]);
    const fast = series("fast", [0.2, 0.4, 0.2, 0.2]);
    const slow = series("slow", [0.4, 0.8, 0.4, 0.4]);
    const broken: PeerSeries = { id: "broken", rounds: [], error: "boom" };
    const s = summarize([floor, slow, fast, broken], "floor-x");
    assert.equal(s.bestP50, "fast");
    assert.equal(s.bestOps, "fast");
    const bySlow = s.peers.find((p) => p.id === "slow");
    assert.equal(bySlow?.p50Ratio?.median, 2);
    assert.equal(bySlow?.opsRatio?.median, 0.5);
    assert.equal(bySlow?.floorRatio?.median, 4);
    assert.equal(bySlow?.p50, 0.4);
    assert.equal(bySlow?.cpuUsPerOp, 5);
    assert.equal(s.peers.find((p) => p.id === "floor-x")?.p50Ratio, undefined);
    assert.deepEqual(
      s.peers.map((p) => p.id),
      ["floor-x", "slow", "fast", "broken"],
    );
    assert.equal(s.peers.find((p) => p.id === "broken")?.error, "boom");
    // a second floor (faster than every peer) is never the best and gets no ratios
    const commit = series("floor-x-commit", [0.15, 0.3, 0.15, 0.15]);
    const s2 = summarize([floor, commit, slow, fast], "floor-x", ["floor-x-commit"]);
    assert.equal(s2.bestP50, "fast");
    assert.equal(s2.peers.find((p) => p.id === "floor-x-commit")?.p50Ratio, undefined);
    assert.equal(s2.peers.find((p) => p.id === "fast")?.floorRatio?.median, 2);
  });
});

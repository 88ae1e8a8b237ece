import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type AssignMember, assignPartitions, quotas } from "../../src/index.js";

const P = 256;
const ids = (n: number, tag = "m") => Array.from({ length: n }, (_, i) => `${tag}-${i}`);
const members = (names: string[], weight = 1): AssignMember[] =>
  names.map((id) => ({ id, weight }));

function counts(target: string[]): Map<string, number> {
  const c = new Map<string, number>();
  for (const o of target) c.set(o, (c.get(o) ?? 0) + 1);
  return c;
}
function moved(a: string[], b: string[]): number {
  let n = 0;
  for (let p = 0; p < a.length; p++) if (a[p] !== b[p]) n += 1;
  return n;
}

describe("assignPartitions", () => {
  it("gives each of M members ⌊P/M⌋ or ⌈P/M⌉ of 256 partitions, M = 1…10", () => {
    for (let m = 1; m <= 10; m++) {
      const t = assignPartitions(P, members(ids(m)));
      assert.equal(t.length, P);
      const c = counts(t);
      assert.equal(c.size, m, `M=${m}: every member owns something`);
      for (const [id, n] of c) {
        assert.ok(
          n === Math.floor(P / m) || n === Math.ceil(P / m),
          `M=${m}: ${id} owns ${n}, expected ${Math.floor(P / m)} or ${Math.ceil(P / m)}`,
        );
      }
    }
  });

  it("is deterministic and independent of the members' order", () => {
    const ms = members(ids(7));
    const a = assignPartitions(P, ms);
    const b = assignPartitions(P, [...ms].reverse());
    assert.deepEqual(a, b);
    const holders = a.map((o, p) => (p % 3 === 0 ? null : o));
    assert.deepEqual(
      assignPartitions(P, ms, holders),
      assignPartitions(P, [...ms].reverse(), holders),
    );
    // Not a trivial layout: partitions are spread, not handed out in blocks.
    assert.notDeepEqual(a.slice(0, 36), Array(36).fill(a[0]));
  });

  it("shares in proportion to weight", () => {
    const ms: AssignMember[] = [
      { id: "big", weight: 3 },
      { id: "a", weight: 1 },
      { id: "b", weight: 1 },
      { id: "c", weight: 1 },
    ];
    const c = counts(assignPartitions(P, ms));
    assert.equal(c.get("big"), 128);
    for (const id of ["a", "b", "c"]) {
      const n = c.get(id)!;
      assert.ok(n === 42 || n === 43, `${id} owns ${n}`);
    }
    const q = quotas(10, [
      { id: "x", weight: 2 },
      { id: "y", weight: 1 },
    ]);
    assert.deepEqual([q.get("x"), q.get("y")], [7, 3]);
  });

  it("moves only the joiner's share on a join (≤ ⌈P/M⌉), all of it to the joiner", () => {
    for (let m = 1; m <= 9; m++) {
      const before = assignPartitions(P, members(ids(m)));
      const joined = members([...ids(m), "newcomer"]);
      const after = assignPartitions(P, joined, before);
      const n = moved(before, after);
      assert.ok(n <= Math.ceil(P / (m + 1)), `M=${m}→${m + 1}: moved ${n}`);
      for (let p = 0; p < P; p++) {
        if (before[p] !== after[p]) assert.equal(after[p], "newcomer", `partition ${p}`);
      }
      const c = counts(after);
      for (const [id, k] of c) {
        assert.ok(k === Math.floor(P / (m + 1)) || k === Math.ceil(P / (m + 1)), `${id}: ${k}`);
      }
    }
  });

  it("moves only the leaver's partitions on a leave", () => {
    for (let m = 2; m <= 10; m++) {
      const names = ids(m);
      const before = assignPartitions(P, members(names));
      const gone = names[m >> 1]!;
      const after = assignPartitions(P, members(names.filter((x) => x !== gone)), before);
      for (let p = 0; p < P; p++) {
        if (before[p] !== gone) assert.equal(after[p], before[p], `M=${m}: partition ${p} moved`);
        else assert.notEqual(after[p], gone);
      }
      for (const [id, k] of counts(after)) {
        assert.ok(k === Math.floor(P / (m - 1)) || k === Math.ceil(P / (m - 1)), `${id}: ${k}`);
      }
    }
  });

  it("ignores holders that are not members, and trims a member over its quota", () => {
    const ms = members(ids(4));
    const holders = Array<string>(P).fill("m-0");
    holders[5] = "ghost";
    const t = assignPartitions(P, ms, holders);
    assert.ok(!t.includes("ghost"));
    assert.equal(counts(t).get("m-0"), 64);
    for (let p = 0; p < P; p++) if (p !== 5 && t[p] !== "m-0") assert.notEqual(t[p], undefined);
  });

  it("returns nothing for no members", () => {
    assert.deepEqual(assignPartitions(8, []), []);
  });
});

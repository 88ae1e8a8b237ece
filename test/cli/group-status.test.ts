import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatGroup, ranges, splitGroups } from "../../src/cli/group-status.js";
import type { LeaseInfo } from "../../src/store/types.js";

const lease = (name: string, holder: string, token = 1n, expiresInMs = 5000): LeaseInfo => ({
  name,
  holder,
  token,
  expiresInMs,
});
const H16 = "0123456789abcdef";

describe("tenure status: groups", () => {
  it("groups by member leases: partitions per holder, unowned, holders that are not members", () => {
    const { groups, grouped } = splitGroups([
      lease("plain", "x"),
      lease(`team/a/members/6/2/${H16}`, "m1"),
      lease(`team/a/members/6/1/${"f".repeat(16)}`, "m2", 1n, 4000),
      lease("team/a/p/0", "m1"),
      lease("team/a/p/1", "m1"),
      lease("team/a/p/2", "m2"),
      lease("team/a/p/4", "gone"),
      // No member lease: not a group, stays a plain lease.
      lease("other/p/0", "y"),
    ]);
    assert.equal(groups.length, 1);
    const g = groups[0]!;
    assert.equal(g.group, "team/a");
    assert.equal(g.partitions, 6);
    assert.deepEqual(g.unowned, [3, 5]);
    assert.deepEqual(
      g.holders.map((h) => [h.holder, h.member, h.weight, h.partitions]),
      [
        ["m1", true, 2, [0, 1]],
        ["m2", true, 1, [2]],
        ["gone", false, null, [4]],
      ],
    );
    assert.deepEqual([...grouped.keys()].sort(), [
      `team/a/members/6/1/${"f".repeat(16)}`,
      `team/a/members/6/2/${H16}`,
      "team/a/p/0",
      "team/a/p/1",
      "team/a/p/2",
      "team/a/p/4",
    ]);
    const text = formatGroup(g, (head, rows) => [head, ...rows].map((r) => r.join("|")).join("\n"));
    assert.match(text, /^group team\/a: 6 partitions, 2 members, 2 unowned \(3,5\)\n/);
    assert.match(text, /gone\|-\|1\|not a member\|4/);
  });

  it("ranges", () => {
    assert.equal(ranges([]), "");
    assert.equal(ranges([0, 1, 2, 3, 7, 9, 10, 11, 12]), "0-3,7,9-12");
    assert.equal(ranges([5]), "5");
  });
});

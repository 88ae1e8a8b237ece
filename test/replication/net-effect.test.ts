import assert from "node:assert/strict";
import { test } from "node:test";
import { type Change, netEffect } from "../../examples/replication/replicator.js";

const up = (id: string, version: string): Change => ({
  op: "upsert",
  id,
  val: `v${version}`,
  version,
});
const del = (id: string): Change => ({ op: "delete", id });

test("netEffect: per id the last upsert wins and counts every change since the id's last delete", () => {
  const n = netEffect([
    { changes: [up("1", "1"), up("2", "1")] },
    { changes: [up("1", "2"), del("2"), up("3", "4")] },
    { changes: [up("1", "3"), del("4"), up("4", "1")] },
  ]);
  assert.equal(n.truncate, false);
  assert.deepEqual(n.deletes.sort(), ["2", "4"]);
  assert.deepEqual(
    n.upserts.sort((a, b) => a.id.localeCompare(b.id)),
    [
      { id: "1", val: "v3", version: "3", count: 3 },
      { id: "3", val: "v4", version: "4", count: 1 },
      // deleted, then re-created: the delete runs first, the row starts over at count 1
      { id: "4", val: "v1", version: "1", count: 1 },
    ],
  );
});

test("netEffect: a truncate makes everything before it moot", () => {
  const n = netEffect([
    { changes: [up("1", "1"), del("2")] },
    { changes: [{ op: "truncate" }, up("5", "1")] },
  ]);
  assert.deepEqual(n, {
    truncate: true,
    deletes: [],
    upserts: [{ id: "5", val: "v1", version: "1", count: 1 }],
  });
});

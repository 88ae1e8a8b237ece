import assert from "node:assert/strict";
import { test } from "node:test";
import { createElector } from "../../src/index.js";
import { MemoryStore } from "../../src/stores/memory/index.js";
import { FakeClock } from "../../src/testing/index.js";

test("smoke: two electors, one leads, handoff on stop", async () => {
  const clock = new FakeClock();
  const store = new MemoryStore({ clock });
  const a = createElector({
    store,
    name: "smoke",
    ttlMs: 1000,
    clock,
    holderId: "a",
    random: () => 0,
  });
  const b = createElector({
    store,
    name: "smoke",
    ttlMs: 1000,
    clock,
    holderId: "b",
    random: () => 0,
  });
  await a.start();
  await clock.advance(0);
  await b.start();
  await clock.advance(0);
  assert.equal(a.isLeader(), true);
  assert.equal(b.isLeader(), false);
  await clock.advance(5000);
  assert.equal(a.isLeader(), true);
  assert.equal(b.leader()?.holder, "a");
  const stopping = a.stop();
  await clock.advance(0);
  await stopping;
  await clock.advance(0);
  assert.equal(b.isLeader(), true);
  const s = b.stop();
  await clock.advance(0);
  await s;
});

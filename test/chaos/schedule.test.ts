import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseReplay, runScheduled, runsAlone } from "./profile.js";

interface Item {
  server: string;
  alone?: boolean;
}

/** Runs `items` through the scheduler; each run takes a few event-loop turns. Returns what ran beside what. */
async function schedule(items: Item[], concurrency: number) {
  const running = new Set<number>();
  const beside: [number, number][] = [];
  const order: number[] = [];
  let most = 0;
  await runScheduled(items, {
    concurrency,
    server: (x) => x.server,
    alone: (x) => x.alone === true,
    run: async (_x, i) => {
      for (const j of running) beside.push([j, i]);
      running.add(i);
      order.push(i);
      most = Math.max(most, running.size);
      await new Promise((r) => setTimeout(r, 5 + (i % 3) * 5));
      running.delete(i);
    },
  });
  return { beside, order, most };
}

describe("chaos episode scheduling", () => {
  it("runs every item, up to the concurrency, never two of one server at once", async () => {
    const items = ["a", "b", "a", "c", "b", "a"].map((server) => ({ server }));
    const r = await schedule(items, 2);
    assert.deepEqual([...r.order].sort(), [0, 1, 2, 3, 4, 5]);
    assert.equal(r.most, 2);
    for (const [x, y] of r.beside) assert.notEqual(items[x]!.server, items[y]!.server);
  });

  it("an item that runs alone has nothing beside it, and is not passed over for ever", async () => {
    const items: Item[] = [
      { server: "a" },
      { server: "b" },
      { server: "e", alone: true },
      { server: "c" },
      { server: "d" },
      { server: "e", alone: true },
      { server: "a" },
    ];
    const r = await schedule(items, 3);
    assert.deepEqual([...r.order].sort(), [0, 1, 2, 3, 4, 5, 6]);
    for (const [x, y] of r.beside) {
      assert.ok(!items[x]!.alone && !items[y]!.alone, `${x} ran beside ${y}`);
    }
    // Nothing queued behind an alone item starts before it.
    assert.ok(r.order.indexOf(2) < r.order.indexOf(3));
    assert.ok(r.order.indexOf(5) < r.order.indexOf(6));
    assert.ok(r.most >= 2, "the others still run side by side");
  });

  it("etcd group episodes run alone; the rest do not", () => {
    assert.equal(runsAlone({ backend: "etcd", mode: "group" }), true);
    assert.equal(runsAlone({ backend: "etcd-cluster", mode: "group" }), true);
    assert.equal(runsAlone({ backend: "etcd" }), false);
    assert.equal(runsAlone({ backend: "redis", mode: "group" }), false);
  });
});

describe("parseReplay", () => {
  it("reads a failure's replay name, single-lease or group", () => {
    assert.deepEqual(parseReplay("redis:blackhole:123"), {
      backend: "redis",
      fault: "blackhole",
      seed: 123,
    });
    assert.deepEqual(parseReplay("group:postgres:reset:1545514212"), {
      backend: "postgres",
      fault: "reset",
      seed: 1_545_514_212,
      mode: "group",
    });
  });

  it("refuses what is not one", () => {
    for (const bad of [
      "",
      "redis:blackhole",
      "redis:blackhole:12x",
      "nosuch:blackhole:1",
      "redis:nosuch:1",
      "group:redis:blackhole:1:extra",
      "redis:blackhole:2147483648",
    ])
      assert.equal(parseReplay(bad), null, bad);
  });
});

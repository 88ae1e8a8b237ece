/**
 * The pieces that keep an elector small (issue 15: a process may hold 100 000
 * leases): the emitter's flat listener list, the term's AbortSignal made on
 * first use, the watcher set without a Set per key, and the default holder id.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { defaultHolderId } from "../../src/elector/options.js";
import { TypedEmitter } from "../../src/events.js";
import { createElector, TermEndedError } from "../../src/index.js";
import { noopLogger } from "../../src/logger.js";
import type { LeaseEvent } from "../../src/store/types.js";
import { WatcherSet } from "../../src/stores/common/watchers.js";
import { MemoryStore } from "../../src/stores/memory/index.js";
import { FakeClock } from "../../src/testing/index.js";

type Ev = { a: number; b: number };

describe("per-lease state", () => {
  it("emitter: registration order, one registration per listener, the listeners present when an emit began", () => {
    const e = new TypedEmitter<Ev>();
    const seen: string[] = [];
    const one = (n: number) => void seen.push(`one${n}`);
    const offTwo = e.on("a", (n) => {
      seen.push(`two${n}`);
      offTwo(); // unsubscribing during an emit: the rest of this emit still runs
      e.on("a", (m) => void seen.push(`late${m}`)); // added during an emit: from the next one
    });
    e.on("a", one);
    e.on("a", one); // once only
    e.on("b", (n) => void seen.push(`b${n}`));
    assert.equal(e.listenerCount("a"), 2);
    e.emit("a", 1);
    assert.deepEqual(seen, ["two1", "one1"]);
    seen.length = 0;
    e.emit("a", 2);
    assert.deepEqual(seen, ["one2", "late2"]);
    e.off("a", one);
    assert.equal(e.has("a"), true);
    assert.equal(e.has("b"), true);
    seen.length = 0;
    e.emit("a", 3);
    e.emit("b", 3);
    assert.deepEqual(seen, ["late3", "b3"]);
  });

  it("emitter: a throwing or rejecting listener goes to the handler; the others still run", async () => {
    const failures: string[] = [];
    const e = new TypedEmitter<Ev>((event, err) => failures.push(`${event}:${String(err)}`));
    const seen: number[] = [];
    e.on("a", () => {
      throw new Error("x");
    });
    e.on("a", () => Promise.reject(new Error("y")));
    e.on("a", (n) => void seen.push(n));
    e.emit("a", 7);
    await Promise.resolve();
    assert.deepEqual(seen, [7]);
    assert.deepEqual(failures, ["a:Error: x", "a:Error: y"]);
  });

  it("a term's signal is made on first use; read after the term ended, it is already aborted with the reason", async () => {
    const clock = new FakeClock();
    const store = new MemoryStore({ clock });
    const e = createElector({ store, name: "lazy", ttlMs: 1000, clock });
    const early: AbortSignal[] = [];
    const terms: Array<{ signal: AbortSignal; token: bigint }> = [];
    e.on("elected", (t) => {
      terms.push(t);
      if (terms.length === 1) early.push(t.signal); // the first term's signal, while it runs
    });
    await e.start();
    await clock.advance(0);
    assert.equal(terms.length, 1);
    const first = terms[0]!;
    assert.equal(early[0]!.aborted, false);
    assert.equal(first.signal, early[0], "one signal per term");
    await e.resign();
    assert.equal(early[0]!.aborted, true);
    assert.ok(early[0]!.reason instanceof TermEndedError);
    assert.equal((early[0]!.reason as TermEndedError).reason, "resigned");
    await clock.advance(1000);
    assert.equal(terms.length, 2);
    const second = terms[1]!;
    assert.ok(Object.isFrozen(second));
    assert.deepEqual(Object.keys(second), ["name", "holder", "token"]);
    await e.stop();
    // Never read while the term ran: made now, already aborted, with why it ended.
    assert.equal(second.signal.aborted, true);
    assert.equal((second.signal.reason as TermEndedError).reason, "stopped");
    assert.equal((second.signal.reason as TermEndedError).token, second.token);
  });

  it("watcher set: one watcher per key held alone, more in a set; subscribe/unsubscribe answers as before", () => {
    const w = new WatcherSet(noopLogger);
    const seen: string[] = [];
    const f = (ev: LeaseEvent) => void seen.push(`f:${ev.type}`);
    const g = (ev: LeaseEvent) => void seen.push(`g:${ev.type}`);
    assert.equal(w.add("k", f), true, "first watcher: subscribe");
    assert.equal(w.add("k", f), false);
    assert.equal(w.delete("k", g), false, "not a watcher of k");
    w.emit("k", { name: "k", type: "released" });
    assert.equal(w.add("k", g), false);
    w.emit("k", { name: "k", type: "acquired" });
    assert.deepEqual(seen, ["f:released", "f:acquired", "g:acquired"]);
    assert.equal(w.delete("k", f), false, "g still watches");
    assert.equal(w.delete("k", g), true, "last one: unsubscribe");
    assert.equal(w.has("k"), false);
    assert.equal(w.delete("k", g), false);
  });

  it("default holder ids: this process's host and pid, and 8 fresh hex digits each", () => {
    const ids = new Set<string>();
    for (let i = 0; i < 3000; i++) ids.add(defaultHolderId()); // past one pool of random bytes
    assert.equal(ids.size, 3000);
    for (const id of ids) assert.match(id, new RegExp(`^.+:${process.pid}:[0-9a-f]{8}$`));
  });
});

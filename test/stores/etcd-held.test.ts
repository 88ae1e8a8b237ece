/**
 * The etcd store's sweep ends terms of its own that nobody renewed for a
 * whole ttl (their keys share a session lease that outlives them). It must
 * never end a term while a renewal of that lease is in flight, including a
 * renewal that began before the term was recorded: an acquire whose caller
 * gave up records its term under its own (old) start, already past its ttl,
 * while the holder's retry, finding its own term in the store, renews it.
 * Sweeping then deleted the key under a renewal that answered success, and
 * another member took the partition while the first still trusted it (chaos
 * group:etcd:blackhole:2136929060). No server: the delete is recorded.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Held, HeldTerms } from "../../src/stores/etcd/held.js";
import { monotonicMs } from "../../src/stores/etcd/session.js";
import { waitFor } from "../helpers/wait.js";

function terms() {
  const deleted: string[] = [];
  const held = new HeldTerms(
    async (name: string, h: Held) => {
      deleted.push(`${name}@${h.token}`);
    },
    undefined,
    String,
  );
  return { held, deleted };
}

describe("etcd held terms: no sweep under a renewal in flight", () => {
  it("a term recorded past its ttl while a renewal of its name is in flight is left alone until it ends", async () => {
    const { held, deleted } = terms();
    try {
      const done = held.begin("a"); // the retry's renewal: began before the term was recorded
      // The late acquire records the term under its own start, 5 s ago (ttl 1 s): overdue.
      held.hold({ name: "a", holder: "m0", token: 253n }, 1000, monotonicMs() - 5000);
      await held.settle("a");
      assert.equal(deleted.length, 0, "settle ended a term under a renewal in flight");
      // A term of another name, overdue with no renewal: the sweep ends it, so a sweep ran.
      held.hold({ name: "b", holder: "m0", token: 7n }, 1000, monotonicMs() - 5000);
      await waitFor("a sweep to end b", () => deleted.includes("b@7"), { timeoutMs: 5000 });
      assert.ok(!deleted.includes("a@253"), "the sweep ended a term under a renewal in flight");
      done();
      await waitFor("the sweep to end a once its renewal is over", () => deleted.includes("a@253"));
    } finally {
      await held.close();
    }
  });

  it("a renewal that succeeds moves the term's start: nothing is swept", async () => {
    const { held, deleted } = terms();
    try {
      const done = held.begin("a");
      held.hold({ name: "a", holder: "m0", token: 9n }, 1000, monotonicMs() - 5000);
      // The renewal answers: the term was renewed by a call that began just now.
      held.hold({ name: "a", holder: "m0", token: 9n }, 1000, monotonicMs());
      done();
      await held.settle("a");
      assert.equal(deleted.length, 0);
    } finally {
      await held.close();
    }
  });
});

/**
 * The etcd store's keep-alive stream is shared by every session lease; a
 * stream whose member is cut off (the connection accepted, nothing answered)
 * is replaced after `staleMs`. The replacement must go to another member: at
 * random it went to the cut one again about one time in three, and a renewal
 * of a 1 s ttl then missed its deadline (etcd-member-cut failed under load).
 * These tests drive the two pieces that make that so, without a server: the
 * channel tells which stream was left unanswered, and the member policy
 * passes over the member that stream went to.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, it } from "node:test";
import { KeepAliveChannel, type KeepAliveStream } from "../../src/stores/etcd/keepalive.js";
import { memberPolicy, openOnMember } from "../../src/stores/etcd/members.js";
import { waitFor } from "../helpers/wait.js";

class FakeStream extends EventEmitter {
  readonly written: string[] = [];
  write(req: { ID: string }): boolean {
    this.written.push(req.ID);
    return true;
  }
  end(): void {}
  answer(id: string, ttl: number): void {
    this.emit("data", { ID: id, TTL: String(ttl) });
  }
}

function channel() {
  const opened: { stream: FakeStream; suspected: number }[] = [];
  const ch = new KeepAliveChannel(async () => {
    const rec = { stream: new FakeStream(), suspected: 0 };
    opened.push(rec);
    return {
      stream: rec.stream as unknown as KeepAliveStream,
      suspect: () => {
        rec.suspected += 1;
      },
    };
  });
  return { ch, opened };
}

describe("etcd keep-alive: a stream left unanswered is replaced on another member", () => {
  it("the channel suspects the member of a stream that left a keep-alive unanswered", async () => {
    const { ch, opened } = channel();
    try {
      const p = ch.send("7", Date.now() + 10_000, 50);
      await waitFor("a second stream after staleMs", () => opened.length === 2, {
        timeoutMs: 5000,
      });
      assert.equal(opened[0]!.suspected, 1, "the unanswered stream's member was not suspected");
      await waitFor("the keep-alive written on the new stream", () =>
        opened[1]!.stream.written.includes("7"),
      );
      opened[1]!.stream.answer("7", 3);
      assert.equal(await p, 3);
      assert.equal(opened[1]!.suspected, 0, "the stream that answered was suspected");
    } finally {
      ch.close();
    }
  });

  it("a stream that failed is replaced without suspecting its member (the failure counts there)", async () => {
    const { ch, opened } = channel();
    try {
      const p = ch.send("8", Date.now() + 10_000, 5000);
      await waitFor("the first stream written", () => opened[0]?.stream.written.includes("8"));
      opened[0]!.stream.emit("error", new Error("UNAVAILABLE"));
      await waitFor("a second stream after the failure", () => opened.length === 2);
      await waitFor("written on it", () => opened[1]!.stream.written.includes("8"));
      opened[1]!.stream.answer("8", 2);
      assert.equal(await p, 2);
      assert.equal(opened[0]!.suspected, 0);
    } finally {
      ch.close();
    }
  });

  it("the member policy passes over the member of a suspected stream, for writes and new streams", async () => {
    const fh = memberPolicy({
      hostCount: 3,
      isRecoverable: () => true,
      hedgeMs: 60_000,
      cooldownMs: 60_000,
      watchBackoff: undefined as never,
    });
    const host = fh.host!;
    const hosts = [host(""), host(""), host("")];
    const run = (i: number) => hosts[i]!.execute(async () => `host ${i}`);
    const opened = await openOnMember(() => run(1));
    assert.equal(opened.value, "host 1");
    assert.equal(await run(1), "host 1", "suspected before suspect() was called");
    opened.suspect();
    await assert.rejects(run(1), { name: "BrokenCircuitError" });
    assert.equal(await run(0), "host 0");
    assert.equal(await run(2), "host 2");
    // A stream opened outside openOnMember names no member: suspecting nothing.
    const none = await openOnMember(async () => "no host policy ran");
    none.suspect();
    assert.equal(await run(0), "host 0");
  });
});

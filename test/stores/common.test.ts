import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isConfigError, isStoreError } from "../../src/errors.js";
import type { Logger } from "../../src/logger.js";
import { closedError, intOption, schemaError, WatcherSet } from "../../src/stores/common/index.js";
import { MemoryStore } from "../../src/stores/memory/index.js";

/** A logger that keeps what it is told. */
function recorder(): Logger & { lines: [string, string, Record<string, unknown>][] } {
  const lines: [string, string, Record<string, unknown>][] = [];
  const at =
    (level: string) =>
    (msg: string, fields: Record<string, unknown> = {}) =>
      void lines.push([level, msg, fields]);
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

describe("store plumbing (stores/common)", () => {
  it("a watcher that throws is logged, and the watchers after it still hear the event", async () => {
    const log = recorder();
    const store = new MemoryStore({ logger: log });
    const heard: string[] = [];
    await store.watch("w", () => {
      throw new Error("boom");
    });
    await store.watch("w", (e) => heard.push(e.type));
    const a = await store.acquire("w", "h", 1000);
    assert.ok(a.acquired);
    assert.deepEqual(heard, ["acquired"]);
    assert.equal(log.lines.length, 1);
    assert.equal(log.lines[0]?.[0], "warn");
    assert.equal(log.lines[0]?.[1], "lease watcher threw");
    assert.equal(log.lines[0]?.[2].lease, "w");
    await store.close();
  });

  it("a watcher set says when a key gets its first watcher and loses its last", () => {
    const set = new WatcherSet(recorder());
    const f = () => {};
    const g = () => {};
    assert.equal(set.add("k", f), true);
    assert.equal(set.add("k", g), false);
    assert.equal(set.delete("k", f), false);
    assert.equal(set.delete("k", f), false, "a second unwatch changes nothing");
    assert.equal(set.delete("k", g), true);
    assert.deepEqual(set.keys(), []);
  });

  it("a call on a closed store names the backend and the operation", async () => {
    const store = new MemoryStore();
    await store.close();
    const e = await store.read("x").then(
      () => null,
      (err: unknown) => err,
    );
    assert.ok(isStoreError(e));
    assert.equal(e.kind, "closed");
    assert.equal(e.transient, false);
    assert.equal(e.message, "tenure memory: read failed: store is closed");
    assert.equal(
      closedError("redis", "renew").message,
      "tenure redis: renew failed: store is closed",
    );
  });

  it("a schema error is fatal, names the backend, and keeps a driver code", () => {
    const e = schemaError("etcd", "read", "key x has no etcd lease", { code: "TENURE_SCHEMA" });
    assert.equal(e.kind, "schema");
    assert.equal(e.transient, false);
    assert.equal(e.code, "TENURE_SCHEMA");
    assert.match(e.message, /^tenure etcd: read failed: .*key x has no etcd lease$/);
  });

  it("intOption takes numbers and digit strings from URLs, and names the field otherwise", () => {
    assert.equal(intOption("t", 5, 1, 10), 5);
    assert.equal(intOption("t", "7", 1, 10), 7);
    for (const bad of ["7ms", "-1", "", 0, 11, 1.5, null]) {
      assert.throws(
        () => intOption("callTimeoutMs", bad, 1, 10),
        (e) => isConfigError(e) && e.field === "callTimeoutMs" && /from 1 to 10/.test(e.message),
        String(bad),
      );
    }
  });
});

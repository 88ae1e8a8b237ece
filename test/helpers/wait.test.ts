import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { waitFor } from "./wait.js";

describe("waitFor", () => {
  it("a failed assertion inside the check fails the wait at once", async () => {
    let calls = 0;
    const t0 = Date.now();
    await assert.rejects(
      waitFor(
        "never",
        () => {
          calls += 1;
          assert.equal(1 + 1, 3, "the check's own assertion");
          return true;
        },
        { timeoutMs: 2000 },
      ),
      (e: unknown) =>
        e instanceof assert.AssertionError && /the check's own assertion/.test(e.message),
    );
    assert.equal(calls, 1);
    assert.ok(Date.now() - t0 < 1000, "did not poll until the timeout");
  });

  it("other errors keep it polling until the check passes, or time out naming the last one", async () => {
    let calls = 0;
    const v = await waitFor("third call", () => {
      calls += 1;
      if (calls < 3) throw new Error(`not yet ${calls}`);
      return calls;
    });
    assert.equal(v, 3);
    await assert.rejects(
      waitFor(
        "nothing",
        () => {
          throw new Error("store down");
        },
        { timeoutMs: 50 },
      ),
      /timed out after 50 ms waiting for nothing \(last error: Error: store down\)/,
    );
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { chainValue, lostChainValues } from "./chain.js";

const v = (seq: number, token: number) => chainValue(BigInt(seq), BigInt(token), 1, "0");
const wrote = (value: string, prev: string | null) => ({ event: "wrote", value, prev });

describe("lostChainValues", () => {
  it("drops only the branch the failed server had alone, never the chain the store ends with", () => {
    // 1 ← 2 replicated; 3, 4 (token 20) on the primary only; the promoted
    // replica goes on from 2: 3' and 4' (token 30). The lost 4 is printed last
    // (its writer was paused through the failover).
    const lines = [
      wrote(v(1, 10), null),
      wrote(v(2, 10), v(1, 10)),
      wrote(v(3, 20), v(2, 10)),
      { event: "write-rejected", prev: v(2, 10) },
      wrote(v(3, 30), v(2, 10)),
      wrote(v(4, 30), v(3, 30)),
      wrote(v(4, 20), v(3, 20)),
    ];
    assert.deepEqual([...lostChainValues(lines, v(4, 30))].sort(), [v(3, 20), v(4, 20)]);
    // The store's last value unknown: nothing is judged lost.
    assert.deepEqual([...lostChainValues(lines, null)], []);
    // A chain that did not fork loses nothing, even where a writer's line is
    // missing (a killed writer): values below the walk's end are history.
    const killed = [wrote(v(1, 10), null), wrote(v(3, 10), v(2, 10)), wrote(v(4, 20), v(3, 10))];
    assert.deepEqual([...lostChainValues(killed, v(4, 20))], []);
    // The chain the store ends with is never dropped, whichever branch it is.
    assert.deepEqual([...lostChainValues(lines, v(4, 20))].sort(), [v(3, 30), v(4, 30)]);
  });
});

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, it } from "node:test";
import { REPO_ROOT } from "../helpers/services.js";

describe("CommonJS", () => {
  it('require("tenure") and its subpaths work (Node 20.19+ / 22.12+ require of ESM)', () => {
    const script = `
      const t = require(${JSON.stringify(REPO_ROOT)});
      const mem = require(${JSON.stringify(`${REPO_ROOT}/dist/src/stores/memory/index.js`)});
      const s = new mem.MemoryStore();
      const e = t.createElector({ store: s, name: "cjs", ttlMs: 1000 });
      e.start().then(async () => {
        for (let i = 0; i < 200 && !e.isLeader(); i++) await new Promise((r) => setTimeout(r, 5));
        process.stdout.write(JSON.stringify({ leader: e.isLeader(), open: typeof t.openStore }));
        await e.stop();
      });`;
    const out = execFileSync(process.execPath, ["-e", script], { encoding: "utf8" });
    assert.deepEqual(JSON.parse(out), { leader: true, open: "function" });
  });
});

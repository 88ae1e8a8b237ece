import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import type { PhaseOutput } from "../../bench/locks.js";
import { renderMarkdown, renderSvg } from "../../bench/report.js";
import type { BenchResults } from "../../bench/run.js";
import { REPO_ROOT } from "../helpers/services.js";

const run = promisify(execFile);

// The full smoke run (every backend and peer) is `npm run bench:smoke` in CI;
// this keeps `npm test` fast: SQLite only, locks + floor, no doc written.
describe("bench smoke (sqlite)", () => {
  it("measures tenure-sqlite, writes a results file and renders the report", async () => {
    const out = mkdtempSync(join(tmpdir(), "tenure-bench-test-"));
    try {
      await run(
        process.execPath,
        [
          join(REPO_ROOT, "dist", "bench", "run.js"),
          "--smoke",
          "--only",
          "sqlite",
          "--parts",
          "floor,locks,scale",
          "--out",
          out,
          "--no-doc",
        ],
        { timeout: 60_000 },
      );
      const files = readdirSync(out).filter((f) => f.endsWith("-smoke.json"));
      assert.equal(files.length, 1);
      const res = JSON.parse(readFileSync(join(out, files[0] as string), "utf8")) as BenchResults;
      const lockRun = res.locks.find((l) => l.server === "sqlite");
      assert.ok(lockRun?.out, `sqlite lock run failed: ${lockRun?.error}`);
      assert.equal(lockRun.out.floorId, "floor-sqlite");
      for (const mode of ["uncontended", "contended"] as const) {
        const phase: PhaseOutput = lockRun.out[mode];
        // Interleaved: every recorded round has both peers, the order rotated.
        assert.equal(phase.order.length, res.settings.rounds);
        assert.deepEqual(phase.order[0], ["tenure-sqlite", "floor-sqlite"]);
        assert.deepEqual(phase.order[1], ["floor-sqlite", "tenure-sqlite"]);
        const tenure = phase.peers.find((p) => p.id === "tenure-sqlite");
        assert.equal(tenure?.error, undefined);
        assert.equal(tenure?.rounds.length, res.settings.rounds);
        for (const f of tenure?.rounds ?? []) {
          assert.ok(f && f.cycles > 0 && f.p50 > 0 && f.cpuUsPerOp > 0, JSON.stringify(f));
        }
      }
      const scale = res.scale.filter((s) => s.out);
      assert.deepEqual(
        scale.map((s) => [s.n, s.out?.heldAtEnd]),
        scale.map((s) => [s.n, s.n]),
        "every lease of the scale run is still held at the end",
      );
      const md = renderMarkdown(
        res,
        "bench/results/x.json",
        join(REPO_ROOT, "docs", "benchmarks", "locks-p50.svg"),
      );
      assert.match(
        md,
        new RegExp(
          `\\| sqlite \\| \\*\\*tenure-sqlite\\*\\* \\| tenure@[^|]+\\| ${res.settings.rounds} \\| [\\d,]+ \\| 1× \\(best\\) \\|`,
        ),
      );
      assert.match(md, /\| sqlite \| \*floor-sqlite\* \|/);
      assert.match(md, /interleaved/);
      assert.match(renderSvg(res), /^<svg [^>]+>[\s\S]*tenure-sqlite[\s\S]*<\/svg>\n$/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

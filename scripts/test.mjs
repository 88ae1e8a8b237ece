#!/usr/bin/env node
// Runs the compiled test suite with node's test runner. Starts the services the
// store tests need (scripts/services.sh) and stops what it started.
// Usage: node scripts/test.mjs [substring-filter …]
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const testDir = join(root, "dist", "test");
const filters = process.argv.slice(2);

function walk(dir) {
  const out = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (e.endsWith(".test.js")) out.push(p);
  }
  return out;
}

const files = walk(testDir)
  .filter((f) => filters.length === 0 || filters.some((s) => relative(testDir, f).includes(s)))
  .sort();
if (files.length === 0) {
  console.error(
    `no test files matched ${filters.join(" ") || "(all)"} under ${testDir}; run npm run build first`,
  );
  process.exit(1);
}

const manage = process.env.TENURE_TEST_SERVICES !== "external";
if (manage) {
  const r = spawnSync("bash", [join(root, "scripts/services.sh"), "start"], { stdio: "inherit" });
  if (r.status !== 0 && process.env.CI) {
    console.error("test services could not be started (see above); CI needs every backend");
    process.exit(1);
  }
}
// Chaos regression replays run after the rest, one file at a time: each replays
// one recorded episode exactly, and its bounds are those of the long profile,
// which runs at most two episodes at once (not beside other test files' servers).
const alone = files.filter((f) => /[/\\]chaos[/\\][^/\\]+-regressions\.test\.js$/.test(f));
const together = files.filter((f) => !alone.includes(f));
const run = (list, concurrency) =>
  list.length === 0
    ? 0
    : (spawnSync(
        process.execPath,
        [
          "--enable-source-maps",
          "--test",
          `--test-concurrency=${concurrency}`,
          "--test-timeout=120000",
          ...list,
        ],
        { stdio: "inherit", env: { ...process.env, TENURE_REPO_ROOT: root } },
      ).status ?? 1);
let status = 1;
try {
  const first = run(together, process.env.TENURE_TEST_CONCURRENCY ?? "2");
  const second = run(alone, "1");
  status = first !== 0 ? first : second;
} finally {
  if (manage) spawnSync("bash", [join(root, "scripts/services.sh"), "stop"], { stdio: "inherit" });
}
process.exit(status);

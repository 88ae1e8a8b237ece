import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { loadNodeSqlite } from "../../src/stores/sqlite/driver.js";
import { REPO_ROOT } from "../helpers/services.js";

const work = mkdtempSync(join(tmpdir(), "tenure-pack-"));
after(() => rmSync(work, { recursive: true, force: true }));

/** The first ```js block of README's "Getting started (npm)" section, word for word. */
function readmeFirstExample(): string {
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  const section = /^## Getting started \(npm\)\n([\s\S]*?)^## /m.exec(readme)?.[1];
  assert.ok(section, 'README has a "Getting started (npm)" section');
  assert.equal(/^## .*$/m.exec(readme)?.[0], "## Getting started (npm)", "the first section");
  assert.match(section, /^npm install tenure$/m);
  const code = /```js\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(code, "a js example");
  assert.match(code, /openStore\("sqlite:/);
  return code;
}

describe("the packed tarball, installed into an empty project", () => {
  it("installs, and README's first example runs against the SQLite store", async () => {
    const npm = process.platform === "win32" ? "npm.cmd" : "npm";
    // 1. pack exactly what npm would publish
    const packed = JSON.parse(
      execFileSync(npm, ["pack", "--json", "--pack-destination", work], {
        cwd: REPO_ROOT,
        encoding: "utf8",
      }),
    ) as { filename: string; files: { path: string }[] }[];
    const files = packed[0]!.files.map((f) => f.path);
    for (const f of ["README.md", "CHANGELOG.md", "package.json", "dist/src/index.js"]) {
      assert.ok(files.includes(f), `the tarball has ${f}`);
    }
    assert.ok(!files.some((f) => f.startsWith("dist/test/") || f.startsWith("src/")), "no tests");
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8"));
    for (const k of ["repository", "homepage", "bugs"]) assert.ok(pkg[k], `package.json ${k}`);
    // README links must work from the npm page: no relative links into the repository
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    const relative = [...readme.matchAll(/\]\((?!https?:|#)([^)]+)\)/g)].map((m) => m[1]);
    assert.deepEqual(relative, [], "relative links in README");

    // 2. an empty project installs the tarball (offline where the cache allows)
    const app = join(work, "app");
    mkdirSync(app);
    writeFileSync(
      join(app, "package.json"),
      JSON.stringify({ name: "try-tenure", private: true, type: "module" }),
    );
    const install = spawnSync(
      npm,
      [
        "install",
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",
        join(work, packed[0]!.filename),
      ],
      { cwd: app, encoding: "utf8", timeout: 240_000 },
    );
    assert.equal(install.status, 0, `npm install: ${install.stderr}`);
    if (!(await loadNodeSqlite())) {
      // Node 20: the README's driver line says `npm install better-sqlite3`; use the
      // repository's already-built copy instead of compiling another one offline.
      symlinkSync(
        join(REPO_ROOT, "node_modules", "better-sqlite3"),
        join(app, "node_modules", "better-sqlite3"),
      );
    }

    // 3. README's first example, word for word
    writeFileSync(join(app, "leader.mjs"), readmeFirstExample());
    for (const expected of [1, 2]) {
      const run = spawnSync(process.execPath, ["leader.mjs"], {
        cwd: app,
        encoding: "utf8",
        timeout: 60_000,
      });
      assert.equal(run.status, 0, `node leader.mjs: ${run.stderr}`);
      assert.equal(run.stdout.trim(), `leading with fencing token ${expected}`);
      assert.equal(run.stderr, "", "nothing on stderr (no experimental warning either)");
    }
    // 4. the CLI from the installed package
    const version = spawnSync(join(app, "node_modules", ".bin", "tenure"), ["--version"], {
      cwd: app,
      encoding: "utf8",
      env: { ...process.env, PATH: `${join(process.execPath, "..")}:${process.env.PATH}` },
    });
    assert.equal(version.stdout.trim(), `tenure ${pkg.version}`, version.stderr);
  });
});

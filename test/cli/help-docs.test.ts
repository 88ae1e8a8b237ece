import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { formatDuration } from "../../src/cli/duration.js";
import { EXIT } from "../../src/cli/exit-codes.js";
import { CLI_DEFAULTS, COMMANDS, OPTIONS } from "../../src/cli/flags.js";
import { helpText } from "../../src/cli/help.js";
import { ELECTOR_DEFAULTS } from "../../src/elector/options.js";
import { REPO_ROOT } from "../helpers/services.js";

const doc = readFileSync(join(REPO_ROOT, "docs", "cli.md"), "utf8");
const flagsIn = (text: string) => new Set([...text.matchAll(/--[a-z][a-z-]*/g)].map((m) => m[0]));
const sorted = (s: Set<string> | string[]) => [...s].sort();

/** docs/cli.md: the synopsis lines of `command`, plus the flags "every command also takes". */
function documentedFlags(command: string): Set<string> {
  const synopsis = /^```\n(tenure run[\s\S]*?)^```/m.exec(doc)?.[1] ?? "";
  const own = synopsis
    .split(/\n(?=tenure )/)
    .find((block) => block.startsWith(`tenure ${command} `));
  assert.ok(own, `docs/cli.md has no synopsis for ${command}`);
  const common = /^Every command also takes[\s\S]*?\n\n/m.exec(doc)?.[0] ?? "";
  assert.ok(common, "docs/cli.md: the flags every command takes");
  const out = new Set([...flagsIn(own.replace(/\s--\s/g, " ")), ...flagsIn(common)]);
  out.delete("--version"); // `tenure --version`: not an option of a command
  return out;
}

/** `tenure <command> --help`: the flags it lists as options. */
function helpFlags(command: string): Set<string> {
  const text = helpText(command);
  return new Set([...text.matchAll(/^ {2}(?:-[a-z], )?(--[a-z][a-z-]*)/gm)].map((m) => m[1]!));
}

describe("the CLI's help, docs/cli.md and the parser agree", () => {
  for (const command of COMMANDS) {
    it(`${command}: the same flags in the parser, --help and docs/cli.md`, () => {
      const parser = new Set(Object.keys(OPTIONS[command]).map((k) => `--${k}`));
      assert.deepEqual(sorted(helpFlags(command)), sorted(parser), "--help vs the parser");
      assert.deepEqual(
        sorted(documentedFlags(command)),
        sorted(parser),
        "docs/cli.md vs the parser",
      );
    });
  }

  it("the same exit codes in EXIT, --help and docs/cli.md", () => {
    const codes = sorted(Object.values(EXIT).map(String));
    const help = /Exit codes:\n([\s\S]*?)\n\n?$/.exec(helpText())?.[1] ?? "";
    const inHelp = new Set([...help.matchAll(/(?:^|\s{2,})(\d{1,3})\s/gm)].map((m) => m[1]!));
    assert.deepEqual(sorted(inHelp), codes, "--help");
    const table = /## Exit codes\n([\s\S]*?)\n\n/.exec(doc)?.[1] ?? "";
    const inDoc = new Set([...table.matchAll(/^\| (\d+) \|/gm)].map((m) => m[1]!));
    assert.deepEqual(sorted(inDoc), codes, "docs/cli.md");
  });

  it("the commands in --help are the commands that exist, and so are README's and CHANGELOG's", () => {
    const listed = [...helpText().matchAll(/^ {2}([a-z]+) {2,}/gm)].map((m) => m[1]!);
    assert.deepEqual(sorted(listed), sorted([...COMMANDS]));
    for (const file of ["README.md", "CHANGELOG.md"]) {
      const text = readFileSync(join(REPO_ROOT, file), "utf8");
      for (const m of text.matchAll(/`tenure ([a-z]+)(?=[ `])/g)) {
        assert.ok((COMMANDS as readonly string[]).includes(m[1]!), `${file}: tenure ${m[1]}`);
      }
      const cliList = /The `tenure` CLI \(([^)]*)\)/.exec(text)?.[1];
      if (cliList) {
        for (const c of cliList.matchAll(/`([a-z]+)`/g)) {
          assert.ok((COMMANDS as readonly string[]).includes(c[1]!), `${file}: ${c[1]}`);
        }
      }
    }
  });

  it("--help states the defaults the CLI uses; --ttl's is the library's own ELECTOR_DEFAULTS.ttlMs", () => {
    const run = helpText("run");
    assert.equal(CLI_DEFAULTS.ttlMs, ELECTOR_DEFAULTS.ttlMs);
    assert.ok(run.includes(`(default ${formatDuration(ELECTOR_DEFAULTS.ttlMs)})`), "--ttl");
    assert.ok(run.includes(`(default ${formatDuration(CLI_DEFAULTS.graceMs)})`), "--grace");
    assert.ok(run.includes(`(default ${CLI_DEFAULTS.maxRestarts})`), "--max-restarts");
    assert.ok(
      run.includes(`(default ${formatDuration(CLI_DEFAULTS.restartDelayMs)})`),
      "--restart-delay",
    );
    assert.ok(
      run.includes(`(default ${formatDuration(CLI_DEFAULTS.connectTimeoutMs)})`),
      "--connect-timeout",
    );
    // and docs/cli.md says the same
    assert.ok(doc.includes(formatDuration(ELECTOR_DEFAULTS.ttlMs)), "docs/cli.md --ttl default");
  });

  it("the default store in --help is the one README names", () => {
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    assert.match(helpText("run"), /sqlite:.*\/tenure\/leases\.db/);
    assert.match(helpText(), /Default store: \$TENURE_STORE, else sqlite:/);
    assert.match(readme, /\$XDG_STATE_HOME\/tenure\/leases\.db/);
    assert.doesNotMatch(readme, /default `sqlite:\.\/\.tenure/);
  });
});

/**
 * Planted bugs, applied to a copy of the compiled sources (never to src/):
 * dist/src is copied to dist/sim-mutants/<name>/src, one text substitution is
 * made in the compiled JavaScript (failing loudly if its pattern is gone), and
 * the simulator imports the copy. The copy sits under the repository so its
 * imports (croner…) resolve from node_modules.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DIST_SRC, loadTenure, type Tenure } from "./world.js";

interface Edit {
  readonly file: string;
  readonly from: string;
  readonly to: string;
}

export const MUTANTS = {
  /** The trust window starts when the reply arrives instead of when the request was sent. */
  "window-at-reply": [
    {
      file: "elector/elector.js",
      from: "const validUntil = sentAt + o.ttlMs - o.safetyMarginMs;",
      to: "const validUntil = o.clock.now() + o.ttlMs - o.safetyMarginMs;",
    },
    {
      file: "elector/elector.js",
      from: "st.validUntil = sentAt + o.ttlMs - o.safetyMarginMs;",
      to: "st.validUntil = o.clock.now() + o.ttlMs - o.safetyMarginMs;",
    },
  ],
  /** A renewal whose reply arrives after the local deadline is still accepted. */
  "late-renewal-accepted": [
    {
      // the renewal in flight races the store timeout instead of the trust window
      file: "elector/elector.js",
      from: "st.renewal.ask(st.nextRenewAt, st.validUntil, o.renewIntervalMs / 2, this)",
      to: "st.renewal.ask(st.nextRenewAt, st.nextRenewAt + o.storeTimeoutMs, o.renewIntervalMs / 2, this)",
    },
    {
      // ... and its answer is taken even when it came after the trust window
      file: "elector/elector.js",
      from: "        if (this.checkDeadline()) {\n            this.endRenewLoop(st);\n            return;\n        }\n        if (failed) {",
      to: "        if (failed) {",
    },
  ],
  /** isLeader() answers from a cached flag instead of the clock. */
  "cached-isleader": [
    {
      file: "elector/elector.js",
      from: "this.checkDeadline();\n        const cur = this.current;\n        return cur !== null && this.options.clock.now() < cur.validUntil;",
      to: "return this.current !== null;",
    },
  ],
  /** A service start that returns after its term ended is not undone. */
  "stale-start-kept": [
    {
      file: "leader/service.js",
      from: 'await stopOne(ctx, term, svc, value, svc.removed ? "stopped" : this.reason);',
      to: "void 0;",
    },
  ],
  /**
   * An elector leads again a term it already ended, when the store answers its
   * re-acquire with that term (the lease was still held live by its holder).
   */
  "ended-term-led-again": [
    {
      file: "elector/elector.js",
      from: "if (wasEnded(o.store, r.lease)) {",
      to: "if (false) {",
    },
  ],
  /** Extra (liveness): a follower told the lease is held waits 5 × ttl instead of at most retryMs. */
  "slow-follower": [
    {
      file: "elector/elector.js",
      from: "Math.min(o.retryMs, waitMs + jitter)",
      to: "5 * o.ttlMs",
    },
  ],
  /** Extra (two holders): the store grants a live lease to a second holder. */
  "store-double-grant": [
    {
      file: "stores/memory/store.js",
      from: "if (cur && cur.holder !== holder)",
      to: "if (cur && cur.holder !== holder && cur.token % 3n !== 0n)",
    },
  ],
  /** Extra (fenced order): the memory store's fenced write ignores the token. */
  "fence-unchecked": [
    {
      file: "stores/memory/store.js",
      from: 'if (!row || row.token !== lease.token)\n            return { ok: false, reason: "fenced" };',
      to: 'if (!row)\n            return { ok: false, reason: "fenced" };',
    },
  ],
  // The fixes of the bugs the simulator found, undone (each regression test must fail on its revert).
  /** Revert: a wake left from the term's end cuts the follower's first backoff to nothing. */
  "revert-stale-wake": [
    {
      file: "elector/elector.js",
      from: "it would cut the first failure backoff to nothing.\n        this.woken = false;",
      to: "it would cut the first failure backoff to nothing.",
    },
  ],
  /** Revert: a stream reconnect runs without re-checking leadership against the clock. */
  "revert-stream-clock-check": [
    {
      file: "leader/stream.js",
      from: "if (!ctx.enforceDeadline() || ctx.term() !== term)\n                break;",
      to: "",
    },
  ],
  /** Revert: a service start retry runs without re-checking leadership against the clock. */
  "revert-service-clock-check": [
    {
      file: "leader/service.js",
      from: "if (this.ended || svc.removed || !ctx.isLeader() || ctx.term() !== term)\n                return true;",
      to: "",
    },
  ],
} satisfies Record<string, readonly Edit[]>;

export type MutantName = keyof typeof MUTANTS;

/** The planted bugs the default run must catch (the list). */
export const PLANTED: readonly MutantName[] = [
  "window-at-reply",
  "late-renewal-accepted",
  "cached-isleader",
  "stale-start-kept",
  "ended-term-led-again",
];

const MUTANT_ROOT = fileURLToPath(new URL("../../sim-mutants/", import.meta.url));

/** Copies dist/src, applies mutant `name`, returns the copy's src directory. */
export function buildMutant(name: MutantName): string {
  const dir = join(MUTANT_ROOT, name, "src");
  rmSync(join(MUTANT_ROOT, name), { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  if (!existsSync(join(DIST_SRC, "elector/elector.js"))) {
    throw new Error(`mutant ${name}: ${DIST_SRC} has no compiled sources; run npm run build`);
  }
  cpSync(DIST_SRC, dir, { recursive: true });
  for (const e of MUTANTS[name] as readonly Edit[]) {
    const path = join(dir, e.file);
    const text = readFileSync(path, "utf8");
    const n = text.split(e.from).length - 1;
    if (n !== 1) {
      throw new Error(
        `mutant ${name}: expected the pattern exactly once in ${e.file}, found it ${n} times; update test/sim/mutants.ts to the current source:\n${e.from}`,
      );
    }
    writeFileSync(path, text.replace(e.from, e.to));
  }
  return dir;
}

/** Builds mutant `name` and loads it. */
export async function loadMutant(name: MutantName): Promise<Tenure> {
  return loadTenure(buildMutant(name));
}

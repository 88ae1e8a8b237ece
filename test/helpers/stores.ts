import assert from "node:assert/strict";
import { afterEach } from "node:test";
import { StoreError } from "../../src/errors.js";
import type { LeaseStore } from "../../src/store/types.js";

export type Op = "acquire" | "renew" | "release" | "read";

/** Store calls beyond the lease core, which a test must declare before they are made. */
export type ExtraOp = "list" | "forceRelease" | "putFenced" | "getFenced";

/** Unexpected calls of every ScriptedStore, reported (and failing the test) after each test. */
const unexpected: string[] = [];

// As client-go's fake clientset: a call no test expected fails the test that made it.
afterEach(() => {
  if (unexpected.length === 0) return;
  const calls = unexpected.splice(0);
  throw new assert.AssertionError({
    message: `ScriptedStore: unexpected store calls: ${calls.join(", ")}`,
  });
});

/**
 * Wraps a store for state-machine tests: counts every call and lets a test
 * make chosen operations fail or hang. Not a store of its own: every call that
 * is not failed goes to the real (memory) store underneath.
 *
 * The lease core (acquire, renew, release, read, watch, close) is expected of
 * any elector. Any other call (list, forceRelease, putFenced, getFenced) must
 * be declared with `expect`; an undeclared one is refused (it rejects) and
 * fails the running test, as client-go's fake does.
 */
export class ScriptedStore implements LeaseStore {
  readonly kind: string;
  readonly notifies: boolean;
  calls: Record<Op | ExtraOp, number> = {
    acquire: 0,
    renew: 0,
    release: 0,
    read: 0,
    list: 0,
    forceRelease: 0,
    putFenced: 0,
    getFenced: 0,
  };
  /** Per operation: how to fail the next calls. */
  private failing = new Map<Op, { mode: "transient" | "fatal" | "hang"; remaining: number }>();
  private readonly expected: ReadonlySet<ExtraOp>;

  /**
   * `quiet`: hide the inner store's notifications (a polling-only store).
   * `expect`: the calls beyond the lease core this test makes.
   */
  constructor(
    readonly inner: LeaseStore,
    opts: { quiet?: boolean; expect?: readonly ExtraOp[] } = {},
  ) {
    this.kind = inner.kind;
    this.notifies = inner.notifies && !opts.quiet;
    this.expected = new Set(opts.expect ?? []);
    if (inner.watch && !opts.quiet) this.watch = inner.watch.bind(inner);
  }

  /** Makes the next `times` calls of `op` fail (Infinity: until cleared). */
  fail(op: Op, mode: "transient" | "fatal" | "hang", times = Number.POSITIVE_INFINITY): void {
    this.failing.set(op, { mode, remaining: times });
  }
  heal(op?: Op): void {
    if (op) this.failing.delete(op);
    else this.failing.clear();
  }

  private gate<T>(op: Op, fn: () => Promise<T>): Promise<T> {
    this.calls[op] += 1;
    const f = this.failing.get(op);
    if (f && f.remaining > 0) {
      f.remaining -= 1;
      if (f.mode === "hang") return new Promise<T>(() => {});
      return Promise.reject(
        new StoreError(`scripted ${op} failure`, {
          transient: f.mode === "transient",
          kind: f.mode === "transient" ? "connection" : "auth",
          code: f.mode === "transient" ? "ECONNRESET" : "28P01",
        }),
      );
    }
    return fn();
  }

  /** A call beyond the lease core: passed through when declared, else refused and recorded. */
  private extra<T>(op: ExtraOp, fn: () => Promise<T>): Promise<T> {
    this.calls[op] += 1;
    if (this.expected.has(op)) return fn();
    unexpected.push(op);
    return Promise.reject(new Error(`ScriptedStore: unexpected call ${op}()`));
  }

  acquire: LeaseStore["acquire"] = (n, h, t) =>
    this.gate("acquire", () => this.inner.acquire(n, h, t));
  renew: LeaseStore["renew"] = (l, t) => this.gate("renew", () => this.inner.renew(l, t));
  release: LeaseStore["release"] = (l) => this.gate("release", () => this.inner.release(l));
  read: LeaseStore["read"] = (n) => this.gate("read", () => this.inner.read(n));
  list: LeaseStore["list"] = (o) => this.extra("list", () => this.inner.list(o));
  forceRelease: LeaseStore["forceRelease"] = (n) =>
    this.extra("forceRelease", () => this.inner.forceRelease(n));
  watch?: LeaseStore["watch"];
  putFenced: LeaseStore["putFenced"] = (l, k, v, o) =>
    this.extra("putFenced", () => this.inner.putFenced(l, k, v, o));
  getFenced: LeaseStore["getFenced"] = (n, k) =>
    this.extra("getFenced", () => this.inner.getFenced(n, k));
  close: LeaseStore["close"] = () => this.inner.close();
}

/** A logger that records every line. */
export function recordingLogger() {
  const lines: { level: string; msg: string; fields: Record<string, unknown> | undefined }[] = [];
  const rec = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
    lines.push({ level, msg, fields });
  };
  return {
    lines,
    logger: { debug: rec("debug"), info: rec("info"), warn: rec("warn"), error: rec("error") },
  };
}

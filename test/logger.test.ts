import assert from "node:assert/strict";
import { Console } from "node:console";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import bunyan from "bunyan";
import { pino } from "pino";
import winston from "winston";
import { createElector } from "../src/elector/index.js";
import { ConfigError } from "../src/errors.js";
import { detectLoggerShape, type LoggerLike, toLogger } from "../src/logger.js";
import { MemoryStore } from "../src/stores/memory/index.js";
import { FakeClock } from "../src/testing/index.js";

/** A writable that keeps what it was given. */
function sink() {
  const s = new PassThrough();
  let text = "";
  s.setEncoding("utf8").on("data", (d: string) => {
    text += d;
  });
  return {
    stream: s,
    text: async () => {
      await new Promise((r) => setImmediate(r));
      return text;
    },
  };
}

/** Elects one elector that logs to `logger`; returns once `elected` was logged. */
async function elect(logger: LoggerLike): Promise<void> {
  const clock = new FakeClock();
  const store = new MemoryStore({ clock });
  const e = createElector({ store, name: "billing", holderId: "pod-1", clock, logger });
  await e.start();
  await clock.advance(0);
  assert.equal(e.isLeader(), true);
  const p = e.stop();
  await clock.advance(60_000);
  await p;
}

/** The JSON line whose message is `msg`. */
function line(text: string, msg: string, key = "msg"): Record<string, unknown> {
  const found = text
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((o) => o[key] === msg);
  assert.ok(found, `no ${JSON.stringify(msg)} line in:\n${text}`);
  return found;
}

describe("loggers: pino, winston, bunyan and console out of the box", () => {
  it("pino (object-first) gets the fields, tokens as strings", async () => {
    const out = sink();
    const log = pino({ level: "debug" }, out.stream);
    assert.equal(detectLoggerShape(log), "object-first");
    await elect(log);
    const o = line(await out.text(), "elected");
    assert.equal(o.lease, "billing");
    assert.equal(o.holder, "pod-1");
    assert.equal(o.token, "1");
    assert.equal(o.level, 30);
    assert.equal(line(await out.text(), "released lease").level, 30);
  });

  it("bunyan (object-first) gets the fields and does not choke on bigint tokens", async () => {
    const out = sink();
    const log = bunyan.createLogger({
      name: "t",
      streams: [{ stream: out.stream, level: "debug" }],
    });
    assert.equal(detectLoggerShape(log), "object-first");
    await elect(log);
    const o = line(await out.text(), "elected");
    assert.deepEqual([o.lease, o.holder, o.token, o.level], ["billing", "pod-1", "1", 30]);
  });

  it("winston (message-first) gets the fields as metadata", async () => {
    const out = sink();
    const log = winston.createLogger({
      level: "debug",
      format: winston.format.json(),
      transports: [new winston.transports.Stream({ stream: out.stream })],
    });
    assert.equal(detectLoggerShape(log), "message-first");
    await elect(log);
    const o = line(await out.text(), "elected", "message");
    assert.deepEqual([o.lease, o.holder, o.token, o.level], ["billing", "pod-1", "1", "info"]);
  });

  it("console prints the message and the fields", async () => {
    const out = sink();
    const log = new Console({ stdout: out.stream, stderr: out.stream });
    assert.equal(detectLoggerShape(log), "message-first");
    await elect(log);
    const text = await out.text();
    assert.match(text, /^elected \{ lease: 'billing', holder: 'pod-1', token: 1n \}$/m);
  });

  it("an explicit shape for an unknown object-first logger; a non-logger is a ConfigError", async () => {
    const calls: unknown[][] = [];
    const custom = {
      info: (...a: unknown[]) => calls.push(a),
      warn: (...a: unknown[]) => calls.push(a),
      error: (...a: unknown[]) => calls.push(a),
    };
    toLogger(custom, { shape: "object-first" }).info("hi", { lease: "x", token: 5n });
    assert.deepEqual(calls, [[{ lease: "x", token: "5" }, "hi"]]);
    toLogger(custom).debug("no debug method: ignored");
    assert.equal(calls.length, 1);
    assert.throws(
      () =>
        createElector({
          store: new MemoryStore(),
          name: "x",
          logger: { info() {} } as unknown as LoggerLike,
        }),
      (e: unknown) => e instanceof ConfigError && /logger/.test(e.message),
    );
  });
});

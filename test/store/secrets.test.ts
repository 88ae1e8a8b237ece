import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createElector } from "../../src/elector/index.js";
import { healthHandler } from "../../src/http/index.js";
import { createStreamLogger, type Logger, logReplacer } from "../../src/logger.js";
import { openStore } from "../../src/open.js";
import { redactSecrets, redactUrl, urlSecrets } from "../../src/store/classify.js";
import type { LeaseStore } from "../../src/store/types.js";
import { freePort } from "../helpers/ports.js";
import { REPO_ROOT } from "../helpers/services.js";
import { uniqueName, waitFor } from "../helpers/wait.js";

/** Every credential below contains this; none may ever be printed. */
const SECRET = "hunter2pw";
const SECRET_RE = /hunter2/;
const TENURE_BIN = join(REPO_ROOT, "dist", "src", "cli", "main.js");

let port = 0;
before(async () => {
  port = await freePort(); // closed: nothing listens there
});

/** Each form of credential a store URL can carry, on each backend (all pointing at a closed port). */
function forms(): string[] {
  const h = `127.0.0.1:${port}`;
  return [
    `postgres://app:${SECRET}@${h}/db`,
    `postgresql://app@${h}/db?password=${SECRET}`,
    `postgres://app@${h}/db?sslmode=disable&sslpassword=${SECRET}`,
    `postgres://app@${h}/db?sslkey=%2Ftmp%2F${SECRET}.key`,
    `postgres://app@${h}/db?application_name=x&token=${SECRET}`,
    `redis://:${SECRET}@${h}`,
    `redis://default:${SECRET}@${h}/0`,
    `redis://${SECRET}@${h}`,
    `redis://${h}?password=${SECRET}`,
    `redis+sentinel://:${SECRET}@${h}/mymaster`,
    `redis+sentinel://app:${SECRET}@${h},127.0.0.1:1/mymaster?db=1`,
    `redis+sentinel://${h}/mymaster?sentinelPassword=${SECRET}`,
    `etcd://root:${SECRET}@${h}`,
    `etcd://${h}?access_token=${SECRET}`,
    `ftp://u:${SECRET}@${h}/x?api_key=${SECRET}`,
  ];
}

/** A logger that keeps every call as one JSON line, fields included (what pino would see). */
function capture(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const rec =
    (level: string) =>
    (msg: string, fields?: Record<string, unknown>): void => {
      lines.push(JSON.stringify({ level, msg, ...fields }, logReplacer));
    };
  return {
    lines,
    logger: { debug: rec("debug"), info: rec("info"), warn: rec("warn"), error: rec("error") },
  };
}

function tenureStatus(url: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(
      process.execPath,
      [TENURE_BIN, "status", "--store", url, "--connect-timeout", "300ms", "--log-level", "debug"],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TENURE_STORE: "" } },
    );
    let out = "";
    p.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    p.stderr.setEncoding("utf8").on("data", (d: string) => (out += d));
    p.on("exit", (code) => resolve({ code, out }));
  });
}

describe("credentials in store URLs never surface", () => {
  const opened: LeaseStore[] = [];
  after(async () => {
    await Promise.allSettled(opened.map((s) => s.close()));
  });

  it("redactUrl and redactSecrets hide every form and keep the rest readable", () => {
    for (const url of forms()) {
      const shown = redactUrl(url);
      assert.doesNotMatch(shown, SECRET_RE, url);
      assert.match(shown, new RegExp(`127\\.0\\.0\\.1:${port}`), url);
      assert.ok(
        urlSecrets(url).some((s) => s.includes(SECRET)),
        `urlSecrets(${url})`,
      );
      assert.doesNotMatch(redactSecrets(`connect failed (${url}) retrying`), SECRET_RE);
    }
    // Tenure's own log fields are not secrets: a fencing token stays readable
    assert.equal(
      redactSecrets("INFO elected lease=x holder=h:1:ab token=17 attempt=2"),
      "INFO elected lease=x holder=h:1:ab token=17 attempt=2",
    );
    // libpq keyword form, and ordinary parameters stay as they are
    assert.equal(
      redactSecrets("host=db user=app password=s3cr3t sslmode=require"),
      "host=db user=app password=*** sslmode=require",
    );
    assert.equal(
      redactUrl("postgres://app:pw@db:5432/x?sslmode=require&tenure_table=t"),
      "postgres://app:***@db:5432/x?sslmode=require&tenure_table=t",
    );
  });

  it("through errors, logs, health(), metrics and tenure status", async () => {
    for (const url of forms()) {
      const { logger, lines } = capture();
      const human: string[] = [];
      const stream = createStreamLogger({
        level: "debug",
        stream: { write: (s: string) => human.push(s) },
      });
      const tee =
        (level: keyof Logger) =>
        (m: string, f?: Record<string, unknown>): void => {
          logger[level](m, f);
          stream[level](m, f);
        };
      const both: Logger = {
        debug: tee("debug"),
        info: tee("info"),
        warn: tee("warn"),
        error: tee("error"),
      };
      let store: LeaseStore;
      try {
        store = await openStore(url, { logger: both });
      } catch (e) {
        // a refused URL or an open that failed: its error is clean
        const err = e as Error;
        assert.doesNotMatch(`${err.message}\n${err.stack}\n${String(err.cause ?? "")}`, SECRET_RE);
        continue;
      }
      opened.push(store);
      // a store call fails: its error is clean
      const callErr = await store.read("x").then(
        () => assert.fail(`read on a closed port answered (${redactUrl(url)})`),
        (e: Error) => e,
      );
      assert.doesNotMatch(
        `${callErr.message}\n${callErr.stack}\n${String(callErr.cause ?? "")}`,
        SECRET_RE,
      );
      // an elector on it logs its failures, reports health and metrics: all clean
      const elector = createElector({
        store,
        name: uniqueName("secrets"),
        ttlMs: 400,
        logger: both,
        storeTimeoutMs: 300,
        unreachableAfterMs: 1,
      });
      const handler = healthHandler(elector);
      try {
        await elector.start();
        await waitFor(
          "a logged store failure",
          () => lines.some((l) => /store .* failed/.test(l)),
          {
            timeoutMs: 8000,
          },
        );
        const health = JSON.stringify(elector.health(), logReplacer);
        assert.doesNotMatch(health, SECRET_RE);
        assert.doesNotMatch(await handler.metrics.text(), SECRET_RE);
      } finally {
        handler.close();
        await elector.stop();
      }
      assert.doesNotMatch(lines.join("\n"), SECRET_RE, redactUrl(url));
      assert.doesNotMatch(human.join(""), SECRET_RE, redactUrl(url));
    }
  });

  it("tenure status prints none of them, whatever it fails on", async () => {
    const results = await Promise.all(
      forms().map(async (url) => [url, await tenureStatus(url)] as const),
    );
    for (const [url, r] of results) {
      assert.ok(r.code === 64 || r.code === 69, `${redactUrl(url)}: exit ${r.code}\n${r.out}`);
      assert.match(r.out, /^tenure: /m);
      assert.doesNotMatch(r.out, SECRET_RE, redactUrl(url));
    }
  });
});

import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { healthHandler, serveHealth } from "../../src/http/index.js";
import { setup } from "./setup.js";

async function get(port: number, path: string) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return {
    status: res.status,
    type: res.headers.get("content-type") ?? "",
    body: await res.text(),
  };
}

/** Metric names and samples from Prometheus text. */
function parseProm(text: string) {
  const types = new Map<string, string>();
  const samples: { name: string; labels: string; value: number }[] = [];
  for (const line of text.split("\n")) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) types.set(t[1]!, t[2]!);
    const s = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (s) samples.push({ name: s[1]!, labels: s[2] ?? "", value: Number(s[3]) });
  }
  return { types, samples };
}

describe("health and metrics over HTTP", () => {
  it("serves /healthz, /readyz and Prometheus /metrics on a real node:http server", async () => {
    const { clock, make, stopAll } = setup();
    const a = make("a");
    const b = make("b");
    let failing = true;
    a.every(100, () => {});
    const srv = await serveHealth([a, b], { port: 0 });
    try {
      let r = await get(srv.port, "/readyz");
      assert.equal(r.status, 503, "not ready before start");
      await a.start();
      await clock.advance(0);
      await b.start();
      await clock.advance(0);
      r = await get(srv.port, "/healthz");
      assert.equal(r.status, 200);
      assert.match(r.type, /application\/json/);
      const body = JSON.parse(r.body);
      assert.equal(body.status, "ok");
      assert.deepEqual(
        body.electors.map((e: { holder: string; isLeader: boolean; token: string | null }) => [
          e.holder,
          e.isLeader,
          e.token,
        ]),
        [
          ["a", true, "1"],
          ["b", false, null],
        ],
      );
      // A service registered while leading starts at once; it fails and waits for its retry.
      a.service({
        name: "api",
        start: () => {
          if (failing) throw new Error("port busy");
        },
        stop: () => {},
      });
      await clock.advance(1500); // the service failed twice: a leader whose service is down is unhealthy
      r = await get(srv.port, "/healthz");
      assert.equal(r.status, 503);
      assert.match(JSON.parse(r.body).electors[0].reason, /service "api" is not running/);
      assert.equal((await get(srv.port, "/readyz")).status, 503);
      failing = false;
      await clock.advance(2000);
      assert.equal((await get(srv.port, "/healthz")).status, 200);
      assert.equal((await get(srv.port, "/readyz")).status, 200);

      r = await get(srv.port, "/metrics");
      assert.equal(r.status, 200);
      assert.match(r.type, /text\/plain/);
      const { types, samples } = parseProm(r.body);
      for (const [name, type] of [
        ["tenure_is_leader", "gauge"],
        ["tenure_term_token", "gauge"],
        ["tenure_elections_total", "counter"],
        ["tenure_demotions_total", "counter"],
        ["tenure_renew_latency_seconds", "histogram"],
        ["tenure_store_errors_total", "counter"],
        ["tenure_tick_runs_total", "counter"],
        ["tenure_tick_skips_total", "counter"],
        ["tenure_service_running", "gauge"],
      ]) {
        assert.equal(types.get(name!), type, `${name} is a ${type}`);
      }
      const v = (name: string, labels: string) =>
        samples.find((s) => s.name === name && s.labels === labels)?.value;
      assert.equal(v("tenure_is_leader", '{lease="job",holder="a"}'), 1);
      assert.equal(v("tenure_term_token", '{lease="job",holder="a"}'), 1);
      assert.ok(
        (v("tenure_tick_runs_total", '{lease="job",holder="a",tick="every:100"}') ?? 0) >= 30,
      );
      assert.equal(v("tenure_store_errors_total", '{lease="job",holder="a",class="transient"}'), 0);
      assert.equal(v("tenure_service_running", '{lease="job",holder="a",service="api"}'), 1);
      assert.ok((v("tenure_renew_latency_seconds_count", '{lease="job",holder="a"}') ?? 0) >= 5);

      const stopping = a.stop();
      await clock.advance(0);
      await stopping;
      await clock.advance(1000);
      const m = parseProm((await get(srv.port, "/metrics")).body).samples;
      const stopped = m.filter(
        (s) => s.name === "tenure_demotions_total" && s.labels.includes('reason="stopped"'),
      );
      assert.equal(
        stopped.reduce((n, s) => n + s.value, 0),
        1,
      );
      assert.equal(
        m.filter((s) => s.name === "tenure_elections_total").reduce((n, s) => n + s.value, 0),
        2,
        "a once, then b took over",
      );
      assert.equal((await get(srv.port, "/readyz")).status, 503, "a stopped elector is not ready");
      assert.equal((await get(srv.port, "/nope")).status, 404);
      const post = await fetch(`http://127.0.0.1:${srv.port}/healthz`, { method: "POST" });
      assert.equal(post.status, 405);
    } finally {
      await srv.close();
      await stopAll();
    }
  });

  it("works as Express-style middleware: unknown paths go to next()", async () => {
    const { clock, make, stopAll } = setup();
    const a = make("a");
    await a.start();
    await clock.advance(0);
    const handler = healthHandler(a, { healthPath: "/live" });
    const server = createServer((req, res) =>
      handler(req, res, () => {
        res.statusCode = 418;
        res.end("app");
      }),
    );
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    try {
      assert.equal((await get(port, "/live")).status, 200);
      assert.equal((await get(port, "/healthz")).status, 418);
      const r = await get(port, "/metrics?x=1");
      assert.equal(r.status, 200);
      assert.match(r.body, /tenure_is_leader\{lease="job",holder="a"\} 1/);
    } finally {
      handler.close();
      await new Promise((r) => server.close(r));
      await stopAll();
    }
  });
});

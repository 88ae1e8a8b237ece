import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { healthHandler, serveHealth } from "../../src/http/index.js";
import { ScriptedStore } from "../helpers/stores.js";
import { setup, TTL } from "./setup.js";

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
  it("health() serializes with JSON.stringify while leading (tokens as strings)", async () => {
    const { clock, make, stopAll } = setup();
    const a = make("a");
    await a.start();
    await clock.advance(0);
    assert.equal(a.isLeader(), true);
    const h = a.health();
    const json = JSON.parse(JSON.stringify(h));
    assert.equal(json.token, "1");
    assert.deepEqual(json.leader, { name: "job", holder: "a", token: "1", self: true });
    assert.equal(json.live, true);
    assert.equal(typeof h.token, "bigint", "the snapshot itself keeps bigint tokens");
    assert.equal(Object.keys(h).includes("toJSON"), false, "toJSON is not enumerable");
    await stopAll();
  });

  it("/livez survives a store outage, /readyz follows the store (or leadership), /leader only on the leader", async () => {
    const { clock, mem, make, stopAll } = setup();
    const sa = new ScriptedStore(mem);
    const sb = new ScriptedStore(mem);
    const a = make("a", { store: sa, unreachableAfterMs: 2 * TTL });
    const b = make("b", { store: sb, unreachableAfterMs: 2 * TTL });
    const srv = await serveHealth([a, b], { port: 0, holderLabel: true });
    const leaderOnly = await serveHealth(a, { port: 0, readiness: "leader" });
    const status = async (path: string, port = srv.port) => (await get(port, path)).status;
    try {
      await a.start();
      await clock.advance(0);
      await b.start();
      await clock.advance(0);
      assert.equal(await status("/livez"), 200);
      assert.equal(await status("/readyz"), 200);
      assert.equal(await status("/leader?lease=job"), 503, "b, in the same set, does not lead");
      assert.equal(await status("/leader", leaderOnly.port), 200);
      assert.equal(await status("/readyz", leaderOnly.port), 200);
      // the store goes away for both, for longer than unreachableAfterMs
      for (const s of [sa, sb]) {
        for (const op of ["acquire", "renew", "read", "release"] as const) s.fail(op, "transient");
      }
      await clock.advance(TTL / 2);
      assert.equal(await status("/healthz"), 200, "healthy: not unreachable for long yet");
      assert.equal(await status("/readyz"), 503, "not ready: the last store calls failed");
      await clock.advance(3 * TTL);
      assert.equal(a.isLeader(), false, "the leader's trust window ran out");
      assert.equal(await status("/healthz"), 503, "unhealthy: store unreachable");
      assert.equal(await status("/readyz"), 503, "not ready while the store is unreachable");
      assert.equal(await status("/livez"), 200, "live: a restart would not bring the store back");
      assert.equal(await status("/leader", leaderOnly.port), 503);
      assert.equal(await status("/readyz", leaderOnly.port), 503);
      // the store comes back
      sa.heal();
      sb.heal();
      await clock.advance(2 * TTL);
      assert.equal(await status("/readyz"), 200);
      assert.equal(await status("/healthz"), 200);
      const leads = [a, b].filter((e) => e.isLeader());
      assert.equal(leads.length, 1);
      assert.equal(await status("/leader", leaderOnly.port), a.isLeader() ? 200 : 503);
      assert.equal(await status("/leader?lease=nope"), 404);
      const body = JSON.parse((await get(srv.port, "/livez")).body);
      assert.equal(body.status, "ok");
      assert.equal(typeof body.electors[0].leader.token, "string");
    } finally {
      await srv.close();
      await leaderOnly.close();
      await stopAll();
    }
  });

  it("/livez fails while the loop is stuck: a leader past its deadline that has not demoted", async () => {
    const { clock, make, stopAll } = setup();
    const a = make("a");
    const srv = await serveHealth(a, { port: 0 });
    try {
      await a.start();
      await clock.advance(0);
      // time jumps (a stalled event loop) without running timers: health() reports, never fixes
      clock.stall(2 * TTL);
      const h = a.health();
      assert.equal(h.live, false, JSON.stringify(h));
      assert.equal((await get(srv.port, "/livez")).status, 503);
    } finally {
      await srv.close();
      await stopAll();
    }
  });

  it("serves /healthz, /readyz and Prometheus /metrics on a real node:http server", async () => {
    const { clock, make, stopAll } = setup();
    const a = make("a");
    const b = make("b");
    let failing = true;
    a.every(100, () => {});
    const srv = await serveHealth([a, b], { port: 0, holderLabel: true });
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

  it("metrics carry no holder label by default (no new series per restart); tenure_leader_info names the leader", async () => {
    const { clock, make, stopAll } = setup();
    const a = make("host-1:4242:0a0b0c0d");
    await a.start();
    await clock.advance(0);
    const text = await healthHandler(a).metrics.text();
    const { samples } = parseProm(text);
    const withHolder = samples.filter((x) => x.labels.includes("holder="));
    assert.deepEqual(
      withHolder.map((x) => `${x.name}${x.labels} ${x.value}`),
      ['tenure_leader_info{lease="job",holder="host-1:4242:0a0b0c0d"} 1'],
    );
    assert.ok(samples.some((x) => x.name === "tenure_is_leader" && x.labels === '{lease="job"}'));
    // a restarted process (new holder id) reports into the same is_leader series
    const b = make("host-1:5555:ffffffff");
    const names = (t: string) =>
      parseProm(t)
        .samples.filter((x) => x.name !== "tenure_leader_info")
        .map((x) => `${x.name}${x.labels}`)
        .sort();
    assert.deepEqual(names(await healthHandler(b).metrics.text()), names(text));
    // two electors of one lease in one registry need the holder label, and say so
    assert.throws(
      () => healthHandler([a, b]),
      (e: unknown) => e instanceof Error && /holderLabel/.test(e.message),
    );
    await stopAll();
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
      assert.match(r.body, /tenure_is_leader\{lease="job"\} 1/);
    } finally {
      handler.close();
      await new Promise((r) => server.close(r));
      await stopAll();
    }
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { metrics } from "@opentelemetry/api";
import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import { createOtelMetrics } from "../../src/http/otel.js";
import { setup } from "./setup.js";

/** A reader that only collects when asked. */
class PullReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

async function collect(reader: PullReader) {
  const { resourceMetrics } = await reader.collect();
  const out = new Map<string, { attributes: Record<string, unknown>; value: unknown }[]>();
  for (const sm of resourceMetrics.scopeMetrics) {
    for (const m of sm.metrics) {
      out.set(
        m.descriptor.name,
        (m.dataPoints as { attributes: Record<string, unknown>; value: unknown }[]).map((d) => ({
          attributes: d.attributes,
          value: d.value,
        })),
      );
    }
  }
  return out;
}

describe("OpenTelemetry metrics (@opentelemetry/api, an optional peer)", () => {
  it("observes leadership, counters and renew latency with lease attributes only", async () => {
    const { clock, make, stopAll } = setup();
    const reader = new PullReader();
    const provider = new MeterProvider({ readers: [reader] });
    const a = make("host-1:1:aa");
    const otel = await createOtelMetrics(a, { meter: provider.getMeter("test") });
    await a.start();
    await clock.advance(0);
    await clock.advance(1000); // a few renewals
    const m = await collect(reader);
    assert.deepEqual(m.get("tenure.is_leader"), [{ attributes: { lease: "job" }, value: 1 }]);
    assert.deepEqual(m.get("tenure.term_token"), [{ attributes: { lease: "job" }, value: 1 }]);
    assert.deepEqual(m.get("tenure.elections"), [{ attributes: { lease: "job" }, value: 1 }]);
    assert.deepEqual(m.get("tenure.leader_info"), [
      { attributes: { lease: "job", holder: "host-1:1:aa" }, value: 1 },
    ]);
    const renewals = m.get("tenure.renewals")?.[0]?.value as number;
    assert.ok(renewals >= 2, `renewals ${renewals}`);
    const latency = m.get("tenure.renew_latency")?.[0];
    assert.deepEqual(latency?.attributes, { lease: "job" });
    assert.ok(latency, "a renew_latency histogram");
    assert.equal((latency.value as { count: number }).count, renewals);
    for (const [name, points] of m) {
      if (name === "tenure.leader_info") continue;
      for (const pt of points) assert.ok(!("holder" in pt.attributes), `${name} has no holder`);
    }
    otel.close();
    await stopAll();
    await provider.shutdown();
  });

  it("without a meter it uses @opentelemetry/api's global provider", async () => {
    const { clock, make, stopAll } = setup();
    const reader = new PullReader();
    const provider = new MeterProvider({ readers: [reader] });
    assert.ok(metrics.setGlobalMeterProvider(provider));
    try {
      const a = make("x");
      const otel = await createOtelMetrics(a);
      await a.start();
      await clock.advance(0);
      const m = await collect(reader);
      assert.deepEqual(m.get("tenure.is_leader"), [{ attributes: { lease: "job" }, value: 1 }]);
      otel.close();
      await stopAll();
    } finally {
      metrics.disable();
      await provider.shutdown();
    }
  });
});

// Health and Prometheus metrics over HTTP for an elector.
// Run: npm run build && node dist/examples/leader-health.js  then curl 127.0.0.1:9464/healthz /readyz /metrics

import { serveHealth } from "../src/http/index.js";
import { createElector, openStore } from "../src/index.js";

const store = await openStore(process.env.TENURE_STORE ?? "memory:");
const elector = createElector({ store, name: "example-health", ttlMs: 5_000 });
elector.every(1_000, () => {});
await elector.start();

const health = await serveHealth(elector, {
  port: Number(process.env.PORT ?? 9464),
  host: "127.0.0.1",
});
console.log(`health on http://127.0.0.1:${health.port}/healthz  /readyz  /metrics`);
const res = await fetch(`http://127.0.0.1:${health.port}/metrics`);
console.log(
  (await res.text())
    .split("\n")
    .filter((l) => l.startsWith("tenure_is_leader"))
    .join("\n"),
);

setTimeout(
  async () => {
    await health.close();
    await elector.stop();
    await store.close();
  },
  process.env.KEEP ? 60_000 : 1_000,
);

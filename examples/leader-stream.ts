// A leader-held stream with a recovery strategy and a fenced checkpoint.
// Run: npm run build && node dist/examples/leader-stream.js
// Try: EXAMPLE_ERROR_STRATEGY=exit EXAMPLE_EXIT_DELAY_MS=500 node dist/examples/leader-stream.js
import { createElector, openStore } from "../src/index.js";
import { strategyFromEnv } from "../src/leader/index.js";

const store = await openStore(process.env.TENURE_STORE ?? "memory:");
const elector = createElector({ store, name: "example-stream", ttlMs: 5_000 });

let connects = 0;
elector.stream({
  name: "replication",
  recovery: strategyFromEnv("EXAMPLE", {
    EXAMPLE_RECONNECT_INITIAL_DELAY_MS: "200",
    ...process.env,
  }),
  run: async (term, { checkpoint, healthy, signal }) => {
    const from = Number((await checkpoint.load()) ?? "0");
    console.log(`connected (token ${term.token}), resuming after position ${from}`);
    healthy(); // resets the reconnect backoff
    for (let pos = from + 1; !signal.aborted; pos++) {
      await new Promise((r) => setTimeout(r, 100));
      await checkpoint.save(String(pos)); // fenced: a stale term would get FencedError
      if (pos % 5 === 0 && connects++ < 2) throw new Error("connection lost (simulated failover)");
    }
  },
});

await elector.start();
setTimeout(async () => {
  await elector.stop(); // cancels any pending reconnect
  await store.close();
}, 3_000);

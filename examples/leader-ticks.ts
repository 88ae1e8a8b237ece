// Leader-only ticks and cron, with an exactly-once claimed cron tick.
// Run: npm run build && node dist/examples/leader-ticks.js
import { createElector, openStore } from "../src/index.js";

const store = await openStore(process.env.TENURE_STORE ?? "memory:");
const elector = createElector({ store, name: "example-ticks", ttlMs: 5_000 });

// Every second while leader; each run re-checks leadership against the clock first.
elector.every(1_000, (term) => console.log(`every: token ${term.token}`));

// Every 2 s by cron (6 fields = with seconds), read in Berlin time.
elector.cron(
  "*/2 * * * * *",
  (term, { scheduledAt }) => {
    console.log(`cron: ${new Date(scheduledAt).toISOString()} token ${term.token}`);
  },
  { timezone: "Europe/Berlin" },
);

// Exactly once across the fleet: the fire time is claimed in the store under the token.
elector.cron(
  "*/3 * * * * *",
  async (_term, { scheduledAt, catchUp }) => {
    console.log(`claimed: ${new Date(scheduledAt).toISOString()}${catchUp ? " (catch-up)" : ""}`);
  },
  { name: "nightly-report", claim: true, catchUpLimit: 1 },
);

await elector.start();
setTimeout(async () => {
  await elector.stop();
  await store.close();
}, 7_000);

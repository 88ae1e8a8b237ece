// Leader-only services: started on election (with retries), stopped when the term ends.
// Run: npm run build && node dist/examples/leader-services.js   (TENURE_STORE=sqlite:./.tenure/leases.db to share)
import { createServer, type Server } from "node:http";
import { createElector, createStreamLogger, openStore } from "../src/index.js";

const store = await openStore(process.env.TENURE_STORE ?? "memory:");
const elector = createElector({
  store,
  name: "example-services",
  ttlMs: 5_000,
  logger: createStreamLogger({}),
});

elector.service<Server>({
  name: "admin-api",
  // start may return a handle: stop gets it back, so a late start from an old term
  // is undone without touching the newer term's server.
  start: (term) =>
    new Promise<Server>((resolve, reject) => {
      const server = createServer((_req, res) => res.end(`leader token ${term.token}\n`));
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve(server));
    }),
  stop: (reason, { value: server }) => {
    console.log(`stopping admin-api: ${reason}`);
    return new Promise((resolve) => server.close(() => resolve(undefined)));
  },
  startRetry: { attempts: 5, initialDelayMs: 1_000 }, // 1, 2, 4, 8 s, then resign
});

elector.on("elected", (t) => console.log(`elected with token ${t.token}`));
await elector.start();
setTimeout(async () => {
  await elector.stop(); // stops admin-api ("stopped"), then releases the lease
  await store.close();
}, 3_000);

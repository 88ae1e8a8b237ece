import { createServer } from "node:net";

/** A free TCP port on 127.0.0.1 (the listener is closed before returning). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() =>
        a && typeof a === "object" ? resolve(a.port) : reject(new Error("no free port")),
      );
    });
  });
}

/** Whether `port` on 127.0.0.1 can be bound now. */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/**
 * A free port `p` on 127.0.0.1 with `p + offset` free as well (a Redis Cluster
 * node also listens on its port + 10000, the cluster bus).
 */
export async function freePortWith(offset: number): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (p + offset <= 65_535 && (await portIsFree(p + offset))) return p;
  }
  throw new Error(`no free port p with p + ${offset} free after 50 tries`);
}

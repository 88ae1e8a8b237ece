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

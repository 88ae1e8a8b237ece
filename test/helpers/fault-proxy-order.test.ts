import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, createServer } from "node:net";
import { it } from "node:test";
import { FaultProxy } from "./fault-proxy.js";
import { waitFor } from "./wait.js";

// The chaos suite's latency fault heals while bytes are in flight. The proxy
// once scheduled each delayed chunk on a timer of its own, and a chunk that
// came just after the heal could leave before the last delayed ones: the byte
// stream was reordered (every time, in 20 tries), which corrupts an HTTP/2
// connection (etcd's gRPC: "RST_STREAM with code 1", calls hanging to their
// deadline) right at the heal. TCP never reorders a stream; the proxy must not.
it("fault proxy: healing (or changing) latency while bytes are in flight keeps the stream in order", async () => {
  const echo = createServer((s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  echo.listen(0, "127.0.0.1");
  await once(echo, "listening");
  const proxy = new FaultProxy("127.0.0.1", (echo.address() as { port: number }).port);
  const sock = connect(await proxy.start(), "127.0.0.1");
  sock.setNoDelay(true);
  sock.on("error", () => {});
  await once(sock, "connect");
  let got = "";
  sock.on("data", (d: Buffer) => {
    got += d.toString();
  });
  let sent = 0;
  const writer = setInterval(() => {
    for (let i = 0; i < 5; i++) sock.write(`${sent++},`);
  }, 1);
  try {
    // up (client → server) and down both delayed; then a shorter latency; then healed
    proxy.latency(120);
    await new Promise((r) => setTimeout(r, 200));
    proxy.latency(40);
    await new Promise((r) => setTimeout(r, 150));
    proxy.heal();
    await new Promise((r) => setTimeout(r, 150));
    clearInterval(writer);
    const total = sent;
    await waitFor("every number echoed", () => got.split(",").length - 1 >= total, {
      timeoutMs: 3000,
    });
    const nums = got.split(",").filter(Boolean).map(Number);
    const first = nums.findIndex((n, i) => n !== i);
    assert.equal(
      first,
      -1,
      `out of order at ${first}: ${nums.slice(Math.max(0, first - 2), first + 3).join(",")}`,
    );
    assert.equal(nums.length, total);
  } finally {
    clearInterval(writer);
    sock.destroy();
    await proxy.stop();
    await new Promise<void>((r) => echo.close(() => r()));
  }
});

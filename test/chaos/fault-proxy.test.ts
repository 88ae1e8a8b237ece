import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { FaultProxy } from "../helpers/fault-proxy.js";
import { waitFor } from "../helpers/wait.js";

/** An echo server that also records what it received. */
let echo: Server;
let echoPort = 0;
let received = "";
before(async () => {
  echo = createServer((s) => {
    s.on("data", (d) => {
      received += d.toString();
      s.write(d);
    });
    s.on("error", () => {});
  });
  echo.listen(0, "127.0.0.1");
  await once(echo, "listening");
  echoPort = (echo.address() as { port: number }).port;
});
after(() => new Promise<void>((r) => echo.close(() => r())));

async function client(
  port: number,
): Promise<{ sock: Socket; got: () => string; err: () => Error | null }> {
  const sock = connect(port, "127.0.0.1");
  let got = "";
  let err: Error | null = null;
  sock.on("data", (d) => {
    got += d.toString();
  });
  sock.on("error", (e) => {
    err = e;
  });
  await once(sock, "connect");
  return { sock, got: () => got, err: () => err };
}

describe("fault proxy", () => {
  it("forwards both ways", async () => {
    const p = new FaultProxy("127.0.0.1", echoPort);
    const port = await p.start();
    const c = await client(port);
    c.sock.write("hello");
    await waitFor("echo", () => c.got() === "hello");
    assert.equal(p.connections, 1);
    c.sock.destroy();
    await p.stop();
  });

  it("adds latency each way, keeping order", async () => {
    const p = new FaultProxy("127.0.0.1", echoPort);
    const port = await p.start();
    const c = await client(port);
    p.latency(100);
    const t0 = performance.now();
    c.sock.write("a");
    c.sock.write("b");
    await waitFor("delayed echo", () => c.got() === "ab", { timeoutMs: 2000 });
    const took = performance.now() - t0;
    assert.ok(
      took >= 190,
      `round trip took ${took} ms, expected ≥ 200 (2 × 100) minus timer slack`,
    );
    p.heal();
    c.sock.destroy();
    await p.stop();
  });

  it("black-holes both ways and delivers the held bytes on heal; new connections wait", async () => {
    const p = new FaultProxy("127.0.0.1", echoPort);
    const port = await p.start();
    const c = await client(port);
    received = "";
    p.blackhole();
    c.sock.write("held");
    const late = await client(port); // accepted, not connected upstream
    late.sock.write("late");
    // Both writes reached the proxy and are held there (not a sleep: the bytes are counted).
    await waitFor("the proxy holds both writes", () => p.heldBytes("up") === 8);
    assert.equal(p.heldBytes("down"), 0);
    assert.equal(received, "", "nothing may reach the server while black-holed");
    assert.equal(c.got(), "");
    p.heal();
    await waitFor("held bytes delivered", () => c.got() === "held" && late.got() === "late");
    c.sock.destroy();
    late.sock.destroy();
    await p.stop();
  });

  it("half-open: requests reach the server, replies are held until heal", async () => {
    const p = new FaultProxy("127.0.0.1", echoPort);
    const port = await p.start();
    const c = await client(port);
    received = "";
    p.halfOpen("down");
    c.sock.write("ping");
    await waitFor("server got the request", () => received === "ping");
    // The echo's reply reached the proxy and is held there.
    await waitFor("the reply held in the proxy", () => p.heldBytes("down") === 4);
    assert.equal(c.got(), "", "the reply must not come back while half-open");
    p.heal();
    await waitFor("reply after heal", () => c.got() === "ping");
    c.sock.destroy();
    await p.stop();
  });

  it("resets every connection", async () => {
    const p = new FaultProxy("127.0.0.1", echoPort);
    const port = await p.start();
    const a = await client(port);
    const b = await client(port);
    await waitFor("two connections", () => p.connections === 2);
    assert.equal(p.resetAll(), 2);
    await waitFor("both reset", () => a.sock.destroyed && b.sock.destroyed);
    assert.equal((a.err() as NodeJS.ErrnoException | null)?.code, "ECONNRESET");
    assert.equal(p.connections, 0);
    const again = await client(port);
    again.sock.write("x");
    await waitFor("works again after reset", () => again.got() === "x");
    again.sock.destroy();
    await p.stop();
  });

  it("rejects a negative latency", () => {
    const p = new FaultProxy("127.0.0.1", echoPort);
    assert.throws(() => p.latency(-1), /ms must be ≥ 0/);
  });
});

/**
 * A small loopback TCP fault proxy for chaos tests (toxiproxy is not
 * available here). It listens on 127.0.0.1:0 and forwards every connection to
 * one target; the harness can then add latency, black-hole traffic, reset all
 * connections or make them half-open, and heal.
 *
 * Black-holing and half-open connections *hold* bytes rather than drop them:
 * a partition that heals behaves like TCP retransmission (late delivery), so
 * protocol streams are never corrupted; `reset` is how a connection dies.
 */
import { createServer, type Server, Socket } from "node:net";

/** Which way bytes flow: `up` client → server, `down` server → client. */
export type Direction = "up" | "down";

/** The proxy's current fault. */
export type Fault =
  | { readonly kind: "none" }
  /** Every chunk waits `ms` (each direction), order kept. */
  | { readonly kind: "latency"; readonly ms: number }
  /** Nothing flows either way; new connections are accepted but not connected upstream. */
  | { readonly kind: "blackhole" }
  /** Bytes flowing in `direction` are held (the peer stops "reading"); the other way flows. */
  | { readonly kind: "half-open"; readonly direction: Direction };

interface Pipe {
  readonly client: Socket;
  upstream: Socket | null;
  /** Chunks held per direction while the fault blocks them. */
  readonly held: Record<Direction, Buffer[]>;
  /**
   * Per direction: chunks delayed by latency, in the order they came, each
   * with the time it is due. One timer drains a direction from its head, so
   * bytes leave in the order they arrived, also when the latency changes or
   * heals while chunks are in flight (TCP never reorders a stream).
   */
  readonly delayed: Record<Direction, { at: number; chunk: Buffer }[]>;
  readonly timer: Record<Direction, NodeJS.Timeout | null>;
  closed: boolean;
}

export class FaultProxy {
  private server: Server | null = null;
  private readonly pipes = new Set<Pipe>();
  private fault: Fault = { kind: "none" };
  /** Connections accepted so far (for tests). */
  accepted = 0;

  constructor(
    readonly targetHost: string,
    readonly targetPort: number,
  ) {}

  /** Starts listening on a free loopback port; resolves to it. */
  async start(): Promise<number> {
    const server = createServer((c) => this.onClient(c));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    return this.port;
  }

  get port(): number {
    const a = this.server?.address();
    if (!a || typeof a === "string") throw new Error("fault proxy: not listening");
    return a.port;
  }

  /** Open connections right now. */
  get connections(): number {
    return this.pipes.size;
  }

  get current(): Fault {
    return this.fault;
  }

  /** Adds `ms` of latency to every chunk, each way. */
  latency(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`latency: ms must be ≥ 0, got ${ms}`);
    this.fault = { kind: "latency", ms };
  }

  /** Stops forwarding both ways (bytes are held, not lost). */
  blackhole(): void {
    this.fault = { kind: "blackhole" };
  }

  /** Stops forwarding in one direction on every connection (bytes held). */
  halfOpen(direction: Direction): void {
    this.fault = { kind: "half-open", direction };
  }

  /** Bytes held right now in `dir`, over every connection (a black hole or half-open holds them). */
  heldBytes(dir: Direction): number {
    let n = 0;
    for (const p of this.pipes) for (const c of p.held[dir]) n += c.length;
    return n;
  }

  /**
   * Resets (RST) every open connection, client and upstream side. The fault
   * stays as it is. Returns how many connections it reset.
   */
  resetAll(): number {
    const open = [...this.pipes];
    for (const p of open) this.closePipe(p, true);
    return open.length;
  }

  /** Removes the fault; held bytes are delivered in order, pending connections connect. */
  heal(): void {
    this.fault = { kind: "none" };
    for (const p of this.pipes) this.flush(p);
  }

  /** Closes the listener and every connection. */
  async stop(): Promise<void> {
    this.resetAll();
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  private blocks(dir: Direction): boolean {
    const f = this.fault;
    return f.kind === "blackhole" || (f.kind === "half-open" && f.direction === dir);
  }

  private onClient(client: Socket): void {
    this.accepted += 1;
    const pipe: Pipe = {
      client,
      upstream: null,
      held: { up: [], down: [] },
      delayed: { up: [], down: [] },
      timer: { up: null, down: null },
      closed: false,
    };
    this.pipes.add(pipe);
    client.setNoDelay(true);
    client.on("data", (d: Buffer) => this.forward(pipe, "up", d));
    client.on("error", () => this.closePipe(pipe, true));
    client.on("close", () => this.closePipe(pipe, false));
    if (this.fault.kind !== "blackhole") this.connectUpstream(pipe);
  }

  private connectUpstream(pipe: Pipe): void {
    if (pipe.upstream || pipe.closed) return;
    const up = new Socket();
    pipe.upstream = up;
    up.setNoDelay(true);
    up.on("data", (d: Buffer) => this.forward(pipe, "down", d));
    up.on("error", () => this.closePipe(pipe, true));
    up.on("close", () => this.closePipe(pipe, false));
    up.on("connect", () => this.flush(pipe));
    up.connect(this.targetPort, this.targetHost);
  }

  private forward(pipe: Pipe, dir: Direction, chunk: Buffer): void {
    if (pipe.closed) return;
    if (this.blocks(dir) || pipe.held[dir].length > 0 || !this.ready(pipe, dir)) {
      pipe.held[dir].push(chunk);
      return;
    }
    this.send(pipe, dir, chunk);
  }

  /** True when the socket that `dir` writes to is connected. */
  private ready(pipe: Pipe, dir: Direction): boolean {
    if (dir === "down") return true;
    return !!pipe.upstream && !pipe.upstream.connecting;
  }

  private send(pipe: Pipe, dir: Direction, chunk: Buffer): void {
    const to = dir === "up" ? pipe.upstream : pipe.client;
    if (!to) return;
    const f = this.fault;
    const q = pipe.delayed[dir];
    if ((f.kind === "latency" && f.ms > 0) || q.length > 0) {
      // Behind the chunks still in flight, never before them.
      const ms = f.kind === "latency" ? f.ms : 0;
      q.push({ at: Math.max(Date.now() + ms, q.at(-1)?.at ?? 0), chunk });
      this.drain(pipe, dir);
      return;
    }
    to.write(chunk);
  }

  /** Writes the delayed chunks of `dir` that are due, in order; waits for the next one. */
  private drain(pipe: Pipe, dir: Direction): void {
    if (pipe.timer[dir] || pipe.closed) return;
    const to = dir === "up" ? pipe.upstream : pipe.client;
    const q = pipe.delayed[dir];
    while (q.length > 0 && q[0]!.at <= Date.now()) {
      const { chunk } = q.shift()!;
      if (to && !to.destroyed) to.write(chunk);
    }
    if (q.length === 0) return;
    const t = setTimeout(
      () => {
        pipe.timer[dir] = null;
        this.drain(pipe, dir);
      },
      Math.max(1, q[0]!.at - Date.now()),
    );
    t.unref();
    pipe.timer[dir] = t;
  }

  private flush(pipe: Pipe): void {
    if (pipe.closed) return;
    if (!this.blocks("up") && this.fault.kind !== "blackhole") this.connectUpstream(pipe);
    for (const dir of ["up", "down"] as const) {
      if (this.blocks(dir) || !this.ready(pipe, dir)) continue;
      const held = pipe.held[dir].splice(0);
      for (const c of held) this.send(pipe, dir, c);
    }
  }

  private closePipe(pipe: Pipe, reset: boolean): void {
    if (pipe.closed) return;
    pipe.closed = true;
    this.pipes.delete(pipe);
    for (const dir of ["up", "down"] as const) {
      const t = pipe.timer[dir];
      if (t) clearTimeout(t);
      pipe.timer[dir] = null;
    }
    for (const s of [pipe.client, pipe.upstream]) {
      if (!s || s.destroyed) continue;
      // Node 20's resetAndDestroy() on a socket whose peer already ended it
      // leaves a handle behind that keeps the process alive: destroy that one.
      if (reset && s.readyState === "open") s.resetAndDestroy();
      else if (reset) s.destroy();
      else s.end();
    }
  }
}

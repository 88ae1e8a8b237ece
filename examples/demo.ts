/**
 * The README demo: three `tenure run` processes on one machine, one SQLite
 * file, no server. Exactly one runs the command; SIGKILL the leader and another
 * takes over after the ttl; SIGTERM the next one and the handoff is immediate.
 *
 *   npm install && npm run demo
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const TTL = "3s";
const dir = mkdtempSync(join(tmpdir(), "tenure-demo-"));
const store = `sqlite:${join(dir, "leases.db")}`;
const lease = "demo-job";

// The leader-only command: prints its fencing token every 400 ms.
const job = join(dir, "job.mjs");
writeFileSync(
  job,
  `const t = process.env.TENURE_TOKEN, h = process.env.TENURE_HOLDER;
let n = 0;
console.log("job started: holder " + h + ", token " + t);
const timer = setInterval(() => console.log("tick " + ++n + " (token " + t + ")"), 400);
process.on("SIGTERM", () => { clearInterval(timer); console.log("job got SIGTERM; exiting"); process.exit(0); });
`,
);

const colors: Record<string, string> = { A: "36", B: "35", C: "33" };
const paint = (who: string, s: string) =>
  process.stdout.isTTY ? `\x1b[${colors[who] ?? "0"}m${s}\x1b[0m` : s;
const say = (s: string) => process.stdout.write(`\n=== ${s}\n`);

interface Node {
  name: string;
  proc: ChildProcess;
  exited: Promise<number | null>;
}
/** Who printed the last tick (the holder that is running the job). */
const ticks: { who: string; token: string; at: number }[] = [];

function start(name: string): Node {
  const proc = spawn(
    process.execPath,
    [
      CLI,
      "run",
      "--store",
      store,
      "--name",
      lease,
      "--ttl",
      TTL,
      "--grace",
      "2s",
      "--holder",
      name,
      "--",
      process.execPath,
      job,
    ],
    { stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  const relay = (stream: NodeJS.ReadableStream) => {
    let buf = "";
    stream.setEncoding("utf8");
    stream.on("data", (d: string) => {
      buf += d;
      let i = buf.indexOf("\n");
      while (i >= 0) {
        // Drop the ISO timestamp of log lines: the demo reads better without it.
        const line = buf.slice(0, i).replace(/^\d{4}-\d\d-\d\dT[\d:.]+Z /, "");
        buf = buf.slice(i + 1);
        i = buf.indexOf("\n");
        const m = /token (\d+)/.exec(line);
        if (m && /^(tick|job started)/.test(line))
          ticks.push({ who: name, token: m[1]!, at: Date.now() });
        process.stdout.write(paint(name, `  ${name} | ${line}\n`));
      }
    });
  };
  relay(proc.stdout!);
  relay(proc.stderr!);
  return { name, proc, exited: new Promise((r) => proc.on("exit", (code) => r(code))) };
}

async function until<T>(what: string, check: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`demo: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const leaderSince = (t: number) => ticks.find((x) => x.at >= t);
const nodes: Node[] = [];
let failed = false;
const summary: string[] = [];

async function main(): Promise<void> {
  say(`starting three 'tenure run' processes (A, B, C) on ${store}`);
  for (const n of ["A", "B", "C"]) nodes.push(start(n));

  const first = await until("a leader", () => leaderSince(0));
  await new Promise((r) => setTimeout(r, 1500));
  const runners = new Set(ticks.map((t) => t.who));
  say(`exactly one process runs the job: ${[...runners].join(", ")} (token ${first.token})`);
  if (runners.size !== 1) failed = true;
  summary.push(`${first.who} led first with token ${first.token}`);

  say(`tenure status`);
  await new Promise<void>((resolve) => {
    const s = spawn(process.execPath, [CLI, "status", "--store", store], { stdio: "inherit" });
    s.on("exit", () => resolve());
  });

  const leader1 = nodes.find((n) => n.name === first.who)!;
  say(
    `SIGKILL ${leader1.name} (a crash: no cleanup). Its job is stopped by tenure's guard; the lease expires after the ttl (${TTL})`,
  );
  const killedAt = Date.now();
  leader1.proc.kill("SIGKILL");
  const second = await until("a takeover", () =>
    ticks.find((t) => t.at > killedAt && t.who !== leader1.name),
  );
  const crashMs = second.at - killedAt;
  say(`${second.who} took over after ${crashMs} ms with token ${second.token}`);
  summary.push(
    `SIGKILL ${leader1.name} → ${second.who} took over in ${crashMs} ms (token ${second.token})`,
  );

  const leader2 = nodes.find((n) => n.name === second.who)!;
  say(
    `SIGTERM ${leader2.name} (a deploy or Ctrl-C): it stops its job, releases the lease, and the last process takes over at once`,
  );
  const termAt = Date.now();
  leader2.proc.kill("SIGTERM");
  const third = await until("a handoff", () =>
    ticks.find((t) => t.at > termAt && t.who !== leader2.name && t.who !== leader1.name),
  );
  const handoffMs = third.at - termAt;
  say(`${third.who} took over after ${handoffMs} ms with token ${third.token}`);
  summary.push(
    `SIGTERM ${leader2.name} → ${third.who} took over in ${handoffMs} ms (token ${third.token})`,
  );
  const code2 = await leader2.exited;
  summary.push(`${leader2.name} exited with code ${code2}`);

  // Tokens only ever increase, and no two holders ticked at the same time.
  const order = [first, second, third].map((t) => BigInt(t.token));
  if (!(order[0]! < order[1]! && order[1]! < order[2]!)) failed = true;

  say("stopping everything (SIGTERM)");
  for (const n of nodes) if (n.proc.exitCode === null) n.proc.kill("SIGTERM");
  await Promise.all(nodes.map((n) => n.exited));
}

function cleanup(): void {
  for (const n of nodes) {
    try {
      if (n.proc.exitCode === null && n.proc.signalCode === null)
        process.kill(-n.proc.pid!, "SIGKILL");
    } catch {}
  }
  rmSync(dir, { recursive: true, force: true });
}

process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});

const watchdog = setTimeout(() => {
  process.stderr.write("demo: took longer than 45 s; giving up\n");
  cleanup();
  process.exit(1);
}, 45_000);

main().then(
  () => {
    clearTimeout(watchdog);
    cleanup();
    say("summary");
    for (const s of summary) process.stdout.write(`  - ${s}\n`);
    process.stdout.write(
      failed
        ? "  ✗ something was off (see above)\n"
        : "  ✓ exactly one job at a time, fencing tokens increased on every handover\n",
    );
    process.exit(failed ? 1 : 0);
  },
  (e: unknown) => {
    clearTimeout(watchdog);
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    cleanup();
    process.exit(1);
  },
);

/**
 * Renders docs/BENCHMARKS.md and docs/benchmarks/locks-p50.svg from one results
 * file. Run alone to regenerate: node dist/bench/report.js bench/results/X.json
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { ROOT } from "./lib/common.js";
import { type PhaseSummary, type Ratio, ratioOver, summarize } from "./lib/rounds.js";
import type { BenchResults } from "./run.js";

const f = (x: number | undefined, d = 2) =>
  x === undefined || !Number.isFinite(x) ? "–" : x >= 100 ? x.toFixed(0) : x.toFixed(d);
const ratio = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x) ? "–" : `${x.toFixed(x >= 10 ? 0 : x >= 3 ? 1 : 2)}×`;
const int = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x) ? "–" : Math.round(x).toLocaleString("en-US");
const bytes = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x)
    ? "–"
    : Math.abs(x) >= 10_240
      ? `${(x / 1024).toFixed(0)} KiB`
      : `${Math.round(x)} B`;

/** The summary of one server's interleaved run, one phase. */
export function phaseSummary(
  res: BenchResults,
  server: string,
  mode: "uncontended" | "contended",
): PhaseSummary | undefined {
  const run = res.locks.find((l) => l.server === server)?.out;
  if (!run) return undefined;
  return summarize(run[mode].peers, run.floorId, run.floorIds ?? []);
}

/** Median per-round p50 of a server's floor, uncontended. */
export function floorP50(res: BenchResults, server: string): number | undefined {
  const run = res.locks.find((l) => l.server === server)?.out;
  if (!run?.floorId) return undefined;
  const p = phaseSummary(res, server, "uncontended")?.peers.find((x) => x.id === run.floorId);
  return p && Number.isFinite(p.p50) ? p.p50 : undefined;
}

/** `1.35× (1.20–1.52)`, plus "no clear winner" when the p10–p90 spread contains 1. */
export function ratioCell(r: Ratio | undefined, best: boolean): string {
  if (best) return "1× (best)";
  if (!r || !Number.isFinite(r.median)) return "–";
  return `${ratio(r.median)} (${ratio(r.p10)}–${ratio(r.p90)})${r.noClearWinner ? " **no clear winner**" : ""}`;
}

function table(head: string[], rows: string[][]): string {
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

const ORDER = ["redis", "postgres", "etcd", "sqlite"];

export function renderSvg(res: BenchResults): string {
  const rows = ORDER.flatMap((server) => {
    const sum = phaseSummary(res, server, "uncontended");
    const run = res.locks.find((l) => l.server === server)?.out;
    const floors = [run?.floorId, ...(run?.floorIds ?? [])];
    if (!sum) return [];
    return sum.peers
      .filter((p) => !floors.includes(p.id) && Number.isFinite(p.p50))
      .map((p) => ({
        label: `${server} · ${p.id}`,
        tenure: p.id.startsWith("tenure-"),
        r: p.id === sum.bestP50 ? 1 : (p.p50Ratio?.median ?? 1),
        lo: p.id === sum.bestP50 ? 1 : (p.p50Ratio?.p10 ?? 1),
        hi: p.id === sum.bestP50 ? 1 : (p.p50Ratio?.p90 ?? 1),
      }));
  });
  const W = 760;
  const left = 250;
  const barH = 20;
  const gap = 8;
  const top = 44;
  const maxR = Math.max(1, ...rows.map((r) => r.hi));
  const scale = (W - left - 80) / maxR;
  const H = top + rows.length * (barH + gap) + 30;
  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  const bars = rows
    .map((r, i) => {
      const y = top + i * (barH + gap);
      const w = Math.max(1, r.r * scale);
      return [
        `<text x="${left - 8}" y="${y + barH * 0.72}" text-anchor="end">${esc(r.label)}</text>`,
        `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${r.tenure ? "#2f6fdf" : "#9aa4b2"}"/>`,
        `<line x1="${(left + r.lo * scale).toFixed(1)}" y1="${y + barH / 2}" x2="${(left + r.hi * scale).toFixed(1)}" y2="${y + barH / 2}" stroke="#111"/>`,
        `<text x="${(left + Math.max(w, r.hi * scale) + 6).toFixed(1)}" y="${y + barH * 0.72}">${r.r.toFixed(2)}×</text>`,
      ].join("");
    })
    .join("\n");
  const x1 = left + scale;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="20" font-size="14" font-weight="bold">Uncontended acquire + release: median per-round p50 ratio to the fastest peer of the same server (lower is better)</text>
<text x="10" y="36" fill="#555">Blue: Tenure. Whisker: p10–p90 of the per-round ratio. ${esc(res.date.slice(0, 10))}, ${res.machine.cpus} CPUs, Node ${esc(String(res.machine.node))}, peers interleaved in rounds.</text>
<line x1="${x1.toFixed(1)}" y1="${top - 4}" x2="${x1.toFixed(1)}" y2="${H - 24}" stroke="#333" stroke-dasharray="3,3"/>
${bars}
<text x="${x1.toFixed(1)}" y="${H - 10}" text-anchor="middle" fill="#333">1× (fastest)</text>
</svg>
`;
}

export function renderMarkdown(res: BenchResults, resultsPath: string, svgPath: string): string {
  const out: string[] = [];
  const m = res.machine;
  out.push("# Benchmarks", "");
  out.push(
    `Generated by \`npm run bench\` (\`node dist/bench/run.js${res.smoke ? " --smoke" : ""}\`) on ${res.date} in ${res.durationS} s; raw numbers in [\`${resultsPath}\`](../${resultsPath}). Do not edit by hand: run the benchmark again.`,
    "",
  );
  if (res.smoke)
    out.push(
      "> **Smoke run**: few iterations; the numbers only show that every part still runs.",
      "",
    );
  out.push(
    "**How to read this.** Everything ran on one machine, servers on loopback, in one run. The VM is shared and noisy (CPU steal, other work), so absolute times move from run to run; other work (builds and tests of other developers) ran on the machine during this run (load average at the start in the table below). The peers of one server therefore run **interleaved**: short rounds, one peer at a time, the order rotated every round (A B C D, B C D A, …), for the whole measurement, so a noisy second falls on all of them alike. Each figure is the median of a peer's per-round figures; each ratio is the median of its per-round ratio to the best peer, with the p10–p90 spread of that ratio; a spread that contains 1× is marked **no clear winner** (this run does not say which of the two is faster). p99 on a 2-core VM mostly measures the scheduler.",
    "",
  );
  out.push("## Machine and versions", "");
  out.push(
    table(
      ["what", "value"],
      [
        ["CPUs", `${m.cpus} × ${m.cpuModel}`],
        ["memory", `${m.memoryGiB} GiB`],
        ["OS", String(m.os)],
        ["Node", String(m.node)],
        ["load average at start", String((m.loadavgAtStart as number[]).join(", "))],
        ...Object.entries(res.servers).map(([k, v]) => [`${k} server`, v]),
        ...Object.entries(res.libraries).map(([k, v]) => [`\`${k}\``, v]),
      ],
    ),
    "",
  );

  const s = res.settings as Record<string, number>;
  // Floor
  out.push("## 0. Physical floor (one raw round trip)", "");
  out.push(
    `The cheapest command of each server, one connection, measured as one more interleaved peer of the lock runs below (so it saw the same noise as they did). An acquire + release cycle is two round trips, so **2× floor** is what a lock cycle cannot beat on one connection. PostgreSQL has a second floor for stores that write: a durable acquire or release is a commit that flushes WAL (\`synchronous_commit\` on), measured as an \`UPDATE\` of one row of a table of its own in autocommit (\`floor-postgres-commit\`); a PostgreSQL lease cycle (acquire, then release) cannot beat two of those.`,
    "",
  );
  out.push(
    table(
      [
        "server",
        "command",
        "rounds",
        "p50 (ms)",
        "p99 (ms)",
        "round trips/s",
        "CPU µs / op",
        "8 clients: round trips/s",
        "8 clients: p50 (ms)",
      ],
      res.floor.map((fl) => {
        const run = res.locks.find((l) => l.server === fl.server);
        const id = fl.id ?? run?.out?.floorId;
        const u = phaseSummary(res, fl.server, "uncontended")?.peers.find((p) => p.id === id);
        const c = phaseSummary(res, fl.server, "contended")?.peers.find((p) => p.id === id);
        if (!u)
          return [
            fl.server,
            fl.command,
            `error: ${(run?.error ?? "not measured").slice(0, 80)}`,
            "",
            "",
            "",
            "",
            "",
            "",
          ];
        return [
          fl.server,
          fl.command,
          String(u.rounds),
          f(u.p50, 3),
          f(u.p99, 3),
          int(u.opsPerSec),
          f(u.cpuUsPerOp, 1),
          int(c?.opsPerSec),
          f(c?.p50, 3),
        ];
      }),
    ),
    "",
  );

  // Locks
  out.push("## 1. Lock: acquire + release cycle", "");
  out.push(
    `![uncontended p50 ratios](${relative(join(ROOT, "docs"), svgPath)})`,
    "",
    `Each peer is reduced to one *try* (no built-in retry) and one release; the harness retries a busy lock after a random ${s.retryMinMs}–${s.retryMaxMs} ms for every peer alike. Lock ttl ${s.lockTtlMs} ms. A cycle's latency runs from the first try to the end of the release. All peers of one server and its floor run in one process, **interleaved in rounds of ${s.roundMs} ms** (order rotated every round, ${s.warmupRounds} unrecorded warm-up round, then ${s.rounds} recorded rounds per peer and phase). **Uncontended**: one client, one lock. **Contended**: ${s.clients} clients (each its own connection or store instance) on one lock per peer. "best" is the peer with the lowest median p50 (for the p50 ratio) or the highest median throughput (for the throughput ratio); ratios are medians of per-round ratios with their p10–p90 spread. "× floor" is the median per-round ratio of the peer's p50 to the floor's p50 (2× is the floor of a two-round-trip cycle). CPU is this client process's user + system time per cycle (\`process.cpuUsage\`): a peer that wins by spending more CPU shows here.`,
    "",
  );
  for (const mode of ["uncontended", "contended"] as const) {
    out.push(
      `### ${mode === "uncontended" ? "Uncontended (1 client)" : `Contended (${s.clients} clients, one lock)`}`,
      "",
    );
    const rows: string[][] = [];
    for (const server of ORDER) {
      const run = res.locks.find((l) => l.server === server);
      if (!run) continue;
      if (!run.out) {
        rows.push([server, `error: ${(run.error ?? "").slice(0, 120)}`, ...Array(10).fill("")]);
        continue;
      }
      const floorIds = run.out.floorIds ?? [];
      const sum = summarize(run.out[mode].peers, run.out.floorId, floorIds);
      for (const p of sum.peers) {
        const isFloor = p.id === run.out.floorId || floorIds.includes(p.id);
        const meta = res.peers.find((x) => x.peer === p.id);
        const lib = isFloor
          ? (res.floor.find((x) => (x.id ?? `floor-${x.server}`) === p.id)?.command ?? "floor")
          : meta
            ? `${meta.lib}@${meta.version}`
            : "?";
        const name = p.id.startsWith("tenure-") ? `**${p.id}**` : isFloor ? `*${p.id}*` : p.id;
        if (!p.rounds) {
          rows.push([
            server,
            name,
            lib,
            `error: ${(p.error ?? "no cycles").slice(0, 100)}`,
            ...Array(8).fill(""),
          ]);
          continue;
        }
        rows.push([
          server,
          name,
          lib,
          String(p.rounds),
          int(p.opsPerSec),
          isFloor ? "(floor)" : ratioCell(p.opsRatio, p.id === sum.bestOps),
          f(p.p50, 3),
          isFloor ? "(floor)" : ratioCell(p.p50Ratio, p.id === sum.bestP50),
          f(p.p99, 2),
          p.id === run.out.floorId
            ? "1×"
            : isFloor
              ? ""
              : `${ratio(p.floorRatio?.median)}${floorIds
                  .filter((id) => id !== run.out?.floorId)
                  .map((id) => {
                    const a = run.out?.[mode].peers.find((x) => x.id === p.id);
                    const b = run.out?.[mode].peers.find((x) => x.id === id);
                    return a && b
                      ? ` (${ratio(ratioOver(a, b, (x) => x.p50).median)} ${id.replace(/^floor-[a-z]+-?/, "") || "floor"})`
                      : "";
                  })
                  .join("")}`,
          f(p.cpuUsPerOp, 1),
          ...(mode === "contended" ? [isFloor ? "" : f(p.failedTriesPerCycle, 2)] : []),
        ]);
      }
    }
    out.push(
      table(
        [
          "server",
          "peer",
          "library",
          "rounds",
          "cycles/s",
          "throughput ratio (p10–p90)",
          "p50 (ms)",
          "p50 ratio (p10–p90)",
          "p99 (ms)",
          "p50 × floor",
          "CPU µs / cycle",
          ...(mode === "contended" ? ["failed tries / cycle"] : []),
        ],
        rows,
      ),
      "",
    );
  }
  out.push("How each peer does one cycle:", "");
  for (const l of res.peers) out.push(`- \`${l.peer}\` (${l.lib}): ${l.how}`);
  out.push("");

  // Failover
  out.push("## 2. Failover", "");
  out.push(
    `Three candidate processes on one lease, ttl ${s.failoverTtlMs} ms for all. After a leader is elected and has held for a random 0.5–1 ttl, it is **SIGKILLed**; the time runs from the kill to the \`elected\` event (first leader tick) in another process. Then the new leader is **stopped gracefully** (\`elector.stop()\` / release / \`resign()\`); the time runs from the start of the stop to the next \`elected\`. Times come from the host's monotonic clock shared by all processes. ${s.failoverReps} repetition(s) each. Under SIGKILL nobody can do better than waiting for the lease to expire, so the bound is about one ttl minus the time since the last renewal; a graceful stop can be one round trip plus a notification.`,
    "",
  );
  const fo = res.failover;
  const bestKill = Math.min(...fo.map((x) => x.killMs.p50).filter(Number.isFinite));
  const bestGrace = Math.min(...fo.map((x) => x.gracefulMs.p50).filter(Number.isFinite));
  out.push(
    table(
      [
        "configuration",
        "backend",
        "retry (ms)",
        "SIGKILL → leader p50 (ms)",
        "max",
        "ratio",
        "graceful → leader p50 (ms)",
        "max",
        "ratio",
        "samples",
        "errors",
      ],
      fo.map((x) => [
        x.mode === "tenure" ? `**${x.id}**` : x.id,
        x.backend,
        x.mode === "etcd-election" ? "(watch)" : String(x.retryMs),
        f(x.killMs.p50, 0),
        f(x.killMs.max, 0),
        ratio(x.killMs.p50 / bestKill),
        f(x.gracefulMs.p50, 1),
        f(x.gracefulMs.max, 1),
        ratio(x.gracefulMs.p50 / bestGrace),
        `${x.killMs.n}/${x.gracefulMs.n}`,
        x.errors.length ? x.errors.map((e) => e.slice(0, 80)).join("; ") : "",
      ]),
    ),
    "",
  );
  // One line per mode; a configuration of a mode described otherwise (tenure-pgbouncer) gets its own.
  const seen = new Set<string>();
  const modes = new Set<string>();
  for (const x of fo) {
    if (seen.has(x.describe)) continue;
    seen.add(x.describe);
    out.push(`- \`${modes.has(x.mode) ? x.id : x.mode}\`: ${x.describe}`);
    modes.add(x.mode);
  }
  out.push(
    "- The client-go emulation judges expiry by the store's clock; real client-go judges it from when a follower last *observed* a change, which can add up to one more retry period, so the emulation is, if anything, flattering to client-go.",
    "",
  );

  // Scale
  out.push("## 3. Scale: N leases held by one process", "");
  out.push(
    `One elector per lease (\`createElector\`, common ttl ${s.scaleTtlMs} ms, default renew interval ttl/3), all sharing one store opened by \`openStore\` and so one shared renewer, which sends what is due together in batches of at most 1 000 (one \`renewMany\` round trip each; "renew round trips per interval" counts \`renewMany\` and \`renew\` calls, and a store without \`renewMany\` gets one \`renew\` per lease). After all N are elected and the start-up burst has drained, a ${s.scaleWindowMs} ms window counts store calls (through a counting wrapper), the requests the server received ("server requests/s": commands the \`ioredis\` clients sent, a Lua script being one; queries the \`pg\` clients sent; etcd's \`grpc_server_msg_received_total\`; Tenure coalesces PostgreSQL renewals into one statement and batches etcd reads and keep-alives, so these can be far fewer than store calls), CPU (\`process.cpuUsage\`, user + system, the whole process) and memory (heapUsed and rss after two forced GCs, minus the baseline taken after opening the store and before creating electors). "held" is how many were still leader at the end of the window. At N = 1 the per-lease figures are the fixed cost of the process, not a per-lease cost.`,
    "",
  );
  out.push(
    table(
      [
        "backend",
        "N",
        "elected in (ms)",
        "store calls/s",
        "calls/s per lease",
        "renew round trips per interval",
        "server requests/s",
        "CPU % of a core",
        "CPU µs per lease per s",
        "heap per lease",
        "rss per lease",
        "held at end",
        "demotions",
      ],
      res.scale.map((x) =>
        x.out
          ? [
              x.backend,
              int(x.n),
              int(x.out.startMs),
              f(x.out.storeCallsPerSec, 1),
              f(x.out.storeCallsPerSec / x.n, 3),
              x.out.renewRoundTripsPerInterval == null
                ? "–"
                : `${f(x.out.renewRoundTripsPerInterval, 1)}${x.out.renewMany ? "" : " (renew per lease)"}`,
              x.out.serverRequestsPerSec == null ? "–" : f(x.out.serverRequestsPerSec, 1),
              f(x.out.cpuPercentOfCore, 1),
              f(x.out.cpuUsPerLeasePerSec, 1),
              bytes(x.out.heapBytesPerLease),
              bytes(x.out.rssBytesPerLease),
              `${int(x.out.heldAtEnd)}/${int(x.n)}`,
              String(x.out.demotions),
            ]
          : [
              x.backend,
              int(x.n),
              `error: ${(x.error ?? "").slice(0, 100)}`,
              "",
              "",
              "",
              "",
              "",
              "",
              "",
              "",
              "",
              "",
            ],
      ),
    ),
    "",
  );
  out.push(
    "Growth: store calls per second are N / (ttl/3) by design (linear); CPU and memory per lease should stay flat as N grows — a rising per-lease figure at large N means the process (or the store) is saturating.",
    "",
  );
  if (res.groups?.length) out.push(...renderGroups(res), "");
  if (res.skipped.length) out.push("## Skipped", "", ...res.skipped.map((x) => `- ${x}`), "");
  return `${out.join("\n")}\n`;
}

/** Section 4: groups (bench/groups.ts). */
function renderGroups(res: BenchResults): string[] {
  const g = res.groups ?? [];
  const ms = (x: number | undefined) => (x == null ? "–" : int(Math.round(x)));
  const calls = (c: Record<string, number> | undefined) =>
    c
      ? Object.entries(c)
          .sort((a, b) => b[1] - a[1])
          .map(([k, v]) => `${k} ${f(v, 1)}`)
          .join(", ")
      : "–";
  return [
    "## 4. Groups: partitions over member processes",
    "",
    `\`createGroup\` in separate OS processes (test/helpers/group-worker.ts), ${g[0]?.partitions ?? "?"} partitions, ttl ${g[0]?.ttlMs ?? "?"} ms, on one fleet in order: 4 members settle; one member's store calls per renewal interval (ttl/3) in steady state, by method, through a counting wrapper; a 5th member joins (from its \`start()\` resolving to the last partition assigned); one member stops gracefully (handoff: its \`stop()\` begun → each of its partitions assigned to another member, by the members' \`assigned\` events); one member is SIGKILLed (its partitions are taken once their leases expire). "moved" counts partitions assigned after the event. Redis runs in db 7 of its own: its \`list()\` scans the whole db, and the scale part leaves leases behind in the default one.`,
    "",
    table(
      [
        "backend",
        "settle 4 (ms)",
        "join: rebalance (ms) / moved",
        "graceful leave: rebalance (ms) / moved",
        "handoff p50 / p99 / max (ms)",
        "leaver stop() (ms)",
        "crash: rebalance (ms) / moved",
        "store calls per member per interval",
      ],
      g.map((x) =>
        x.error && !x.crash
          ? [x.backend, `error: ${x.error.slice(0, 100)}`, "", "", "", "", "", ""]
          : [
              x.backend,
              ms(x.settleMs),
              x.join ? `${ms(x.join.ms)} / ${x.join.moved}` : "–",
              x.leave ? `${ms(x.leave.ms)} / ${x.leave.moved}` : "–",
              x.leave
                ? `${ms(x.leave.handoffP50Ms)} / ${ms(x.leave.handoffP99Ms)} / ${ms(x.leave.handoffMaxMs)}`
                : "–",
              ms(x.leave?.stopMs),
              x.crash ? `${ms(x.crash.ms)} / ${x.crash.moved}` : "–",
              calls(x.callsPerInterval),
            ],
      ),
    ),
  ];
}

/** Writes BENCHMARKS.md and the SVG under `docsDir`; returns the markdown path. */
export function writeReport(res: BenchResults, docsDir: string, resultsFile: string): string {
  mkdirSync(join(docsDir, "benchmarks"), { recursive: true });
  const svg = join(docsDir, "benchmarks", "locks-p50.svg");
  writeFileSync(svg, renderSvg(res));
  const md = join(docsDir, "BENCHMARKS.md");
  writeFileSync(md, renderMarkdown(res, relative(ROOT, resultsFile), svg));
  return md;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write("usage: node dist/bench/report.js bench/results/<file>.json\n");
    process.exit(2);
  }
  const res = JSON.parse(readFileSync(file, "utf8")) as BenchResults;
  process.stdout.write(`${writeReport(res, join(ROOT, "docs"), resolve(file))}\n`);
}

/**
 * A throwaway single-member etcd on free loopback ports, for when no etcd is
 * recorded in .services/env (TENURE_TEST_ETCD_URL). Killed by the caller.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../test/helpers/ports.js";
import { sleep } from "./common.js";

export interface OwnEtcd {
  url: string;
  stop(): Promise<void>;
}

export async function startEtcd(): Promise<OwnEtcd> {
  const bin = ["/usr/bin/etcd", "/usr/local/bin/etcd"].find((p) => existsSync(p)) ?? "etcd";
  const dir = mkdtempSync(join(tmpdir(), "tenure-bench-etcd-"));
  const client = await freePort();
  const peer = await freePort();
  const proc: ChildProcess = spawn(
    bin,
    [
      "--name=bench",
      `--data-dir=${join(dir, "data")}`,
      `--listen-client-urls=http://127.0.0.1:${client}`,
      `--advertise-client-urls=http://127.0.0.1:${client}`,
      `--listen-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-cluster=bench=http://127.0.0.1:${peer}`,
      "--log-level=error",
    ],
    { stdio: "ignore" },
  );
  const url = `etcd://127.0.0.1:${client}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${client}/health`);
      if (r.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline || proc.exitCode !== null) {
      proc.kill("SIGKILL");
      throw new Error(`etcd did not start (${bin})`);
    }
    await sleep(100);
  }
  return {
    url,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise<void>((r) => proc.once("exit", () => r()));
        proc.kill("SIGTERM");
        await Promise.race([exited, sleep(5000)]);
        if (proc.exitCode === null) proc.kill("SIGKILL");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

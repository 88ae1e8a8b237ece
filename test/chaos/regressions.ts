/** The frame of a file of chaos replays (test/chaos/*-regressions.test.ts). */
import { after, describe } from "node:test";
import { requireService } from "../helpers/services.js";
import { type BackendName, ChaosEnv } from "./harness.js";

/**
 * A `describe` block of replays on `backend`, with one {@link ChaosEnv} for
 * the file (its throwaway servers stopped after the file). When the
 * backend's servers cannot be started here, the block says what is missing
 * (skipped on a developer's machine, failed in CI: test/helpers/services.ts).
 */
export function describeReplays(
  title: string,
  backend: BackendName,
  body: (env: ChaosEnv) => void,
): void {
  const env = new ChaosEnv();
  after(() => env.close());
  const missing = ChaosEnv.missing(backend);
  describe(title, requireService(`chaos ${backend}`, !missing, missing ?? ""), () => body(env));
}

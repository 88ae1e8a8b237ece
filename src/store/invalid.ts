import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { ListOptions } from "./types.js";

/**
 * `list()` met a record that is not a valid lease: hands it to
 * `opts.onInvalid` (else logs a warning) instead of failing the whole list.
 * The problem is the error's message without its store prefix.
 */
export function reportInvalid(
  opts: ListOptions,
  logger: Logger | undefined,
  name: string,
  e: unknown,
): void {
  const problem = errorMessage(e)
    .replace(/^tenure [a-z]+: (?:[a-zA-Z]+ failed: )?/, "")
    .replace(/^tenure config: /, "");
  if (opts.onInvalid) {
    try {
      opts.onInvalid({ name, problem });
    } catch (err) {
      // the caller's callback is its own business; it is logged, not passed on
      logger?.warn("onInvalid callback threw", { lease: name, err });
    }
  } else logger?.warn("not a valid lease; left out of the list", { lease: name, err: problem });
}

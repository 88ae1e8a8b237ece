import { openStore } from "../../src/index.js";
import { describeLeaseStore } from "../helpers/conformance.js";

describeLeaseStore("memory", async () => {
  // Each memory store is its own world; "separate connections" share one instance.
  shared ??= await openStore("memory:");
  return wrapNoClose(shared);
});

let shared: Awaited<ReturnType<typeof openStore>> | undefined;

function wrapNoClose<T extends { close(): Promise<void> }>(s: T): T {
  return new Proxy(s, {
    get(target, prop, recv) {
      if (prop === "close") return async () => {};
      const v = Reflect.get(target, prop, recv);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

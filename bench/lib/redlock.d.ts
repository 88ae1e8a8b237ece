// redlock@5.0.0-beta.2 ships types but its package.json "exports" hides them
// from NodeNext resolution; this declares the part the benchmark uses.
declare module "redlock" {
  import type { EventEmitter } from "node:events";
  export interface RedlockLock {
    release(): Promise<unknown>;
  }
  export default class Redlock extends EventEmitter {
    constructor(clients: Iterable<unknown>, settings?: Record<string, unknown>);
    acquire(resources: string[], duration: number): Promise<RedlockLock>;
    quit(): Promise<void>;
  }
}

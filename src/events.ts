import { errorMessage } from "./errors.js";

/** Removes the listener it was returned for. Calling it twice is harmless. */
export type Disposable = () => void;

type Listener<T> = (payload: T) => unknown;

/**
 * A small typed event emitter. Listeners run synchronously in registration
 * order, so events arrive in order; a listener that throws or rejects cannot
 * block or crash the emitter: its error goes to `onListenerError`.
 */
export class TypedEmitter<Events extends Record<string, unknown>> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  constructor(private readonly onListenerError: (event: string, err: unknown) => void) {}

  /** Subscribes; returns a function that unsubscribes. */
  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): Disposable {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(fn as Listener<never>);
    return () => {
      set?.delete(fn as Listener<never>);
    };
  }

  /** Subscribes for one event only. */
  once<K extends keyof Events>(event: K, fn: Listener<Events[K]>): Disposable {
    const off = this.on(event, (p) => {
      off();
      return fn(p);
    });
    return off;
  }

  off<K extends keyof Events>(event: K, fn: Listener<Events[K]>): void {
    this.listeners.get(event)?.delete(fn as Listener<never>);
  }

  listenerCount<K extends keyof Events>(event: K): number {
    return this.listeners.get(event)?.size ?? 0;
  }

  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        const r = (fn as Listener<Events[K]>)(payload);
        if (r && typeof (r as Promise<unknown>).then === "function") {
          (r as Promise<unknown>).then(undefined, (e) => this.onListenerError(String(event), e));
        }
      } catch (e) {
        this.onListenerError(String(event), e);
      }
    }
  }
}

/** Describe a listener failure for logs. */
export function describeListenerError(event: string, err: unknown): string {
  return `listener for "${event}" failed: ${errorMessage(err)}`;
}

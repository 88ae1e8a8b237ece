import { errorMessage } from "./errors.js";

/** Removes the listener it was returned for. Calling it twice is harmless. */
export type Disposable = () => void;

type Listener<T> = (payload: T) => unknown;

/**
 * A small typed event emitter. Listeners run synchronously in registration
 * order, so events arrive in order; a listener that throws or rejects cannot
 * block or crash the emitter: its error goes to `onListenerError`. A listener
 * is registered once per event (adding it again does nothing).
 *
 * Listeners live in one flat array of (event, listener) pairs, created on the
 * first `on`: an emitter costs tens of bytes, not a Map and a Set per event
 * (a process may hold 100 000 electors, each with its own emitter).
 */
export class TypedEmitter<Events extends Record<string, unknown>> {
  /** event, listener, event, listener, …; in registration order; replaced (copied) on change. */
  private pairs: unknown[] | null = null;

  /** `onListenerError`: where a listener's failure goes; a subclass may override {@link listenerFailed} instead. */
  constructor(private readonly onListenerError?: (event: string, err: unknown) => void) {}

  /** A listener of `event` threw or rejected with `err`. */
  protected listenerFailed(event: string, err: unknown): void {
    this.onListenerError?.(event, err);
  }

  /** Subscribes; returns a function that unsubscribes. */
  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): Disposable {
    if (this.indexOf(event, fn) < 0) {
      const pairs = this.pairs;
      if (pairs === null) this.pairs = [event, fn];
      else {
        // An array of exactly the size needed (push or spread would leave spare capacity).
        const next = new Array<unknown>(pairs.length + 2);
        for (let i = 0; i < pairs.length; i++) next[i] = pairs[i];
        next[pairs.length] = event;
        next[pairs.length + 1] = fn;
        this.pairs = next;
      }
    }
    return () => this.off(event, fn);
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
    const i = this.indexOf(event, fn);
    if (i < 0) return;
    const pairs = this.pairs!;
    this.pairs = pairs.length === 2 ? null : [...pairs.slice(0, i), ...pairs.slice(i + 2)];
  }

  /** True when `event` has a listener (so a caller can skip building its payload). */
  has<K extends keyof Events>(event: K): boolean {
    const pairs = this.pairs;
    if (pairs) for (let i = 0; i < pairs.length; i += 2) if (pairs[i] === event) return true;
    return false;
  }

  listenerCount<K extends keyof Events>(event: K): number {
    const pairs = this.pairs;
    let n = 0;
    if (pairs) for (let i = 0; i < pairs.length; i += 2) if (pairs[i] === event) n += 1;
    return n;
  }

  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const pairs = this.pairs;
    if (!pairs) return;
    // The array is replaced, never changed, on (un)subscribe: this walks the listeners present
    // when the emit began, even if one of them (un)subscribes.
    for (let i = 0; i < pairs.length; i += 2)
      if (pairs[i] === event) this.call(event, pairs[i + 1] as Listener<Events[K]>, payload);
  }

  private call<K extends keyof Events>(
    event: K,
    fn: Listener<Events[K]>,
    payload: Events[K],
  ): void {
    try {
      const r = fn(payload);
      if (r && typeof (r as Promise<unknown>).then === "function") {
        (r as Promise<unknown>).then(undefined, (e) => this.listenerFailed(String(event), e));
      }
    } catch (e) {
      this.listenerFailed(String(event), e);
    }
  }

  private indexOf(event: keyof Events, fn: Listener<never>): number {
    const pairs = this.pairs;
    if (pairs)
      for (let i = 0; i < pairs.length; i += 2)
        if (pairs[i] === event && pairs[i + 1] === fn) return i;
    return -1;
  }
}

/** Describe a listener failure for logs. */
export function describeListenerError(event: string, err: unknown): string {
  return `listener for "${event}" failed: ${errorMessage(err)}`;
}

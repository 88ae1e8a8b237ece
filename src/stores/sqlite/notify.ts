/**
 * Release notifications for the SQLite store, between processes on one host:
 * a doorbell file next to the database (`<db>-tenure-notify`). A write that
 * changes a lease's term (acquire, release, forceRelease) writes one byte to
 * it after its commit; a store with watchers watches the file (`fs.watch`:
 * inotify on Linux, FSEvents / kqueue elsewhere) and, when it changes, reads
 * each watched lease again and reports what changed since its last look.
 *
 * The file carries no data: a ring only says "look again". A ring lost (the
 * doorbell could not be written, the watch missed an event) costs only
 * promptness: followers still poll at the lease's known expiry.
 */
import {
  closeSync,
  constants,
  type FSWatcher,
  fstatSync,
  openSync,
  watch,
  writeSync,
} from "node:fs";
import type { Logger } from "../../logger.js";
import type { LeaseEvent, Unwatch } from "../../store/types.js";
import { type WatchCallback, WatcherSet } from "../common/watchers.js";

/** The doorbell file of database `path`. */
export const doorbellPath = (path: string): string => `${path}-tenure-notify`;

/**
 * What a look at a lease row finds: its token (kept by a release) and its
 * holder while the term is live (null when released or expired); null when
 * there is no row. Every acquire raises the token and every release clears
 * the holder, so two looks differ whenever a term began or ended between
 * them, even when several rings came as one event.
 */
export type LiveTerm = { readonly holder: string | null; readonly token: bigint } | null;

const ONE = Buffer.from("1");
/**
 * How often a ring checks that its open file is still the doorbell (not
 * deleted): a deleted file is opened anew, so rings reach watchers again
 * (which watch the new file) within this long.
 */
export const DOORBELL_RECHECK_MS = 1000;

export class SqliteDoorbell {
  private fd: number | null = null;
  private checkedAt = 0;
  private broken = false;
  private watcher: FSWatcher | null = null;
  private readonly watchers: WatcherSet;
  /** What the last look at each watched name found ({@link key}). */
  private readonly seen = new Map<string, string>();
  private checking = false;
  private again = false;

  constructor(
    readonly path: string,
    /** Reads the live terms of leases, in order, in one read transaction of the store. */
    private readonly readTerms: (names: readonly string[]) => LiveTerm[],
    private readonly logger: Logger,
  ) {
    this.watchers = new WatcherSet(logger);
  }

  /** Opens (creating) the doorbell file; its descriptor, or null when it cannot. */
  private open(): number | null {
    if (this.fd !== null || this.broken) return this.fd;
    try {
      this.fd = openSync(this.path, constants.O_RDWR | constants.O_CREAT, 0o644);
      this.checkedAt = performance.now();
    } catch (e) {
      // Followers then wake at the lease's expiry, as without notifications.
      this.broken = true;
      this.logger.warn("sqlite: cannot open the notification file; watchers fall back to polling", {
        path: this.path,
        err: e,
      });
    }
    return this.fd;
  }

  /** Rings: one byte written at offset 0 (the file stays one byte long). Never throws. */
  ring(): void {
    this.recheck();
    const fd = this.open();
    if (fd === null) return;
    try {
      writeSync(fd, ONE, 0, 1, 0);
    } catch (e) {
      this.logger.warn("sqlite: cannot write the notification file", { path: this.path, err: e });
    }
  }

  /** At most every {@link DOORBELL_RECHECK_MS}: drops a descriptor whose file was deleted. */
  private recheck(): void {
    if (this.fd === null) return;
    const now = performance.now();
    if (now - this.checkedAt < DOORBELL_RECHECK_MS) return;
    this.checkedAt = now;
    try {
      if (fstatSync(this.fd).nlink > 0) return;
    } catch {}
    try {
      closeSync(this.fd);
    } catch {}
    this.fd = null;
  }

  async watch(name: string, fn: WatchCallback): Promise<Unwatch> {
    if (!this.watcher) this.startWatching();
    if (this.watchers.add(name, fn)) this.seen.set(name, key(this.readTerms([name])[0] ?? null));
    return async () => {
      if (this.watchers.delete(name, fn)) this.seen.delete(name);
      if (this.watchers.keys().length === 0) this.stopWatching();
    };
  }

  private startWatching(): void {
    if (this.open() === null) {
      throw new Error(`cannot open the notification file ${this.path}`);
    }
    const w = watch(this.path, { persistent: false }, (type) => {
      // A replaced or deleted file (a deletion shows as a change of its link
      // count while descriptors are open): watch a new one, report "look again".
      if (type === "rename" || this.unlinked()) this.rewatch();
      this.check();
    });
    w.on("error", (e) => {
      this.logger.warn("sqlite: watching the notification file failed", {
        path: this.path,
        err: e,
      });
      this.rewatch();
    });
    this.watcher = w;
  }

  /** True when the open doorbell file has no name any more (deleted). */
  private unlinked(): boolean {
    if (this.fd === null) return false;
    try {
      return fstatSync(this.fd).nlink === 0;
    } catch {
      return true;
    }
  }

  private rewatch(): void {
    this.stopWatching();
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
    if (this.watchers.keys().length === 0) return;
    try {
      this.startWatching();
    } catch (e) {
      this.logger.warn("sqlite: cannot watch the notification file again", {
        path: this.path,
        err: e,
      });
    }
    for (const name of this.watchers.keys()) this.watchers.emit(name, { name, type: "changed" });
  }

  private stopWatching(): void {
    this.watcher?.close();
    this.watcher = null;
  }

  /** Reads each watched lease; reports the ones whose term changed. Coalesces rings. */
  private check(): void {
    if (this.checking) {
      this.again = true;
      return;
    }
    this.checking = true;
    try {
      do {
        this.again = false;
        const names = this.watchers.keys();
        let terms: LiveTerm[];
        try {
          // One transaction for every watched lease: a ring costs one look, not one per lease.
          terms = this.readTerms(names);
        } catch (e) {
          this.logger.warn("sqlite: cannot read the watched leases", { err: e });
          for (const name of names) this.watchers.emit(name, { name, type: "changed" });
          continue;
        }
        for (const [i, name] of names.entries()) {
          const now = terms[i] ?? null;
          if (!this.seen.has(name)) continue; // unwatched meanwhile
          const k = key(now);
          if (k === this.seen.get(name)) continue;
          this.seen.set(name, k);
          const type: LeaseEvent["type"] = now?.holder == null ? "released" : "acquired";
          this.watchers.emit(name, { name, type });
        }
      } while (this.again);
    } finally {
      this.checking = false;
    }
  }

  close(): void {
    this.stopWatching();
    this.watchers.clear();
    this.seen.clear();
    if (this.fd !== null) {
      try {
        closeSync(this.fd);
      } catch {}
      this.fd = null;
    }
  }
}

const key = (t: LiveTerm): string => (t === null ? "" : `${t.token}/${t.holder ?? ""}`);

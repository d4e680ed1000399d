/**
 * A handle's change feed: a watch on `PATH/log` (docs/bigfile.md,
 * "Boundaries and invalidation"). Each commit through a handle sets that node
 * to the block ranges it changed; the feed queues what it hears in
 * `pending`, and the handle applies it at its next transaction boundary.
 *
 * Seed 000's rule 1 holds here too: the callback takes the handle's lock
 * (`locked`, synchronous) only to queue, and never waits for anything the
 * handle holds; the watch itself is opened through the handle's storage gate
 * (`storage`), which refuses to run with the lock held.
 */
import type { Store, WatchEvent } from '../api.js';
import { type Change, decodeChange } from './meta.js';

type Gate = <T>(fn: () => T) => T;

export class ChangeFeed {
  /** Changes heard and not yet applied, in revision order. */
  readonly pending: Array<{ rev: number; change: Change }> = [];
  /** Set when the watch ended (COMPACTED, QUOTA, CLOSED): the next boundary drops every clean page and starts again. */
  broken = false;
  private delivered = 0;
  private gen = 0;
  private abort: AbortController | undefined;
  private readonly waiters: Array<{ rev: number; wake: () => void }> = [];
  private closed = false;

  constructor(private readonly store: Store, private readonly path: string, private readonly locked: Gate, private readonly storage: Gate) {}

  /** Watches from revision `from` (everything before it is in the snapshot already). */
  start(from: number): void {
    this.abort?.abort();
    // The feed owes nothing before `from`.
    if (from - 1 > this.delivered) this.delivered = from - 1;
    const gen = ++this.gen;
    const ac = new AbortController();
    this.abort = ac;
    const events = this.storage(() => this.store.watch(this.path, { fromRevision: from, signal: ac.signal }));
    void (async () => {
      try {
        for await (const ev of events) {
          if (gen !== this.gen) return;
          this.onEvent(ev);
        }
      } catch {
        // COMPACTED, QUOTA, CLOSED, ABORTED: below.
      }
      if (gen !== this.gen) return;
      // The feed ended: everything cached may be stale; the next boundary drops the cache and watches again.
      this.locked(() => { this.broken = true; });
      for (const w of this.waiters.splice(0)) w.wake();
    })();
  }

  /** The watch's callback: queue the change under the lock and return; it never waits for the handle. */
  private onEvent(ev: WatchEvent): void {
    this.locked(() => {
      const change: Change = ev.type === 'delete' ? { ranges: [], all: true } : decodeChange(ev.value);
      this.pending.push({ rev: ev.revision, change });
      if (ev.revision > this.delivered) this.delivered = ev.revision;
    });
    let keep = 0;
    const ready: Array<() => void> = [];
    for (const w of this.waiters) {
      if (w.rev <= this.delivered) ready.push(w.wake);
      else this.waiters[keep++] = w;
    }
    this.waiters.length = keep;
    for (const wake of ready) wake();
  }

  /** Resolves once the feed delivered revision `rev` (or broke, or closed). */
  at(rev: number): Promise<void> {
    if (this.delivered >= rev || this.broken || this.closed) return Promise.resolve();
    return new Promise((wake) => this.waiters.push({ rev, wake }));
  }

  close(): void {
    this.closed = true;
    this.gen++;
    this.abort?.abort();
    for (const w of this.waiters.splice(0)) w.wake();
  }
}

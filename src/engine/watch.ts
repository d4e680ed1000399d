/**
 * Watches on the embedded store: the async iterator a caller consumes, over
 * the engine's registry (core/watch-registry.ts, fed by its commit hook).
 *
 * Each watch has a bounded queue. Revisions are queued whole, so when a slow
 * consumer's queue would pass its limit the watch stops taking new revisions,
 * lets the consumer drain every complete revision it already has, and then
 * fails with QUOTA carrying `info.resumeFrom`: watching again from that
 * revision continues with no gap and no duplicate. A single revision larger
 * than the limit is still taken whole when the queue is empty.
 */
import type { WatchEvent, WatchOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { Subscription, WatchEventData, WatchRegistry } from '../core/watch-registry.js';
import type { Engine } from './engine.js';
import { copyBytes } from '../edge/entry.js';

export const DEFAULT_WATCH_QUEUE = 10_000;

export interface InternalWatchOptions extends WatchOptions {
  /** Events a watch may hold for a consumer that is not reading (default 10,000). */
  maxQueue?: number;
  /** Hand out the stored bytes without copying (the server only encodes them). */
  shareValues?: boolean;
  /** Only events whose path passes are delivered (the server's grants; a revision left empty is skipped). */
  filter?: (path: string) => boolean;
  /** Called after events were queued (the server charges the backlog to its memory budget). */
  onQueue?: () => void;
}

export class Watch implements AsyncIterableIterator<WatchEvent>, AsyncDisposable {
  private queue: WatchEvent[] = [];
  private head = 0;
  private ended: { error?: LatchkeyError } | undefined;
  private pendingError: LatchkeyError | undefined;
  private waiter: (() => void) | undefined;
  private readonly sub: Subscription;
  private lastRev: number;
  private readonly maxQueue: number;
  private readonly share: boolean;
  private readonly filter: ((path: string) => boolean) | undefined;
  private readonly onQueue: (() => void) | undefined;
  /** Bytes of the paths and values of the events queued. */
  queuedBytes = 0;
  private readonly onAbort: () => void;
  private readonly signal: AbortSignal | undefined;

  constructor(registry: WatchRegistry, path: string, options: InternalWatchOptions) {
    this.maxQueue = options.maxQueue ?? DEFAULT_WATCH_QUEUE;
    this.share = options.shareValues === true;
    this.filter = options.filter;
    this.onQueue = options.onQueue;
    this.signal = options.signal;
    this.onAbort = () => this.finish(new LatchkeyError('ABORTED', 'watch aborted', { path, cause: this.signal?.reason }));
    if (this.signal?.aborted) throw new LatchkeyError('ABORTED', 'watch aborted', { path, cause: this.signal.reason });
    this.lastRev = 0;
    this.sub = registry.subscribe(path, options.recursive === true, options.fromRevision, {
      deliver: (rev, evs) => this.deliver(rev, evs),
      end: (e) => this.finish(e),
    });
    if (this.lastRev === 0) this.lastRev = this.sub.revision - 1;
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** The first revision this watch delivers. */
  get startRevision(): number {
    return this.sub.revision;
  }

  /** Events queued and not yet taken. */
  get queued(): number {
    return this.queue.length - this.head;
  }

  private deliver(rev: number, all: WatchEventData[]): void {
    if (this.ended !== undefined || this.pendingError !== undefined) return;
    const filter = this.filter;
    const evs = filter === undefined ? all : all.filter((e) => filter(e.path));
    if (evs.length === 0) {
      this.lastRev = rev;
      return;
    }
    if (this.queued > 0 && this.queued + evs.length > this.maxQueue) {
      // Stop here: everything before `rev` is queued, nothing from it on.
      this.sub.cancel();
      this.pendingError = new LatchkeyError('QUOTA', `watch fell more than ${this.maxQueue} events behind; resume from revision ${rev}`, {
        info: { resumeFrom: rev, limit: this.maxQueue },
      });
      this.wake();
      return;
    }
    for (const e of evs) {
      const ev: { type: 'put' | 'delete'; path: string; revision: number; value?: Uint8Array } = { type: e.type, path: e.path, revision: e.revision };
      if (e.value !== undefined) ev.value = this.share ? e.value : copyBytes(e.value);
      this.queue.push(ev);
      this.queuedBytes += e.path.length + (e.value?.length ?? 0);
    }
    this.lastRev = rev;
    this.wake();
    this.onQueue?.();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private finish(error?: LatchkeyError): void {
    if (this.ended !== undefined) return;
    this.sub.cancel();
    this.signal?.removeEventListener('abort', this.onAbort);
    this.ended = error === undefined ? {} : { error };
    this.queue = [];
    this.head = 0;
    this.queuedBytes = 0;
    this.wake();
  }

  /**
   * Takes every queued event (whole revisions), waiting for at least one.
   * Resolves [] once the watch has ended cleanly; rejects with its error.
   */
  async take(): Promise<WatchEvent[]> {
    for (;;) {
      if (this.queued > 0) {
        const out = this.head === 0 ? this.queue : this.queue.slice(this.head);
        this.queue = [];
        this.head = 0;
        this.queuedBytes = 0;
        return out;
      }
      if (this.pendingError !== undefined) {
        const e = this.pendingError;
        this.finish(e);
        throw e;
      }
      if (this.ended !== undefined) {
        if (this.ended.error !== undefined) throw this.ended.error;
        return [];
      }
      await new Promise<void>((resolve) => { this.waiter = resolve; });
    }
  }

  async next(): Promise<IteratorResult<WatchEvent>> {
    for (;;) {
      if (this.queued > 0) {
        const ev = this.queue[this.head++]!;
        this.queuedBytes -= ev.path.length + (ev.value?.length ?? 0);
        if (this.head === this.queue.length) {
          this.queue = [];
          this.head = 0;
          this.queuedBytes = 0;
        }
        return { value: ev, done: false };
      }
      if (this.pendingError !== undefined) {
        const e = this.pendingError;
        this.finish(e);
        throw e;
      }
      if (this.ended !== undefined) {
        if (this.ended.error !== undefined) throw this.ended.error;
        return { value: undefined, done: true };
      }
      await new Promise<void>((resolve) => { this.waiter = resolve; });
    }
  }

  /** Ends the watch (a `break` out of `for await` calls this). */
  async return(): Promise<IteratorResult<WatchEvent>> {
    this.finish();
    return { value: undefined, done: true };
  }

  /** Ends the watch at once (queued events are dropped); the consumer sees `error` next. */
  fail(error: LatchkeyError): void {
    this.finish(error);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.finish();
  }

  /** The last revision fully queued (or the one before the start). */
  get revision(): number {
    return this.lastRev;
  }
}

export function watch(engine: Engine, path: string, options: InternalWatchOptions = {}): Watch {
  engine.checkOpen();
  return new Watch(engine.watches, path, options);
}

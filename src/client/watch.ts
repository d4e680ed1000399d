/** A remote watch: events pushed by the server, a bounded queue, and resumption after a reconnection. */
import type { WatchEvent, WatchOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { Args } from '../protocol/messages.js';
import type { Core } from './core.js';

export class RemoteWatch implements AsyncIterableIterator<WatchEvent> {
  private queue: WatchEvent[] = [];
  private head = 0;
  private handle = 0;
  /** The next revision this watch must deliver (where it resumes after a loss). */
  private nextRev: number | undefined;
  /**
   * For a watch from "now" whose first reply has not arrived: the revision it
   * asked for, as far as the client can tell (one past the newest revision
   * it had heard of when it asked; the server's "now" was at least that). A
   * link lost before the reply resumes from here, never from a later "now".
   */
  private askedFrom: number | undefined;
  private endError: LatchkeyError | undefined;
  private done = false;
  private waiter: (() => void) | undefined;
  private readonly maxQueue: number;
  private readonly onAbort: () => void;

  constructor(private readonly core: Core, readonly path: string, private readonly options: WatchOptions) {
    this.maxQueue = core.opts.maxWatchQueue ?? 10_000;
    this.nextRev = options.fromRevision;
    this.onAbort = () => this.fail(new LatchkeyError('ABORTED', 'watch aborted', { path, cause: options.signal?.reason }));
    if (options.signal?.aborted) throw new LatchkeyError('ABORTED', 'watch aborted', { path, cause: options.signal.reason });
    options.signal?.addEventListener('abort', this.onAbort, { once: true });
    core.allWatches.add(this);
    if (core.link?.alive) this.attach();
  }

  private get queued(): number {
    return this.queue.length - this.head;
  }

  /** Subscribes on the current link, from where the last link left off. */
  attach(): void {
    if (this.done || this.endError !== undefined || this.handle !== 0) return;
    const link = this.core.link;
    if (link === undefined || !link.alive) return;
    const handle = this.core.handle();
    this.handle = handle;
    this.core.watches.set(handle, this);
    const a: Args<'watch'> = { watch: handle, path: this.path };
    if (this.options.recursive !== undefined) a.recursive = this.options.recursive;
    const from = this.nextRev ?? this.askedFrom;
    if (from !== undefined) a.fromRevision = from;
    else this.askedFrom = this.core.revision + 1;
    link.request('watch', a).then((r) => {
      if (this.handle === handle) this.nextRev ??= r.revision;
    }, (e: unknown) => {
      if (this.handle !== handle) return;
      if (LatchkeyError.is(e, 'CONNECTION_LOST')) return; // attach again on the next link
      this.fail(e as LatchkeyError);
    });
  }

  /** The link is gone: forget its handle; the next link re-attaches. */
  detach(): void {
    this.handle = 0;
  }

  events(evs: ReadonlyArray<{ type: 'put' | 'delete'; path: string; revision: number; value?: Uint8Array }>): void {
    if (this.done || this.endError !== undefined || evs.length === 0) return;
    if (this.queued > 0 && this.queued + evs.length > this.maxQueue) {
      this.stopServer();
      this.endError = new LatchkeyError('QUOTA', `watch fell more than ${this.maxQueue} events behind; resume from revision ${evs[0]!.revision}`, {
        path: this.path, info: { resumeFrom: evs[0]!.revision, limit: this.maxQueue },
      });
      this.wake();
      return;
    }
    for (const e of evs) this.queue.push(e);
    // Pushes end on a revision boundary (the server splits only between revisions).
    this.nextRev = evs[evs.length - 1]!.revision + 1;
    this.wake();
  }

  ended(e: LatchkeyError): void {
    this.core.watches.delete(this.handle);
    this.handle = 0;
    if (this.endError === undefined && !this.done) this.endError = e;
    this.wake();
  }

  private stopServer(): void {
    const h = this.handle;
    if (h === 0) return;
    this.core.watches.delete(h);
    this.handle = 0;
    const link = this.core.link;
    if (link?.alive) link.request('unwatch', { watch: h }).catch(() => {});
  }

  /** Ends the watch at once with an error. */
  fail(e: LatchkeyError): void {
    if (this.done) return;
    this.stopServer();
    this.endError ??= e;
    this.queue = [];
    this.head = 0;
    this.finish();
  }

  private finish(): void {
    this.done = true;
    this.core.allWatches.delete(this);
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  async next(): Promise<IteratorResult<WatchEvent>> {
    for (;;) {
      if (this.queued > 0) {
        const ev = this.queue[this.head++]!;
        if (this.head === this.queue.length) {
          this.queue = [];
          this.head = 0;
        }
        return { value: ev, done: false };
      }
      if (this.endError !== undefined) {
        const e = this.endError;
        if (!this.done) {
          this.stopServer();
          this.finish();
        }
        throw e;
      }
      if (this.done) return { value: undefined, done: true };
      await new Promise<void>((resolve) => { this.waiter = resolve; });
    }
  }

  async return(): Promise<IteratorResult<WatchEvent>> {
    this.stopServer();
    this.queue = [];
    this.head = 0;
    this.finish();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.return();
  }
}

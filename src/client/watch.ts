/** A remote watch: events pushed by the server, a bounded queue, and resumption after a reconnection. */
import type { WatchEvent, WatchOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import { type Args, fromWireError } from '../protocol/messages.js';
import type { ClientConnection, LinkFollower, LinkMember } from './connection.js';
import type { Push } from './link.js';

/**
 * A watch follows the connection (each new link: subscribe again from where
 * the last left off) and is attached, under its current subscription's
 * handle, to the link it is subscribed on.
 */
export class RemoteWatch implements AsyncIterableIterator<WatchEvent>, LinkFollower, LinkMember {
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
  private readonly unfollow: () => void;

  constructor(private readonly conn: ClientConnection, readonly path: string, private readonly options: WatchOptions) {
    this.maxQueue = conn.opts.maxWatchQueue ?? 10_000;
    this.nextRev = options.fromRevision;
    this.onAbort = () => this.fail(new LatchkeyError('ABORTED', 'watch aborted', { path, cause: options.signal?.reason }));
    if (options.signal?.aborted) throw new LatchkeyError('ABORTED', 'watch aborted', { path, cause: options.signal.reason });
    options.signal?.addEventListener('abort', this.onAbort, { once: true });
    this.unfollow = conn.follow(this);
    if (conn.link?.alive) this.attach();
  }

  linkUp(): void {
    this.attach();
  }

  connectionEnded(e: LatchkeyError): void {
    this.fail(e);
  }

  pushed(m: Push): void {
    if (m.t === 'event') this.events(m.ev);
    else if (m.t === 'watchEnd') this.ended(fromWireError(m.e));
  }

  /** The link is gone: forget its handle; the next link re-attaches. */
  linkLost(): void {
    this.handle = 0;
  }

  private get queued(): number {
    return this.queue.length - this.head;
  }

  /** Subscribes on the current link, from where the last link left off. */
  private attach(): void {
    if (this.done || this.endError !== undefined || this.handle !== 0) return;
    const link = this.conn.link;
    if (link === undefined || !link.alive) return;
    const handle = this.conn.handle();
    this.handle = handle;
    this.conn.attach(handle, this);
    const a: Args<'watch'> = { watch: handle, path: this.path };
    if (this.options.recursive !== undefined) a.recursive = this.options.recursive;
    const from = this.nextRev ?? this.askedFrom;
    if (from !== undefined) a.fromRevision = from;
    else this.askedFrom = this.conn.revision + 1;
    link.request('watch', a).then((r) => {
      if (this.handle === handle) this.nextRev ??= r.revision;
    }, (e: unknown) => {
      if (this.handle !== handle) return;
      if (LatchkeyError.is(e, 'CONNECTION_LOST')) return; // attach again on the next link
      this.fail(e as LatchkeyError);
    });
  }

  private events(evs: ReadonlyArray<{ type: 'put' | 'delete'; path: string; revision: number; value?: Uint8Array }>): void {
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

  private ended(e: LatchkeyError): void {
    this.conn.detach(this.handle, this);
    this.handle = 0;
    if (this.endError === undefined && !this.done) this.endError = e;
    this.wake();
  }

  private stopServer(): void {
    const h = this.handle;
    if (h === 0) return;
    this.conn.detach(h, this);
    this.handle = 0;
    const link = this.conn.link;
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
    this.unfollow();
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

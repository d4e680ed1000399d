/** A transaction of a remote session: `begin` pipelined, operations by handle, commit on the server. */
import type { CommitResult, Entry, Listing, ListOptions, Stat, WriteOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import { parsePath } from '../core/path.js';
import type { AtomicOp } from '../core/ops.js';
import type { CheckExpect, CreateFlags, DeleteFlags, SetConditions } from '../edge/args.js';
import { entryOf, makeListing } from '../edge/entry.js';
import { TransactionEdge } from '../edge/session.js';
import type { Args, RequestOp, Result } from '../protocol/messages.js';
import type { ClientConnection, LinkMember } from './connection.js';
import { writeArgs } from './util.js';

export class RemoteTransaction extends TransactionEdge implements LinkMember {
  state: 'open' | 'committed' | 'aborted' = 'open';
  readonly remote = true;
  private snapshot: number;
  private readonly handle: number;
  private readonly began: Promise<void>;
  private beginError: LatchkeyError | undefined;
  private abortReason: string | undefined;
  private committing = false;

  constructor(private readonly conn: ClientConnection, private readonly session: number, private readonly generation: number) {
    super();
    this.handle = conn.handle();
    this.snapshot = conn.revision;
    conn.attach(this.handle, this);
    // Sent now, not awaited: the transaction's first operations follow it down the same pipe.
    this.began = conn.requestOn(generation, 'begin', { tx: this.handle }, session).then(
      (r) => { this.snapshot = r.snapshotRevision; },
      (e: unknown) => {
        this.beginError = e as LatchkeyError;
        this.finish('aborted', (e as Error).message);
      },
    );
  }

  /** Known once the server answered `begin`; until then, the newest revision the client had seen. */
  get snapshotRevision(): number {
    return this.snapshot;
  }

  linkLost(): void {
    this.finish('aborted', 'the connection was lost');
  }

  private finish(state: 'committed' | 'aborted', reason?: string): void {
    if (this.state !== 'open') return;
    this.state = state;
    this.abortReason = reason;
    this.conn.detach(this.handle, this);
  }

  protected checkOpen(): void {
    if (this.committing) throw new LatchkeyError('INVALID_ARGUMENT', 'transaction is committing');
    if (this.state === 'committed') throw new LatchkeyError('CLOSED', 'transaction already committed');
    if (this.state === 'aborted') throw this.beginError ?? new LatchkeyError('ABORTED', `transaction aborted${this.abortReason ? `: ${this.abortReason}` : ''}`);
  }

  private async op<K extends RequestOp>(op: K, args: Args<K>): Promise<Result<K>> {
    this.checkOpen();
    try {
      return await this.conn.requestOn(this.generation, op, args, this.session);
    } catch (e) {
      await this.began;
      if (this.beginError !== undefined) throw this.beginError;
      if (LatchkeyError.is(e, 'CONNECTION_LOST')) this.finish('aborted', 'the connection was lost');
      throw e;
    }
  }

  protected get maxValueBytes(): number {
    return this.conn.maxValue;
  }

  protected async _get(path: string): Promise<Entry | undefined> {
    const w = await this.op('get', { path, tx: this.handle });
    return w === null ? undefined : entryOf(w);
  }

  /**
   * Transaction.readInto over the socket: a `get` whose value the link reads
   * straight into `target` as it arrives (no frame-sized buffer, no copy of
   * a decoded value). TOO_LARGE when the value does not fit, as embedded.
   */
  async readInto(path: string, target: Uint8Array): Promise<{ length: number; stat: Stat } | undefined> {
    this.checkOpen();
    parsePath(path);
    if (!(target instanceof Uint8Array)) throw new LatchkeyError('INVALID_ARGUMENT', 'readInto: target must be a Uint8Array');
    let r;
    try {
      r = await this.conn.requestIntoOn(this.generation, { path, tx: this.handle }, target, this.session);
    } catch (e) {
      await this.began;
      if (this.beginError !== undefined) throw this.beginError;
      if (LatchkeyError.is(e, 'CONNECTION_LOST')) this.finish('aborted', 'the connection was lost');
      throw e;
    }
    return r === null ? undefined : { length: r.length, stat: r.entry.stat };
  }

  protected _exists(path: string): Promise<boolean> {
    return this.op('exists', { path, tx: this.handle });
  }

  protected async _list(path: string, options: ListOptions): Promise<Listing> {
    const r = await this.op('list', { path, ...options, tx: this.handle });
    return makeListing(r.names, r.revision, r.more);
  }

  protected async _set(path: string, value: Uint8Array, cond: SetConditions): Promise<void> {
    await this.op('set', { path, value, ...cond, tx: this.handle });
  }

  protected _create(path: string, value: Uint8Array, flags: CreateFlags): Promise<string> {
    return this.op('create', { path, value, ...flags, tx: this.handle });
  }

  protected _delete(path: string, flags: DeleteFlags): Promise<boolean> {
    return this.op('delete', { path, ...flags, tx: this.handle });
  }

  protected async _check(path: string, expect: CheckExpect): Promise<void> {
    await this.op('check', { path, ...expect, tx: this.handle });
  }

  protected async _atomic(op: AtomicOp): Promise<void> {
    const tx = this.handle;
    switch (op.op) {
      case 'add': await this.op('add', { path: op.path, delta: op.delta, tx }); return;
      case 'min':
      case 'max': await this.op(op.op, { path: op.path, operand: op.operand, tx }); return;
      case 'append':
      case 'setIfAbsent': await this.op(op.op, { path: op.path, value: op.value, tx });
    }
  }

  async commit(options: WriteOptions = {}): Promise<CommitResult> {
    this.checkOpen();
    this.committing = true;
    try {
      const r = await this.conn.requestOn(this.generation, 'commit', { tx: this.handle, ...writeArgs(options) }, this.session, options.signal);
      this.committing = false;
      this.finish('committed');
      return r;
    } catch (e) {
      this.committing = false;
      await this.began;
      const err = this.beginError ?? e;
      this.finish('aborted', LatchkeyError.is(err) ? err.code : 'error');
      throw err;
    }
  }

  async abort(): Promise<void> {
    if (this.state !== 'open' || this.committing) return;
    this.finish('aborted', 'aborted by caller');
    await this.conn.requestOn(this.generation, 'abort', { tx: this.handle }, this.session).catch(() => {});
  }
}

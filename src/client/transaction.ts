/** A transaction of a remote session: `begin` pipelined, operations by handle, commit on the server. */
import type { CommitResult, Entry, Listing, ListOptions, Transaction, Value, WriteOptions } from '../api.js';
import { LatchkeyError, invalidArgument } from '../core/errors.js';
import { checkAtomicArgs } from '../core/ops.js';
import type { Args, RequestOp, Result } from '../protocol/messages.js';
import type { Core } from './core.js';
import { makeEntry, makeListing, toBytes } from './entry.js';
import { writeArgs } from './util.js';

export class RemoteTransaction implements Transaction {
  state: 'open' | 'committed' | 'aborted' = 'open';
  private snapshot: number;
  private readonly handle: number;
  private readonly began: Promise<void>;
  private beginError: LatchkeyError | undefined;
  private abortReason: string | undefined;
  private committing = false;

  constructor(private readonly core: Core, private readonly session: number, private readonly generation: number) {
    this.handle = core.handle();
    this.snapshot = core.revision;
    core.txs.add(this);
    // Sent now, not awaited: the transaction's first operations follow it down the same pipe.
    this.began = core.requestOn(generation, 'begin', { tx: this.handle }, session).then(
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

  connectionLost(): void {
    this.finish('aborted', 'the connection was lost');
  }

  private finish(state: 'committed' | 'aborted', reason?: string): void {
    if (this.state !== 'open') return;
    this.state = state;
    this.abortReason = reason;
    this.core.txs.delete(this);
  }

  private ensureOpen(): void {
    if (this.committing) throw new LatchkeyError('INVALID_ARGUMENT', 'transaction is committing');
    if (this.state === 'committed') throw new LatchkeyError('CLOSED', 'transaction already committed');
    if (this.state === 'aborted') throw this.beginError ?? new LatchkeyError('ABORTED', `transaction aborted${this.abortReason ? `: ${this.abortReason}` : ''}`);
  }

  private async op<K extends RequestOp>(op: K, args: Args<K>): Promise<Result<K>> {
    this.ensureOpen();
    try {
      return await this.core.requestOn(this.generation, op, args, this.session);
    } catch (e) {
      await this.began;
      if (this.beginError !== undefined) throw this.beginError;
      if (LatchkeyError.is(e, 'CONNECTION_LOST')) this.finish('aborted', 'the connection was lost');
      throw e;
    }
  }

  async get(path: string): Promise<Entry | undefined> {
    return makeEntry(await this.op('get', { path, tx: this.handle }));
  }

  async exists(path: string): Promise<boolean> {
    return this.op('exists', { path, tx: this.handle });
  }

  async list(path: string, options: ListOptions = {}): Promise<Listing> {
    const a: Args<'list'> = { path, tx: this.handle };
    if (options.after !== undefined) a.after = options.after;
    if (options.limit !== undefined) a.limit = options.limit;
    const r = await this.op('list', a);
    return makeListing(r.names, r.revision, r.more);
  }

  async set(path: string, value: Value, options: { ifVersion?: number; ifModRev?: number; ifAbsent?: boolean } = {}): Promise<void> {
    const a: Args<'set'> = { path, value: toBytes(value, this.core.maxValue, path), tx: this.handle };
    if (options.ifVersion !== undefined) a.ifVersion = options.ifVersion;
    if (options.ifModRev !== undefined) a.ifModRev = options.ifModRev;
    if (options.ifAbsent !== undefined) a.ifAbsent = options.ifAbsent;
    await this.op('set', a);
  }

  async create(path: string, value?: Value, options: { ephemeral?: boolean; sequential?: boolean } = {}): Promise<string> {
    const a: Args<'create'> = { path, value: toBytes(value, this.core.maxValue, path), tx: this.handle };
    if (options.ephemeral !== undefined) a.ephemeral = options.ephemeral;
    if (options.sequential !== undefined) a.sequential = options.sequential;
    return this.op('create', a);
  }

  async delete(path: string, options: { recursive?: boolean; ifVersion?: number } = {}): Promise<boolean> {
    const a: Args<'delete'> = { path, tx: this.handle };
    if (options.recursive !== undefined) a.recursive = options.recursive;
    if (options.ifVersion !== undefined) a.ifVersion = options.ifVersion;
    return this.op('delete', a);
  }

  async check(path: string, expect: { version?: number; modRev?: number; exists?: boolean }): Promise<void> {
    if (expect === null || typeof expect !== 'object') throw invalidArgument('check: expectations must be an object');
    const a: Args<'check'> = { path, tx: this.handle };
    if (expect.version !== undefined) a.version = expect.version;
    if (expect.modRev !== undefined) a.modRev = expect.modRev;
    if (expect.exists !== undefined) a.exists = expect.exists;
    await this.op('check', a);
  }

  async add(path: string, delta: number): Promise<void> {
    checkAtomicArgs({ op: 'add', path, delta });
    await this.op('add', { path, delta, tx: this.handle });
  }

  async min(path: string, operand: number): Promise<void> {
    checkAtomicArgs({ op: 'min', path, operand });
    await this.op('min', { path, operand, tx: this.handle });
  }

  async max(path: string, operand: number): Promise<void> {
    checkAtomicArgs({ op: 'max', path, operand });
    await this.op('max', { path, operand, tx: this.handle });
  }

  async append(path: string, value: Value): Promise<void> {
    await this.op('append', { path, value: toBytes(value, this.core.maxValue, path), tx: this.handle });
  }

  async setIfAbsent(path: string, value: Value): Promise<void> {
    await this.op('setIfAbsent', { path, value: toBytes(value, this.core.maxValue, path), tx: this.handle });
  }

  async commit(options: WriteOptions = {}): Promise<CommitResult> {
    this.ensureOpen();
    this.committing = true;
    try {
      const r = await this.core.requestOn(this.generation, 'commit', { tx: this.handle, ...writeArgs(options) }, this.session, options.signal);
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
    await this.core.requestOn(this.generation, 'abort', { tx: this.handle }, this.session).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.abort();
  }
}

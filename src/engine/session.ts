/**
 * Sessions: the unit of ownership (locks, ephemeral nodes, transactions) and
 * of death. A store has a default session; `store.session()` makes more; the
 * server makes one per connection. Ending a session — closed, or dead —
 * aborts its open transactions, releases its locks (to the next waiter with
 * ownerDied when it died holding them) and deletes its ephemeral nodes in
 * one commit.
 */
import type {
  CreateOptions, DeleteOptions, Entry, Listing, ListOptions, Lock, LockInfo, LockOptions, MultiOp, MultiResult,
  Session, SetOptions, Transaction, TransactionOptions, Value, WriteOptions,
} from '../api.js';
import { LatchkeyError, invalidArgument } from '../core/errors.js';
import type { WriteOp } from '../core/ops.js';
import { parsePath } from '../core/path.js';
import { lookup } from '../core/tree.js';
import type { WriteTarget } from '../core/lock-table.js';
import { type Engine, targetOf, targetOfOp } from './engine.js';
import { makeEntry, makeListing, toBytes } from './entry.js';
import { TransactionImpl } from './transaction.js';
import { runTransaction } from '../util/retry.js';

let sessionCounter = 0;
const epoch = Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, '0');

export class SessionImpl implements Session {
  readonly id: string;
  readonly name: string;
  closed = false;
  private readonly txs = new Set<TransactionImpl>();

  constructor(protected readonly engine: Engine, name?: string) {
    this.id = `${epoch}.${++sessionCounter}`;
    this.name = name ?? this.id;
    engine.sessionsOpen++;
  }

  protected checkOpen(): void {
    this.engine.checkOpen();
    if (this.closed) throw new LatchkeyError('SESSION_EXPIRED', `session ${this.name} has ended`);
  }

  async get(path: string): Promise<Entry | undefined> {
    this.checkOpen();
    const n = lookup(this.engine.visibleRoot, parsePath(path));
    return n === undefined ? undefined : makeEntry(path, n, this.engine.visibleRev);
  }

  async exists(path: string): Promise<boolean> {
    this.checkOpen();
    return lookup(this.engine.visibleRoot, parsePath(path)) !== undefined;
  }

  async list(path: string, options: ListOptions = {}): Promise<Listing> {
    this.checkOpen();
    const n = lookup(this.engine.visibleRoot, parsePath(path));
    if (n === undefined) throw new LatchkeyError('NOT_FOUND', `no node at ${path}`, { path });
    const { after, limit } = options;
    if (after !== undefined && typeof after !== 'string') throw invalidArgument('list: `after` must be a string');
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) throw invalidArgument('list: `limit` must be a positive integer');
    const rev = this.engine.visibleRev;
    if (limit === undefined) return makeListing(n.children.keys(after || undefined), rev, false);
    const names = n.children.keys(after || undefined, limit + 1);
    const more = names.length > limit;
    if (more) names.pop();
    return makeListing(names, rev, more);
  }

  async set(path: string, value: Value, options: SetOptions = {}): Promise<number> {
    this.checkOpen();
    parsePath(path);
    const v = toBytes(value, this.engine.maxValueBytes, path);
    const r = await this.engine.write(this.id, [targetOf('set', path)], options, (ws) => ws.set(path, v, options));
    return r.rev;
  }

  async create(path: string, value?: Value, options: CreateOptions = {}): Promise<string> {
    this.checkOpen();
    parsePath(path);
    const v = toBytes(value, this.engine.maxValueBytes, path);
    const owner = options.ephemeral ? this.id : undefined;
    const r = await this.engine.write(this.id, [targetOf('create', path, options.sequential === true)], options,
      (ws) => ws.create(path, v, { owner, sequential: options.sequential === true }));
    return r.value;
  }

  async delete(path: string, options: DeleteOptions = {}): Promise<boolean> {
    this.checkOpen();
    parsePath(path);
    const r = await this.engine.write(this.id, [targetOf('delete', path)], options,
      (ws) => ws.delete(path, { recursive: options.recursive === true, ifVersion: options.ifVersion }));
    return r.value;
  }

  async multi(ops: readonly MultiOp[], options: WriteOptions = {}): Promise<MultiResult> {
    this.checkOpen();
    if (!Array.isArray(ops)) throw invalidArgument('multi: ops must be an array');
    const writes = ops.map((o, i) => this.toWriteOp(o, i));
    const targets: WriteTarget[] = [];
    for (const w of writes) {
      const t = targetOfOp(w);
      if (t !== undefined) targets.push(t);
    }
    const r = await this.engine.write(this.id, targets, options, (ws) => writes.map((w, i) => {
      try {
        return ws.write(w);
      } catch (e) {
        if (e instanceof LatchkeyError) {
          throw new LatchkeyError(e.code, `multi op ${i} (${w.op} ${w.path}): ${e.message}`, { path: e.path ?? w.path, cause: e, info: { ...e.info, index: i } });
        }
        throw e;
      }
    }));
    return { revision: r.rev, results: r.value };
  }

  private toWriteOp(o: MultiOp, i: number): WriteOp {
    if (o === null || typeof o !== 'object') throw invalidArgument(`multi op ${i} must be an object`);
    parsePath(o.path);
    switch (o.op) {
      case 'set': return { op: 'set', path: o.path, value: toBytes(o.value, this.engine.maxValueBytes, o.path), ifVersion: o.ifVersion, ifModRev: o.ifModRev, ifAbsent: o.ifAbsent };
      case 'create': return { op: 'create', path: o.path, value: toBytes(o.value, this.engine.maxValueBytes, o.path), sequential: o.sequential === true, ...(o.ephemeral ? { owner: this.id } : {}) };
      case 'delete': return { op: 'delete', path: o.path, recursive: o.recursive === true, ifVersion: o.ifVersion };
      case 'check': return { op: 'check', path: o.path, version: o.version, modRev: o.modRev, exists: o.exists };
      default: throw invalidArgument(`multi op ${i}: unknown op ${JSON.stringify((o as { op: unknown }).op)}`);
    }
  }

  begin(): Transaction {
    this.checkOpen();
    const tx = new TransactionImpl(this.engine, { id: this.id, txEnded: (t) => this.txs.delete(t) });
    this.txs.add(tx);
    return tx;
  }

  transaction<T>(fn: (tx: Transaction) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    return runTransaction(() => this.begin(), fn, options);
  }

  lock(path: string, options: LockOptions = {}): Promise<Lock> {
    try {
      this.checkOpen();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.engine.locks.lock(this.id, path, options);
  }

  locks(): LockInfo[] {
    return this.engine.locks.locksOf(this.id);
  }

  /** Ends the session. `died` says it ended without a clean close (connection lost, lease lapsed). */
  async end(died: boolean): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.engine.sessionsOpen--;
    for (const tx of [...this.txs]) tx.kill(died ? 'session died' : 'session closed');
    this.txs.clear();
    if (!this.engine.closed) await this.engine.endSession(this.id, died);
  }

  close(): Promise<void> {
    return this.end(false);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

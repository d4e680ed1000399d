/**
 * Sessions: the unit of ownership (locks, ephemeral nodes, transactions) and
 * of death. A store has a default session; `store.session()` makes more; the
 * server makes one per connection. Ending a session — closed, or dead —
 * aborts its open transactions, releases its locks (to the next waiter with
 * ownerDied when it died holding them) and deletes its ephemeral nodes in
 * one commit.
 */
import type { Entry, Listing, ListOptions, Lock, LockInfo, LockOptions, MultiResult, Transaction, WriteOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { WriteTarget } from '../core/lock-table.js';
import type { AtomicOp, Workspace } from '../core/ops.js';
import { EMBEDDED_RETRY, type RetryCounters } from '../util/retry.js';
import { parsePath } from '../core/path.js';
import { lookup } from '../core/tree.js';
import { type CheckedMultiOp, type CreateFlags, type DeleteFlags, type SetConditions, checkOptions } from '../edge/args.js';
import type { ServedLock } from './access.js';
import { entryOfNodeAsync, listNode } from '../edge/entry.js';
import { applyMultiOps, multiWriteOps } from '../edge/multi.js';
import { SessionEdge } from '../edge/session.js';
import { type Engine, targetOf, targetOfOp } from './engine.js';
import { TransactionImpl } from './transaction.js';

let sessionCounter = 0;
const revOf = (r: { rev: number }): number => r.rev;
/** A get of a missing node: one shared settled promise (a settled promise is immutable). */
const NO_ENTRY: Promise<undefined> = Promise.resolve(undefined);
const epoch = Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, '0');

/** A session of the embedded store: the edge's narrow methods, run on the engine. */
export class SessionImpl extends SessionEdge {
  readonly id: string;
  readonly name: string;
  closed = false;
  /** When it opened (ms since the epoch). */
  readonly since: number;
  private readonly txs = new Set<TransactionImpl>();

  constructor(protected readonly engine: Engine, name?: string) {
    super();
    this.id = `${epoch}.${++sessionCounter}`;
    this.name = name ?? this.id;
    this.since = Date.now();
    engine.sessionsOpen++;
  }

  protected checkOpen(): void {
    this.engine.checkOpen();
    if (this.closed) throw new LatchkeyError('SESSION_EXPIRED', `session ${this.name} has ended`);
  }

  protected get maxValueBytes(): number {
    return this.engine.maxValueBytes;
  }

  protected _get(path: string, segs: readonly string[]): Promise<Entry | undefined> {
    // Not async: one promise per get, made here (an async function's and its await's cost more).
    const n = lookup(this.engine.visibleRoot, segs);
    if (n === undefined) return NO_ENTRY;
    const e = entryOfNodeAsync(path, n, this.engine.visibleRev);
    return e instanceof Promise ? e : Promise.resolve(e);
  }

  protected async _exists(path: string): Promise<boolean> {
    return lookup(this.engine.visibleRoot, parsePath(path)) !== undefined;
  }

  protected async _list(path: string, options: ListOptions): Promise<Listing> {
    const n = lookup(this.engine.visibleRoot, parsePath(path));
    if (n === undefined) throw new LatchkeyError('NOT_FOUND', `no node at ${path}`, { path });
    return listNode(n, this.engine.visibleRev, options);
  }

  protected _set(path: string, value: Uint8Array, cond: SetConditions, options: WriteOptions, segs?: readonly string[]): Promise<number> {
    if (segs !== undefined && cond.ifVersion === undefined && cond.ifModRev === undefined && !cond.ifAbsent) {
      return this.engine.setPlain(this.id, path, segs, value, options);
    }
    // A set of any node but the root may join a burst (engine.ts): the same checks, applied by the engine.
    const plan = path === '/' ? undefined : (ws: Workspace): void => ws.planSet(path, value, cond);
    return this.engine.write(this.id, [targetOf('set', path)], options, (ws) => ws.set(path, value, cond), plan, [value]).then(revOf);
  }

  protected async _create(path: string, value: Uint8Array, flags: CreateFlags, options: WriteOptions): Promise<string> {
    const owner = flags.ephemeral ? this.id : undefined;
    const sequential = flags.sequential === true;
    const r = await this.engine.write(this.id, [targetOf('create', path, sequential)], options,
      (ws) => ws.create(path, value, { owner, sequential }), undefined, [value]);
    return r.value;
  }

  protected async _delete(path: string, flags: DeleteFlags, options: WriteOptions): Promise<boolean> {
    const r = await this.engine.write(this.id, [targetOf('delete', path)], options,
      (ws) => ws.delete(path, { recursive: flags.recursive === true, ifVersion: flags.ifVersion }));
    return r.value;
  }

  protected async _multi(ops: CheckedMultiOp[], options: WriteOptions): Promise<MultiResult> {
    const writes = multiWriteOps(ops, this.id);
    const targets: WriteTarget[] = [];
    for (const w of writes) {
      const t = targetOfOp(w);
      if (t !== undefined) targets.push(t);
    }
    const r = await this.engine.write(this.id, targets, options, (ws) => applyMultiOps(ws, writes), undefined, writes.map((w) => (w.op === 'set' || w.op === 'create' ? w.value : undefined)));
    return { revision: r.rev, results: r.value };
  }

  protected readonly retryPolicy = EMBEDDED_RETRY;

  protected get retryCounters(): RetryCounters {
    return this.engine.retryCounters;
  }

  protected async _atomic(op: AtomicOp, options: WriteOptions): Promise<number | boolean> {
    const r = await this.engine.write(this.id, [targetOf('set', op.path)], options, (ws) => ws.atomic(op));
    return op.op === 'append' ? r.rev : r.value as number | boolean;
  }

  protected _begin(): Transaction {
    const tx = new TransactionImpl(this.engine, { id: this.id, txEnded: (t) => this.txs.delete(t) });
    this.txs.add(tx);
    return tx;
  }

  protected _lock(path: string, options: LockOptions): Promise<Lock> {
    if (options.robust !== false) return this.engine.locks.lock(this.id, path, options);
    return this.engine.locks.lock(this.id, path, options).then((l) => this.turnGranted(l));
  }

  /**
   * A non-robust grant (transaction()'s turn, util/retry.ts note 5) is
   * answered once every write admitted before it is published: the run
   * begun under it then reads them all, and no write under its path can be
   * admitted meanwhile, so it cannot conflict there. (A commit admitted
   * before the grant and still on its way to disk would otherwise conflict
   * the first run under the turn.)
   */
  private turnGranted<L extends Lock>(l: L): L | Promise<L> {
    if (this.engine.settled) return l;
    return this.engine.drainPending().then(() => l, async (e: unknown) => {
      await l.release().catch(() => {});
      throw e;
    });
  }

  /**
   * `lock` with the edge's checks, but the lock itself when it is granted at
   * once (a promise only when it waits): the server answers an uncontended
   * lock without a promise. Throws what `lock` would reject with up front.
   */
  lockNow(path: string, options: LockOptions): ServedLock | Promise<ServedLock> {
    this.checkOpen();
    parsePath(path);
    checkOptions(options, 'lock options');
    const l = this.engine.locks.lockNow(this.id, path, options);
    if (options.robust !== false) return l;
    return l instanceof Promise ? l.then((g) => this.turnGranted(g)) : this.turnGranted(l);
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
    if (!this.engine.closed) await this.engine.endSession(this.id, died, this.name);
  }

  close(): Promise<void> {
    return this.end(false);
  }
}

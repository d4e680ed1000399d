/**
 * The Transaction object: a TxState (core) bound to a session and the engine.
 * All reads and writes happen on the transaction's private workspace; nothing
 * is visible to anyone else until `commit`.
 */
import type { CommitResult, Entry, Listing, ListOptions, WriteOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import { TxState } from '../core/transaction.js';
import type { CheckExpect, CreateFlags, DeleteFlags, SetConditions } from '../edge/args.js';
import { entryOfNode, makeListing } from '../edge/entry.js';
import { TransactionEdge } from '../edge/session.js';
import type { Engine } from './engine.js';

export interface TxOwner {
  readonly id: string;
  /** Called once when the transaction ends, however it ends. */
  txEnded(tx: TransactionImpl): void;
}

export class TransactionImpl extends TransactionEdge {
  private readonly tx: TxState;
  state: 'open' | 'committed' | 'aborted' = 'open';
  private abortReason: string | undefined;
  private committing = false;

  constructor(private readonly engine: Engine, private readonly owner: TxOwner) {
    super();
    this.tx = new TxState(engine.visibleRoot, engine.visibleRev);
    engine.openTransactions++;
  }

  get snapshotRevision(): number {
    return this.tx.snapshotRev;
  }

  protected checkOpen(): void {
    if (this.state === 'open' && !this.committing) return;
    if (this.committing) throw new LatchkeyError('INVALID_ARGUMENT', 'transaction is committing');
    if (this.state === 'committed') throw new LatchkeyError('CLOSED', 'transaction already committed');
    throw new LatchkeyError('ABORTED', `transaction aborted${this.abortReason ? `: ${this.abortReason}` : ''}`);
  }

  protected get maxValueBytes(): number {
    return this.engine.maxValueBytes;
  }

  protected async _get(path: string): Promise<Entry | undefined> {
    const n = this.tx.get(path);
    return n === undefined ? undefined : entryOfNode(path, n, this.tx.snapshotRev);
  }

  protected async _exists(path: string): Promise<boolean> {
    return this.tx.get(path) !== undefined;
  }

  protected async _list(path: string, options: ListOptions): Promise<Listing> {
    const r = this.tx.list(path, options.after, options.limit);
    return makeListing(r.names, this.tx.snapshotRev, r.more);
  }

  protected async _set(path: string, value: Uint8Array, cond: SetConditions): Promise<void> {
    this.tx.write({ op: 'set', path, value, ...cond });
  }

  protected async _create(path: string, value: Uint8Array, flags: CreateFlags): Promise<string> {
    return this.tx.write({
      op: 'create', path, value, sequential: flags.sequential === true,
      ...(flags.ephemeral ? { owner: this.owner.id } : {}),
    }) as string;
  }

  protected async _delete(path: string, flags: DeleteFlags): Promise<boolean> {
    return this.tx.write({ op: 'delete', path, recursive: flags.recursive === true, ifVersion: flags.ifVersion }) as boolean;
  }

  protected async _check(path: string, expect: CheckExpect): Promise<void> {
    this.tx.write({ op: 'check', path, ...expect });
  }

  async commit(options: WriteOptions = {}): Promise<CommitResult> {
    this.checkOpen();
    this.committing = true;
    try {
      const r = await this.engine.commitTx(this.owner.id, this.tx, options);
      this.finish('committed');
      return r;
    } catch (e) {
      this.finish('aborted', e instanceof LatchkeyError ? e.code : 'error');
      throw e;
    } finally {
      this.committing = false;
    }
  }

  async abort(): Promise<void> {
    if (this.state !== 'open' || this.committing) return;
    this.finish('aborted', 'aborted by caller');
  }

  /** Ends the transaction because its session ended. */
  kill(reason: string): void {
    if (this.state === 'open' && !this.committing) this.finish('aborted', reason);
  }

  private finish(state: 'committed' | 'aborted', reason?: string): void {
    if (this.state !== 'open') return;
    this.state = state;
    this.abortReason = reason;
    this.engine.openTransactions--;
    this.owner.txEnded(this);
  }
}

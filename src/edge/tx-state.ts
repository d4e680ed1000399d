/**
 * A transaction over a TxState (core/transaction.ts): the part every backend
 * whose transactions run on a private workspace shares — whether it is still
 * open, and its reads, answered from its snapshot plus its own writes. The
 * embedded engine (engine/transaction.ts) and the etcd backend
 * (etcd/transaction.ts) add their writes and their commit.
 */
import type { Entry, Listing, ListOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { TxState } from '../core/transaction.js';
import { entryOfNodeAsync, makeListing } from './entry.js';
import { TransactionEdge } from './session.js';

export abstract class TxStateTransaction extends TransactionEdge {
  state: 'open' | 'committed' | 'aborted' = 'open';
  /** True while `commit` runs: no call may change the workspace then. */
  protected committing = false;
  /** Why it was aborted, said by later calls' ABORTED. */
  protected abortReason: string | undefined;

  constructor(protected readonly tx: TxState) {
    super();
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

  protected async _get(path: string): Promise<Entry | undefined> {
    const n = this.tx.get(path);
    return n === undefined ? undefined : entryOfNodeAsync(path, n, this.tx.snapshotRev);
  }

  protected async _exists(path: string): Promise<boolean> {
    return this.tx.get(path) !== undefined;
  }

  protected async _list(path: string, options: ListOptions): Promise<Listing> {
    const r = this.tx.list(path, options.after, options.limit);
    return makeListing(r.names, this.tx.snapshotRev, r.more);
  }
}

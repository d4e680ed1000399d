/**
 * A transaction on etcd: a TxState (core/transaction.ts) over the mirror's
 * snapshot at one etcd revision; commit is one Txn whose compares cover what
 * it read (commit.ts), and on failure latchkey's replay against the new head
 * (backend.ts notes), CONFLICT only when an answer differs.
 */
import type { CommitResult, WriteOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { AtomicOp, WriteOp } from '../core/ops.js';
import { TxState, replayAt } from '../core/transaction.js';
import type { CheckExpect, CreateFlags, DeleteFlags, SetConditions } from '../edge/args.js';
import { TxStateTransaction } from '../edge/tx-state.js';
import type { EtcdBackend } from './backend.js';
import { PlanBuilder } from './commit.js';
import { parentOf } from './keys.js';
import type { Locks } from './locks.js';

export interface TxOwner {
  readonly id: string;
  txEnded(tx: EtcdTransaction): void;
  /** The session's id once its lease is granted. */
  ready(): Promise<void>;
}

export function writeTargets(ops: readonly WriteOp[]): Array<{ path: string; subtree: boolean }> {
  const out: Array<{ path: string; subtree: boolean }> = [];
  for (const op of ops) {
    if (op.op === 'check') continue;
    if (op.op === 'create' && op.sequential === true) out.push({ path: parentOf(op.path), subtree: true });
    else out.push({ path: op.path, subtree: op.op === 'delete' });
  }
  return out;
}

export class EtcdTransaction extends TxStateTransaction {

  constructor(private readonly backend: EtcdBackend, private readonly locks: Locks, private readonly owner: TxOwner) {
    super(new TxState(backend.mirror.root, backend.mirror.rev, backend.maxValueBytes));
    backend.openTransactions++;
  }

  protected get maxValueBytes(): number {
    return this.backend.maxValueBytes;
  }

  protected async _set(path: string, value: Uint8Array, cond: SetConditions): Promise<void> {
    this.tx.write({ op: 'set', path, value, ...cond });
  }

  protected async _create(path: string, value: Uint8Array, flags: CreateFlags): Promise<string> {
    if (flags.ephemeral) await this.owner.ready();
    return this.tx.write({ op: 'create', path, value, sequential: flags.sequential === true, ...(flags.ephemeral ? { owner: this.owner.id } : {}) }) as string;
  }

  protected async _delete(path: string, flags: DeleteFlags): Promise<boolean> {
    return this.tx.write({ op: 'delete', path, recursive: flags.recursive === true, ifVersion: flags.ifVersion }) as boolean;
  }

  protected async _check(path: string, expect: CheckExpect): Promise<void> {
    this.tx.write({ op: 'check', path, ...expect });
  }

  protected async _atomic(op: AtomicOp): Promise<void> {
    this.tx.write(op);
  }

  private end(state: 'committed' | 'aborted', why?: string): void {
    if (this.state !== 'open') return;
    this.state = state;
    this.abortReason = why;
    this.backend.openTransactions--;
    this.owner.txEnded(this);
  }

  /** Ends the transaction from outside (its session ended). */
  kill(why: string): void {
    this.end('aborted', why);
  }

  async commit(options: WriteOptions = {}): Promise<CommitResult> {
    this.checkOpen();
    if (!this.tx.hasWrites) {
      this.end('committed');
      return { revision: this.tx.snapshotRev, replayed: false };
    }
    this.committing = true;
    try {
      const r = await this.run(options);
      this.committing = false;
      this.end('committed');
      return r;
    } catch (e) {
      this.committing = false;
      this.end('aborted', e instanceof Error ? e.message : String(e));
      throw e;
    }
  }

  private async run(options: WriteOptions): Promise<CommitResult> {
    await this.owner.ready();
    return commitTxState(this.backend, this.locks, this.owner.id, this.tx, options);
  }

  async abort(): Promise<void> {
    this.end('aborted', 'aborted by the caller');
  }
}

/**
 * Commits a transaction's state (its snapshot, record and workspace): one Txn
 * whose compares cover what it read; on failure, replay on the new head and
 * again; CONFLICT only when an answer differs. Used by EtcdTransaction and by
 * the XenStore adapter's transactions (xenstore.ts).
 */
export async function commitTxState(backend: EtcdBackend, locks: Locks, session: string, tx: TxState, options: WriteOptions): Promise<CommitResult> {
  const writes = tx.record.flatMap((r) => (r.kind === 'write' ? [r.op] : []));
  const targets = writeTargets(writes);
  const fence = options.fence === undefined ? undefined : typeof options.fence === 'number' ? options.fence : options.fence.token;
  let base = tx.snapshot;
  let baseRev = tx.snapshotRev;
  let ws = tx.ws;
  let replayed = false;
  for (;;) {
    backend.checkOpen();
    if (options.signal?.aborted) throw new LatchkeyError('ABORTED', 'commit aborted', { cause: options.signal.reason });
    const plan = new PlanBuilder(backend.keys, base);
    plan.record(tx.record);
    plan.diff(ws, (o) => o);
    // Lock admission is judged on the mirror's head, whose queue the compares then pin.
    const blocker = locks.admitWrite(session, targets, plan, backend.mirror.rev, fence);
    if (blocker !== undefined) {
      if (options.wait === false) throw new LatchkeyError('LOCKED', `${blocker.path} is locked by session ${blocker.session}`, { path: blocker.path });
      await locks.nextChange(options.signal ?? new AbortController().signal);
    } else if (!plan.empty()) {
      const rev = await backend.send(plan.build(backend.mirror.revKey));
      if (rev !== undefined) return { revision: rev, replayed };
    } else {
      return { revision: baseRev, replayed };
    }
    // Something read moved (or a lock went away): replay on the head.
    backend.validations++;
    const head = backend.mirror.root;
    const headRev = backend.mirror.rev;
    const again = replayAt(tx.record, head, headRev + 1, backend.maxValueBytes);
    if (!again.ok) {
      backend.conflicts++;
      throw new LatchkeyError('CONFLICT', `transaction conflicts at ${again.path}: a value it read or wrote changed`, { path: again.path, info: { index: again.index } });
    }
    if (again.replayed) {
      replayed = true;
      backend.replays++;
    }
    base = head;
    baseRev = headRev;
    ws = again.ws;
  }
}

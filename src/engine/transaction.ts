/**
 * The Transaction object: a TxState (core) bound to a session and the engine.
 * All reads and writes happen on the transaction's private workspace; nothing
 * is visible to anyone else until `commit`.
 */
import type { CommitResult, Stat, WriteOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { AtomicOp } from '../core/ops.js';
import { TxState } from '../core/transaction.js';
import { parentPath, parsePath } from '../core/path.js';
import { mutationBytes, COMMIT_BASE_BYTES } from '../core/commit-size.js';
import type { CheckExpect, CreateFlags, DeleteFlags, SetConditions } from '../edge/args.js';
import { statOf } from '../edge/entry.js';
import { readValueInto, valueLength } from '../core/value.js';
import { TxStateTransaction } from '../edge/tx-state.js';
import type { Engine } from './engine.js';

export interface TxOwner {
  readonly id: string;
  /** Called once when the transaction ends, however it ends. */
  txEnded(tx: TransactionImpl): void;
}

export class TransactionImpl extends TxStateTransaction {
  /** The commit-size measure of the workspace's mutations counted so far, and how many were counted. */
  private bytes = COMMIT_BASE_BYTES;
  private measured = 0;

  constructor(private readonly engine: Engine, private readonly owner: TxOwner) {
    super(new TxState(engine.visibleRoot, engine.visibleRev, engine.maxValueBytes));
    engine.openTransactions++;
    this.unpin = engine.pinSnapshot(engine.visibleRev);
  }

  private readonly unpin: () => void;

  /** Bytes this open transaction holds, roughly: its writes (the commit-size measure) plus 64 per operation recorded. */
  get footprint(): number {
    return this.state === 'open' ? this.bytes + this.tx.opCount * 64 : 0;
  }

  protected get maxValueBytes(): number {
    return this.engine.maxValueBytes;
  }

  /** Transaction.readInto (embedded only): the value straight into `target`, no copy of the store's own. */
  async readInto(path: string, target: Uint8Array): Promise<{ length: number; stat: Stat } | undefined> {
    this.checkOpen();
    parsePath(path);
    if (!(target instanceof Uint8Array)) throw new LatchkeyError('INVALID_ARGUMENT', 'readInto: target must be a Uint8Array');
    const n = this.tx.get(path);
    if (n === undefined) return undefined;
    if (valueLength(n.value) > target.length) {
      throw new LatchkeyError('TOO_LARGE', `readInto: the value at ${path} is ${valueLength(n.value)} bytes, the target ${target.length}`, { path });
    }
    await readValueInto(n.value, target);
    return { length: valueLength(n.value), stat: statOf(n) };
  }

  protected async _set(path: string, value: Uint8Array, cond: SetConditions): Promise<void> {
    this.written(() => this.tx.write({ op: 'set', path, value, ...cond }));
  }

  protected async _create(path: string, value: Uint8Array, flags: CreateFlags): Promise<string> {
    const sequential = flags.sequential === true;
    // A sequential number is reserved now: replay at commit makes the same name (no conflict with other creators).
    const seqNumber = sequential ? this.reserveSeq(path) : undefined;
    return this.written(() => this.tx.write({
      op: 'create', path, value, sequential,
      ...(seqNumber !== undefined ? { seqNumber } : {}),
      ...(flags.ephemeral ? { owner: this.owner.id } : {}),
    })) as string;
  }

  private reserveSeq(path: string): number | undefined {
    if (parsePath(path).length === 0) return undefined; // create('/') fails EXISTS in the workspace
    const parent = parentPath(path);
    return this.engine.reserveSeq(parent, this.tx.ws.get(parent)?.seq ?? 0);
  }

  protected async _delete(path: string, flags: DeleteFlags): Promise<boolean> {
    return this.written(() => this.tx.write({ op: 'delete', path, recursive: flags.recursive === true, ifVersion: flags.ifVersion })) as boolean;
  }

  protected async _check(path: string, expect: CheckExpect): Promise<void> {
    this.tx.write({ op: 'check', path, ...expect });
  }

  /**
   * Runs a write, then checks the paths it actually wrote against the
   * session's guard (grants), and measures what it added: a transaction whose changes
   * already exceed the commit cap can never commit, so it ends here
   * (TOO_LARGE) instead of growing further in memory.
   */
  private written<T>(f: () => T): T {
    const r = f(); // an operation that throws changed nothing
    const muts = this.tx.ws.mutations;
    try {
      this.engine.checkGuard(this.owner.id, muts, this.measured);
    } catch (e) {
      // The write happened in the private workspace: the transaction cannot go on without it.
      this.finish('aborted', e instanceof LatchkeyError ? e.code : 'error');
      throw e;
    }
    for (; this.measured < muts.length; this.measured++) this.bytes += mutationBytes(muts[this.measured]!);
    if (this.bytes > this.engine.maxCommitBytes) {
      this.finish('aborted', 'TOO_LARGE');
      this.engine.checkCommitSize(muts, this.bytes);
    }
    return r;
  }

  protected async _atomic(op: AtomicOp): Promise<void> {
    this.written(() => this.tx.write(op));
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
    this.unpin();
    this.owner.txEnded(this);
  }
}

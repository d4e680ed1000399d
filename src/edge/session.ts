/**
 * The API edge every backend sits behind (abstract-level's `put()` →
 * `_put()`): the public methods of a session and of a transaction check the
 * call once — open, path, value bytes and size, options shapes, multi ops —
 * and hand a backend's narrow `_method` arguments it can trust. The
 * embedded engine (engine/session.ts, engine/transaction.ts) and the remote
 * client (client/session.ts, client/transaction.ts) implement only those;
 * a new backend does the same, and the contract suite checks the results.
 */
import type {
  CommitResult, CreateOptions, DeleteOptions, Entry, Listing, ListOptions, Lock, LockInfo, LockOptions, MultiOp, MultiResult,
  Reader, Session, SetOptions, Transaction, TransactionOptions, Value, WriteOptions,
} from '../api.js';
import { invalidArgument } from '../core/errors.js';
import { parsePath } from '../core/path.js';
import { type RetryCounters, type RetryPolicy, runTransaction } from '../util/retry.js';
import { type AtomicOp, checkAtomicArgs } from '../core/ops.js';
import {
  CHECK_EXPECT, CREATE_FLAGS, type CheckExpect, type CheckedMultiOp, type CreateFlags, DELETE_FLAGS, type DeleteFlags,
  SET_CONDITIONS, type SetConditions, checkOptions, definedFields, listArgs, multiArgs, toBytes,
} from './args.js';

/**
 * Runs a public method's checks and its narrow method: a failed check
 * rejects the promise (a public method never throws synchronously), and
 * no async wrapper adds ticks to the path of every call.
 */
function enter<T>(f: () => Promise<T>): Promise<T> {
  try {
    return f();
  } catch (e) {
    return Promise.reject(e);
  }
}

/** The reads a session and a transaction share, checked the same way. */
abstract class ReaderEdge implements Reader {
  /** Throws when calls can no longer be made (CLOSED, SESSION_EXPIRED; a transaction no longer open). */
  protected abstract checkOpen(): void;
  /** The largest value this backend accepts, in bytes. */
  protected abstract get maxValueBytes(): number;

  /** `segs`: the path's segments, parsed by the check (a backend may ignore them). */
  protected abstract _get(path: string, segs: readonly string[]): Promise<Entry | undefined>;
  protected abstract _exists(path: string): Promise<boolean>;
  protected abstract _list(path: string, options: ListOptions): Promise<Listing>;

  get(path: string): Promise<Entry | undefined> {
    // enter() inlined: the closure was a tenth of an embedded get.
    try {
      this.checkOpen();
      return this._get(path, parsePath(path));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  exists(path: string): Promise<boolean> {
    return enter(() => {
      this.checkOpen();
      parsePath(path);
      return this._exists(path);
    });
  }

  list(path: string, options: ListOptions = {}): Promise<Listing> {
    return enter(() => {
      this.checkOpen();
      parsePath(path);
      return this._list(path, listArgs(options));
    });
  }
}

export abstract class SessionEdge extends ReaderEdge implements Session {
  abstract readonly id: string;
  abstract readonly name: string;
  abstract readonly closed: boolean;

  /** `segs`: the path's segments, parsed by the check (a backend may ignore them). */
  protected abstract _set(path: string, value: Uint8Array, cond: SetConditions, options: WriteOptions, segs?: readonly string[]): Promise<number>;
  protected abstract _create(path: string, value: Uint8Array, flags: CreateFlags, options: WriteOptions): Promise<string>;
  protected abstract _delete(path: string, flags: DeleteFlags, options: WriteOptions): Promise<boolean>;
  protected abstract _multi(ops: CheckedMultiOp[], options: WriteOptions): Promise<MultiResult>;
  /** An atomic op, checked: the new integer (add, min, max), the commit's revision (append), created or not (setIfAbsent). */
  protected abstract _atomic(op: AtomicOp, options: WriteOptions): Promise<number | boolean>;
  protected abstract _begin(): Transaction;
  /** transaction()'s backoff for this transport, and where it counts what it did (stats()). */
  protected abstract readonly retryPolicy: RetryPolicy;
  protected abstract readonly retryCounters: RetryCounters;
  protected abstract _lock(path: string, options: LockOptions): Promise<Lock>;
  abstract locks(): LockInfo[];
  abstract close(): Promise<void>;

  set(path: string, value: Value, options: SetOptions = {}): Promise<number> {
    // enter() inlined, as in get.
    try {
      this.checkOpen();
      const segs = parsePath(path);
      checkOptions(options, 'set options');
      return this._set(path, toBytes(value, this.maxValueBytes, path), definedFields(options, SET_CONDITIONS), options, segs);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  create(path: string, value?: Value, options: CreateOptions = {}): Promise<string> {
    return enter(() => {
      this.checkOpen();
      parsePath(path);
      checkOptions(options, 'create options');
      return this._create(path, toBytes(value, this.maxValueBytes, path), definedFields(options, CREATE_FLAGS), options);
    });
  }

  delete(path: string, options: DeleteOptions = {}): Promise<boolean> {
    return enter(() => {
      this.checkOpen();
      parsePath(path);
      checkOptions(options, 'delete options');
      return this._delete(path, definedFields(options, DELETE_FLAGS), options);
    });
  }

  multi(ops: readonly MultiOp[], options: WriteOptions = {}): Promise<MultiResult> {
    return enter(() => {
      this.checkOpen();
      checkOptions(options, 'multi options');
      return this._multi(multiArgs(ops, this.maxValueBytes), options);
    });
  }

  begin(): Transaction {
    this.checkOpen();
    return this._begin();
  }

  add(path: string, delta: number, options: WriteOptions = {}): Promise<number> {
    return this.atomic(path, () => ({ op: 'add', path, delta }), options) as Promise<number>;
  }

  min(path: string, operand: number, options: WriteOptions = {}): Promise<number> {
    return this.atomic(path, () => ({ op: 'min', path, operand }), options) as Promise<number>;
  }

  max(path: string, operand: number, options: WriteOptions = {}): Promise<number> {
    return this.atomic(path, () => ({ op: 'max', path, operand }), options) as Promise<number>;
  }

  append(path: string, value: Value, options: WriteOptions = {}): Promise<number> {
    return this.atomic(path, () => ({ op: 'append', path, value: toBytes(value, this.maxValueBytes, path) }), options) as Promise<number>;
  }

  setIfAbsent(path: string, value: Value, options: WriteOptions = {}): Promise<boolean> {
    return this.atomic(path, () => ({ op: 'setIfAbsent', path, value: toBytes(value, this.maxValueBytes, path) }), options) as Promise<boolean>;
  }

  /** The checks of every atomic op, in the order of the other writes': open, path, value, operand, options. */
  private atomic(path: string, make: () => AtomicOp, options: WriteOptions): Promise<number | boolean> {
    return enter(() => {
      this.checkOpen();
      parsePath(path);
      const op = make();
      checkAtomicArgs(op);
      checkOptions(options, `${op.op} options`);
      return this._atomic(op, options);
    });
  }

  transaction<T>(fn: (tx: Transaction) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    return runTransaction(() => this.begin(), fn, options, this.retryPolicy, this.retryCounters, (path, o) => this._lock(path, o));
  }

  lock(path: string, options: LockOptions = {}): Promise<Lock> {
    return enter(() => {
      this.checkOpen();
      parsePath(path);
      checkOptions(options, 'lock options');
      if (options.robust !== undefined && typeof options.robust !== 'boolean') throw invalidArgument('lock option robust must be a boolean');
      return this._lock(path, options);
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

type TxWriteOptions<T> = Omit<T, keyof WriteOptions>;

export abstract class TransactionEdge extends ReaderEdge implements Transaction {
  abstract readonly snapshotRevision: number;
  abstract readonly state: 'open' | 'committed' | 'aborted';

  protected abstract _set(path: string, value: Uint8Array, cond: SetConditions): Promise<void>;
  protected abstract _create(path: string, value: Uint8Array, flags: CreateFlags): Promise<string>;
  protected abstract _delete(path: string, flags: DeleteFlags): Promise<boolean>;
  protected abstract _check(path: string, expect: CheckExpect): Promise<void>;
  /** An atomic op, checked; answers nothing (its result would be a read). */
  protected abstract _atomic(op: AtomicOp): Promise<void>;
  abstract commit(options?: WriteOptions): Promise<CommitResult>;
  abstract abort(): Promise<void>;

  set(path: string, value: Value, options: TxWriteOptions<SetOptions> = {}): Promise<void> {
    return enter(() => {
      this.checkOpen();
      parsePath(path);
      checkOptions(options, 'set options');
      return this._set(path, toBytes(value, this.maxValueBytes, path), definedFields(options, SET_CONDITIONS));
    });
  }

  create(path: string, value?: Value, options: TxWriteOptions<CreateOptions> = {}): Promise<string> {
    return enter(() => {
      this.checkOpen();
      parsePath(path);
      checkOptions(options, 'create options');
      return this._create(path, toBytes(value, this.maxValueBytes, path), definedFields(options, CREATE_FLAGS));
    });
  }

  delete(path: string, options: TxWriteOptions<DeleteOptions> = {}): Promise<boolean> {
    return enter(() => {
      this.checkOpen();
      parsePath(path);
      checkOptions(options, 'delete options');
      return this._delete(path, definedFields(options, DELETE_FLAGS));
    });
  }

  add(path: string, delta: number): Promise<void> {
    return this.atomic(path, () => ({ op: 'add', path, delta }));
  }

  min(path: string, operand: number): Promise<void> {
    return this.atomic(path, () => ({ op: 'min', path, operand }));
  }

  max(path: string, operand: number): Promise<void> {
    return this.atomic(path, () => ({ op: 'max', path, operand }));
  }

  append(path: string, value: Value): Promise<void> {
    return this.atomic(path, () => ({ op: 'append', path, value: toBytes(value, this.maxValueBytes, path) }));
  }

  setIfAbsent(path: string, value: Value): Promise<void> {
    return this.atomic(path, () => ({ op: 'setIfAbsent', path, value: toBytes(value, this.maxValueBytes, path) }));
  }

  private atomic(path: string, make: () => AtomicOp): Promise<void> {
    return enter(() => {
      this.checkOpen();
      parsePath(path);
      const op = make();
      checkAtomicArgs(op);
      return this._atomic(op);
    });
  }

  check(path: string, expect: CheckExpect): Promise<void> {
    return enter(() => {
      this.checkOpen();
      parsePath(path);
      if (expect === null || typeof expect !== 'object') throw invalidArgument('check: expectations must be an object');
      return this._check(path, definedFields(expect, CHECK_EXPECT));
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.abort();
  }
}

/**
 * The public interfaces. Every Store implementation satisfies these: the
 * embedded engine (in memory or on disk) and the remote client. One contract
 * test suite (test/contract/) runs against each.
 */
import type { ErrorCode } from './core/errors.js';

/** Values are bytes; strings are stored as their UTF-8 encoding. */
export type Value = string | Uint8Array;

export interface Stat {
  /** Revision that created the node. */
  readonly createRev: number;
  /** Revision of the last write to the node's value. */
  readonly modRev: number;
  /** Writes to the value since creation (1 after create). */
  readonly version: number;
  /** Revision of the last change to the list of children. */
  readonly childrenRev: number;
  readonly numChildren: number;
  /** Session id owning the node when it is ephemeral. */
  readonly ephemeralOwner?: string;
  /** Access-control entries, when set (XenStore permissions). */
  readonly perms?: readonly string[];
}

export interface Entry {
  readonly path: string;
  readonly value: Uint8Array;
  readonly stat: Stat;
  /** The store revision this read reflects. */
  readonly revision: number;
  /** The value decoded as UTF-8. */
  text(): string;
  /** The value parsed as JSON. */
  json<T = unknown>(): T;
}

/** Sorted child names, with the revision they reflect. */
export type Listing = string[] & {
  readonly revision: number;
  /** True when `limit` cut the listing short: continue with `after: listing.at(-1)`. */
  readonly more: boolean;
};

export interface ListOptions {
  /** Only names sorting after this one (for paging). */
  after?: string;
  limit?: number;
}

/** Anything that identifies a held lock for fencing: the lock or its token. */
export type Fence = number | { readonly token: number };

export interface WriteOptions {
  /** Fail LOCK_LOST unless this lock is still held by the writing session. */
  fence?: Fence;
  /** Fail LOCKED at once instead of waiting when another session's lock covers the path. */
  wait?: boolean;
  signal?: AbortSignal;
}

export interface SetOptions extends WriteOptions {
  ifVersion?: number;
  ifModRev?: number;
  ifAbsent?: boolean;
}

export interface CreateOptions extends WriteOptions {
  /** Delete the node when the creating session ends. */
  ephemeral?: boolean;
  /** Append a zero-padded, increasing counter to the name. */
  sequential?: boolean;
}

export interface DeleteOptions extends WriteOptions {
  recursive?: boolean;
  ifVersion?: number;
}

export type MultiOp =
  | { op: 'set'; path: string; value: Value; ifVersion?: number; ifModRev?: number; ifAbsent?: boolean }
  | { op: 'create'; path: string; value?: Value; ephemeral?: boolean; sequential?: boolean }
  | { op: 'delete'; path: string; recursive?: boolean; ifVersion?: number }
  | { op: 'check'; path: string; version?: number; modRev?: number; exists?: boolean };

export interface MultiResult {
  readonly revision: number;
  /** Per op: the created path for create, whether a node was deleted for delete, undefined otherwise. */
  readonly results: ReadonlyArray<string | boolean | undefined>;
}

/** Reads, the same on a store, a session and a transaction. */
export interface Reader {
  get(path: string): Promise<Entry | undefined>;
  exists(path: string): Promise<boolean>;
  list(path: string, options?: ListOptions): Promise<Listing>;
}

/**
 * Synchronous reads on one snapshot of an embedded store (`store.view()`):
 * every read answers at once, from the revision the view was taken at,
 * whatever commits meanwhile. Disposable (`using v = store.view()`): a view
 * pins its snapshot's tree in memory, and the value files that tree
 * references on disk (compaction waits), until it is closed; reads after close
 * fail CLOSED, as do reads once the store is closed. Paths and list options
 * are checked as the async reads check them.
 */
export interface ReadView extends Disposable {
  /** The revision every read of this view reflects. */
  readonly revision: number;
  readonly closed: boolean;
  get(path: string): Entry | undefined;
  exists(path: string): boolean;
  /** The node's stat, without its value. */
  stat(path: string): Stat | undefined;
  /** Like Reader.list; NOT_FOUND when the node is absent. */
  list(path: string, options?: ListOptions): Listing;
  close(): void;
}

/**
 * Atomic operations: the new value is computed from the node as it is when
 * the commit applies, not from anything the caller read, so they never
 * conflict. `add`, `min` and `max` work on a value that is a decimal
 * integer within ±(2⁵³−1), written back in decimal ("42"); an absent node is
 * created (add: at 0 + delta; min/max: at the operand) and an empty value
 * counts as 0. Any other value — or a sum leaving that range — fails
 * INVALID_ARGUMENT and writes nothing. A node left unchanged (max below the
 * value, add 0) is not rewritten.
 */
export interface AtomicWriter {
  /** Adds `delta` (a safe integer, may be negative); returns the new value. */
  add(path: string, delta: number, options?: WriteOptions): Promise<number>;
  /** Lowers the value to `operand` if it is greater; returns the new value. */
  min(path: string, operand: number, options?: WriteOptions): Promise<number>;
  /** Raises the value to `operand` if it is smaller; returns the new value. */
  max(path: string, operand: number, options?: WriteOptions): Promise<number>;
  /** Appends bytes to the value (creating the node); returns the commit's revision. TOO_LARGE past the value limit. */
  append(path: string, value: Value, options?: WriteOptions): Promise<number>;
  /** Creates the node with `value` unless it exists; returns whether it did (never CONFLICT, unlike `set` with `ifAbsent`). */
  setIfAbsent(path: string, value: Value, options?: WriteOptions): Promise<boolean>;
}

/** Writes outside a transaction: each is one commit, and returns its revision. */
export interface Writer extends AtomicWriter {
  set(path: string, value: Value, options?: SetOptions): Promise<number>;
  /** Returns the path created (with the counter appended when sequential). */
  create(path: string, value?: Value, options?: CreateOptions): Promise<string>;
  /** Returns whether a node was deleted. */
  delete(path: string, options?: DeleteOptions): Promise<boolean>;
  multi(ops: readonly MultiOp[], options?: WriteOptions): Promise<MultiResult>;
}

export interface CommitResult {
  /** Revision of the commit; for a read-only transaction, the snapshot's. */
  readonly revision: number;
  /** True when validation failed and replay committed the transaction. */
  readonly replayed: boolean;
}

export interface Transaction extends AsyncDisposable {
  /** Revision of the snapshot the transaction reads. */
  readonly snapshotRevision: number;
  readonly state: 'open' | 'committed' | 'aborted';
  get(path: string): Promise<Entry | undefined>;
  /**
   * Reads a node's value straight into `target` and answers its length and
   * stat, or undefined when the node is absent. Embedded: a value on disk
   * with one positional read into it, checked, and not kept in the store's
   * value cache; a cached one with one copy. Remote: a `get` whose reply's
   * value the client reads from the socket into `target` (no buffer of the
   * reply's size); `target` belongs to the call until it settles. Optional:
   * a Transaction implemented elsewhere may not have it. `target` must hold the value (TOO_LARGE otherwise);
   * bytes past the value's length are left as they were. A read like `get`
   * (recorded, validated at commit). What a BigFile handle loads blocks
   * with (docs/bigfile.md).
   */
  readInto?(path: string, target: Uint8Array): Promise<{ length: number; stat: Stat } | undefined>;
  /** True on a remote transaction: every read is a round trip (a BigFile handle pipelines its loads rather than reading one block at a time). */
  readonly remote?: boolean;
  exists(path: string): Promise<boolean>;
  list(path: string, options?: ListOptions): Promise<Listing>;
  set(path: string, value: Value, options?: Omit<SetOptions, keyof WriteOptions>): Promise<void>;
  create(path: string, value?: Value, options?: Omit<CreateOptions, keyof WriteOptions>): Promise<string>;
  delete(path: string, options?: Omit<DeleteOptions, keyof WriteOptions>): Promise<boolean>;
  check(path: string, expect: { version?: number; modRev?: number; exists?: boolean }): Promise<void>;
  /**
   * Atomic operations (see AtomicWriter). In a transaction they answer
   * nothing, record no read and never make the transaction conflict: at
   * commit they apply to the head as it is then. Reading the node afterwards
   * in the same transaction sees the result, and that read validates at
   * commit like any other.
   */
  add(path: string, delta: number): Promise<void>;
  min(path: string, operand: number): Promise<void>;
  max(path: string, operand: number): Promise<void>;
  append(path: string, value: Value): Promise<void>;
  setIfAbsent(path: string, value: Value): Promise<void>;
  /** Validates (and if needed replays) against the head; CONFLICT when a response would differ. */
  commit(options?: WriteOptions): Promise<CommitResult>;
  abort(): Promise<void>;
}

export interface TransactionOptions {
  /** No new run of `fn` starts after this many ms from the call (default 5000). */
  timeoutMs?: number;
  /** At most this many re-runs of `fn` after CONFLICT (default: bounded by timeoutMs only). */
  retries?: number;
  signal?: AbortSignal;
}

export type LockMode = 'exclusive' | 'shared';

export interface LockOptions {
  mode?: LockMode;
  /** Wait for the lock (default true); false → LOCKED at once when it is held. */
  wait?: boolean;
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Default true: a holder whose session ends while holding the lock leaves
   * an owner-died mark (the next holder is told `ownerDied`, across a
   * restart too). False for a hold that protects nothing a death could leave
   * half done, such as a transaction's turn (transaction() takes one on a
   * path it keeps conflicting on): its end, however it comes, marks nothing,
   * and a restart forgets it. A non-robust grant still reports a mark left by
   * a robust holder, and does not clear it: its `markConsistent()` is a
   * no-op (it protects nothing, so it cannot vouch for the data).
   */
  robust?: boolean;
}

export interface Lock extends AsyncDisposable {
  readonly path: string;
  readonly mode: LockMode;
  /** Fencing token: strictly increasing across all grants of the store. */
  readonly token: number;
  /**
   * True when a previous holder's session ended while holding it (EOWNERDEAD),
   * also across a server crash, and no holder since called `markConsistent()`.
   */
  readonly ownerDied: boolean;
  /**
   * Aborts when this lock is lost: reason LatchkeyError LOCK_LOST, or
   * SESSION_EXPIRED when a remote client gave up its lease (it does so
   * before the server can grant the lock to anyone else).
   */
  readonly signal: AbortSignal;
  /**
   * The protected data is whole again (pthread_mutex_consistent): the
   * owner-died mark at and below this lock's path is cleared, so the next
   * holder is not told ownerDied. No-op when this grant was not ownerDied.
   * Releasing without it passes ownerDied on.
   */
  markConsistent(): Promise<void>;
  /**
   * The protected data cannot be repaired: every later request for a lock
   * overlapping this path fails NOT_RECOVERABLE until `store.resetLock`.
   * This lock stays held until released.
   */
  markUnrecoverable(): Promise<void>;
  readonly held: boolean;
  upgrade(options?: { wait?: boolean; timeoutMs?: number; signal?: AbortSignal }): Promise<void>;
  downgrade(): Promise<void>;
  /** Idempotent. */
  release(): Promise<void>;
}

export interface LockInfo {
  readonly path: string;
  readonly mode: LockMode;
  readonly session: string;
  readonly token: number;
  readonly since: number;
  /** In `lockTable()`: how many waiting requests this lock holds up. */
  readonly waiters?: number;
  /** In `lockTable()`: true when it was granted owner-died and not yet marked consistent. */
  readonly ownerDied?: boolean;
}

export interface LockWaiterInfo {
  readonly path: string;
  readonly mode: LockMode | 'write' | 'upgrade';
  readonly session: string;
  readonly since: number;
}

/** One open session, as `listSessions` (and the console, and `latchkey top`) show it. */
export interface SessionInfo {
  readonly id: string;
  readonly name: string;
  /** When it opened (ms since the epoch). */
  readonly since: number;
  /** How its client reaches the server: 'unix', 'tcp', 'xenstore', or 'embedded' (in the server's process). */
  readonly transport: string;
  /** The client's address (TCP: host:port). */
  readonly address?: string;
  /** Its heartbeat lease in ms (TCP); absent when it has none. */
  readonly leaseMs?: number;
  /** Locks it holds and lock requests it has waiting (paths the caller may read). */
  readonly locksHeld: number;
  readonly locksWaiting: number;
  /** Ephemeral nodes it owns. */
  readonly ephemerals: number;
}

export interface LockTableInfo {
  readonly held: readonly LockInfo[];
  readonly waiting: readonly LockWaiterInfo[];
}

export interface SessionOptions {
  name?: string;
}

export interface WatchOptions {
  recursive?: boolean;
  /** Deliver events from this revision on (inclusive), from the history window. */
  fromRevision?: number;
  signal?: AbortSignal;
}

export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly path: string;
  readonly revision: number;
  readonly value?: Uint8Array;
}

export interface StoreStats {
  readonly revision: number;
  readonly nodes: number;
  readonly commits: number;
  /** Transaction commits that were checked against a moved head. */
  readonly validations: number;
  /** Of those, commits that needed replay (a witness moved) and still committed. */
  readonly replays: number;
  /** CONFLICTs returned by commit. */
  readonly conflicts: number;
  /**
   * `transaction()` calls (txRuns), runs of their fn (txAttempts), re-runs
   * after CONFLICT (txRetries), calls that gave up (txGaveUp) and turns
   * taken on a path a call kept conflicting at (txTurns). Remote: those of
   * this client's process, whatever the server says.
   */
  readonly txRuns?: number;
  readonly txAttempts?: number;
  readonly txRetries?: number;
  readonly txGaveUp?: number;
  readonly txTurns?: number;
  readonly openTransactions: number;
  readonly sessions: number;
  /** Group syncs (fsyncs of the log) so far, and commits per sync on average. */
  readonly groupSyncs?: number;
  readonly commitsPerSync?: number;
  /** Of the commits, plain sets applied in a burst (one mutable path copy shared by the sets of a group; docs/architecture.md). */
  readonly burstCommits?: number;
  /**
   * The value cache of a store with a data directory (values above the
   * inline threshold live in value files): reads served from memory, reads
   * that went to disk, values evicted, bytes held and the limit
   * (`open(dir, { cacheBytes })`). Details in `storage.values`.
   */
  readonly cacheHits?: number;
  readonly cacheMisses?: number;
  readonly cacheEvictions?: number;
  readonly cacheBytes?: number;
  readonly cacheLimit?: number;
  readonly readOnly?: string;
  readonly [key: string]: unknown;
}

/** A session: the unit of ownership (locks, ephemeral nodes, transactions) and of death. */
export interface Session extends Reader, Writer, AsyncDisposable {
  readonly id: string;
  readonly name: string;
  readonly closed: boolean;
  begin(): Transaction;
  transaction<T>(fn: (tx: Transaction) => Promise<T>, options?: TransactionOptions): Promise<T>;
  lock(path: string, options?: LockOptions): Promise<Lock>;
  locks(): LockInfo[];
  close(): Promise<void>;
}

/** Element types of a BigArray (C order, little-endian); 64-bit integers are bigint. */
export type DType = 'int8' | 'int16' | 'int32' | 'int64' | 'uint8' | 'uint16' | 'uint32' | 'uint64' | 'float32' | 'float64';

/** The typed array a dtype reads as. */
export type TypedArrayOf<D extends DType> =
  D extends 'int8' ? Int8Array : D extends 'int16' ? Int16Array : D extends 'int32' ? Int32Array : D extends 'int64' ? BigInt64Array :
  D extends 'uint8' ? Uint8Array : D extends 'uint16' ? Uint16Array : D extends 'uint32' ? Uint32Array : D extends 'uint64' ? BigUint64Array :
  D extends 'float32' ? Float32Array : Float64Array;

export type AnyTypedArray = Int8Array | Int16Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array | Uint32Array | BigUint64Array | Float32Array | Float64Array;

export interface BigFileOptions {
  /** Bytes per block, each stored as one node (default 1 MiB; at most the store's value limit). Fixed at creation. */
  blockSize?: number;
  /** Create the file when missing (default true); false → NOT_FOUND. */
  create?: boolean;
}

export interface BigFileHandleOptions {
  /** The page cache's bound in bytes (default 64 MiB); dirty pages count towards it. */
  cacheBytes?: number;
  /** Uncommitted bytes a handle may hold (default the least of 32 MiB, cacheBytes / 2 and 4,096 blocks; at most cacheBytes / 2): past it write() fails TOO_LARGE. */
  maxDirtyBytes?: number;
}

export interface BigFileHandleStats {
  readonly cachedBytes: number;
  readonly dirtyBytes: number;
  readonly pages: number;
  /** Blocks loaded from the store (loadblk) and stored to it (storeblk) by this handle. */
  readonly loads: number;
  readonly stores: number;
  /** Cached pages dropped because another client's commit changed their block. */
  readonly invalidations: number;
  /** Times the whole cache was dropped because the change feed broke (watch error). */
  readonly fullDrops: number;
}

/**
 * A handle on a BigFile: its own page cache over one snapshot of the file.
 * Reads see that snapshot plus this handle's own writes until the next
 * commit(), abort() or refresh(); other clients' commits are applied (their
 * stale pages dropped) at those boundaries only.
 */
export interface BigFileHandle extends AsyncDisposable {
  readonly path: string;
  readonly blockSize: number;
  /** The size as this handle sees it (its snapshot plus its own writes and truncation). */
  readonly size: number;
  /** The store revision of the snapshot the handle reads. */
  readonly snapshotRevision: number;
  /** Bytes [offset, offset + length) clipped to the size; loads only the blocks it needs. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Like read, into `target` (up to its length, clipped to the size) with no buffer of its own: the number of bytes read. */
  readInto(offset: number, target: Uint8Array): Promise<number>;
  /** Marks pages dirty (grows the file past its end); nothing is stored until commit(). BUSY during commit. */
  write(offset: number, data: Uint8Array): void;
  /** Sets the size; blocks past it are freed at commit, and the bytes read as zeros if the file grows again. */
  truncate(size: number): Promise<void>;
  /** Stores the dirty blocks in one transaction. CONFLICT (info.blocks) when another client changed one of them: nothing is stored, and the handle is reset as by abort(). */
  commit(): Promise<{ readonly revision: number }>;
  /** Discards this handle's writes and moves to the current state. */
  abort(): Promise<void>;
  /** Moves to the current state (applies other clients' commits). INVALID_ARGUMENT with uncommitted writes. */
  refresh(): Promise<void>;
  stats(): BigFileHandleStats;
  /** Discards uncommitted writes and releases the snapshot. Idempotent. */
  close(): Promise<void>;
}

export interface BigFileInfo {
  readonly kind: 'bigfile' | 'bigarray';
  readonly blockSize: number;
  readonly size: number;
  readonly dtype?: DType;
  readonly shape?: readonly number[];
}

export interface BigFile {
  readonly path: string;
  readonly blockSize: number;
  open(options?: BigFileHandleOptions): Promise<BigFileHandle>;
  /** The committed metadata now. */
  info(): Promise<BigFileInfo>;
}

export interface BigArrayOptions extends BigFileHandleOptions {
  /** Required when creating; when the array exists it must match (or be omitted). */
  dtype?: DType;
  /** Required when creating (its first axis is the starting row count, usually 0); later dims must match. */
  shape?: readonly number[];
  blockSize?: number;
  create?: boolean;
}

/**
 * A typed N-dimensional array in C order over a BigFile, growing along its
 * first axis, with its own handle (snapshot, cache, commit as BigFileHandle).
 */
export interface BigArray<D extends DType = DType> extends AsyncDisposable {
  readonly path: string;
  readonly dtype: D;
  /** Current shape as this handle sees it (rows first). */
  readonly shape: readonly number[];
  readonly handle: BigFileHandle;
  /** Appends whole rows (a length that is a multiple of the row's elements). */
  append(data: TypedArrayOf<D>): Promise<void>;
  /** Rows [start, end) as a fresh typed array (C order); copies only the blocks they touch. */
  get(start: number, end: number): Promise<TypedArrayOf<D>>;
  /** Overwrites whole rows from `row` on (within the current rows). */
  set(row: number, data: TypedArrayOf<D>): void;
  /** Streams the rows in chunks of `rows` (default: about 1 MiB), reading the handle's snapshot. */
  chunks(options?: { rows?: number; start?: number; end?: number }): AsyncIterable<TypedArrayOf<D>>;
  commit(): Promise<{ readonly revision: number }>;
  abort(): Promise<void>;
  refresh(): Promise<void>;
  close(): Promise<void>;
}

export interface Store extends Reader, Writer, AsyncDisposable {
  /** The newest revision visible to readers. */
  readonly revision: number;
  /**
   * A synchronous read view on the newest published revision. Embedded
   * stores (`open()`) have it; a remote store (`connect()`) does not, its
   * reads cross a socket and cannot answer synchronously (undefined there).
   */
  view?(): ReadView;
  begin(): Transaction;
  transaction<T>(fn: (tx: Transaction) => Promise<T>, options?: TransactionOptions): Promise<T>;
  session(options?: SessionOptions): Session;
  lock(path: string, options?: LockOptions): Promise<Lock>;
  lockTable(): LockTableInfo;
  /**
   * An operator's reset: clears the unrecoverable marks and owner-died
   * taints at and below `path` (a mark above it stays). Locks held are not
   * touched.
   */
  resetLock(path: string): Promise<void>;
  watch(path: string, options?: WatchOptions): AsyncIterable<WatchEvent>;
  snapshot(): Promise<void>;
  stats(): StoreStats;
  /** A paged big file stored as blocks under `path` (created when missing); see docs/bigfile.md. */
  bigFile(path: string, options?: BigFileOptions): Promise<BigFile>;
  /** A typed array over a big file at `path`, with its own handle; see docs/bigfile.md. */
  bigArray<D extends DType = DType>(path: string, options?: BigArrayOptions & { dtype?: D }): Promise<BigArray<D>>;
  close(): Promise<void>;
}

export type { ErrorCode };

/**
 * Every message of the protocol, as schemas (checked on receipt) from which
 * the TypeScript types are inferred: what the code compiles against is what
 * the decoder lets through.
 *
 * `requests` is the one table of operations: `Record<op, {args, result}>`.
 * The server's dispatcher is typed `{ [K in RequestOp]: Handler<K> }`, so an
 * operation added here fails to compile until it is handled, and the client
 * checks each reply against the result schema of the op it sent.
 *
 * Handles (transactions, locks, watches, extra sessions) are numbers chosen
 * by the client, unique on its connection. Choosing them client-side lets a
 * client pipeline `begin` and the transaction's first operations without
 * waiting for a reply, and name a lock in `cancel` before it is granted.
 */
import { ErrorCodes, LatchkeyError, isErrorCode } from '../core/errors.js';
import {
  type Infer, type Schema, anyMap, arrayOf, bool, bytes, int, literal, nil, nullable, num, object, opt, str, tagged, uint, union,
} from './schema.js';

export const PROTOCOL_MAGIC = 'latchkey';
export const PROTOCOL_VERSION = 1;
export const SUPPORTED_VERSIONS: readonly number[] = [PROTOCOL_VERSION];

// ---------------------------------------------------------------- pieces

// What the server sends is read loosely (unknown fields kept): a newer server may add fields.
const loose = { loose: true };

const stat = object({
  createRev: uint, modRev: uint, version: uint, childrenRev: uint, numChildren: uint, ephemeralOwner: opt(str),
}, loose);
const entry = object({ path: str, value: bytes, stat, revision: uint }, loose);
export type WireEntry = Infer<typeof entry>;
export type WireStat = Infer<typeof stat>;

const listing = object({ names: arrayOf(str), more: bool, revision: uint }, loose);
const lockMode = literal('exclusive', 'shared');

export const wireMultiOp = tagged('op', {
  set: object({ op: literal('set'), path: str, value: bytes, ifVersion: opt(uint), ifModRev: opt(uint), ifAbsent: opt(bool) }),
  create: object({ op: literal('create'), path: str, value: opt(bytes), ephemeral: opt(bool), sequential: opt(bool) }),
  delete: object({ op: literal('delete'), path: str, recursive: opt(bool), ifVersion: opt(uint) }),
  check: object({ op: literal('check'), path: str, version: opt(uint), modRev: opt(uint), exists: opt(bool) }),
});
export type WireMultiOp = Infer<typeof wireMultiOp>;

const lockInfo = object({ path: str, mode: lockMode, session: str, token: uint, since: num, waiters: opt(uint) }, loose);
const sessionInfo = object({
  id: str, name: str, since: num, transport: str, address: opt(str), leaseMs: opt(uint),
  locksHeld: uint, locksWaiting: uint, ephemerals: uint,
}, loose);
const waiterInfo = object({ path: str, mode: literal('exclusive', 'shared', 'write', 'upgrade'), session: str, since: num }, loose);

export const wireEvent = object({ type: literal('put', 'delete'), path: str, revision: uint, value: opt(bytes) }, loose);
export type WireEvent = Infer<typeof wireEvent>;

export const wireError = object({ code: str, message: str, path: opt(str), info: opt(anyMap) }, loose);
export type WireError = Infer<typeof wireError>;

const limits = object({
  maxFrame: uint, maxValue: uint, maxInFlight: uint, maxTransactions: uint, maxTxOps: uint,
  maxLocks: uint, maxWatches: uint, maxWatchQueue: uint, maxSessions: uint, maxConnections: uint,
}, loose);

// Arguments shared by writes outside a transaction.
const fence = opt(uint);
const wait = opt(bool);

// ---------------------------------------------------------------- the table

function op<A, R>(args: Schema<A>, result: Schema<R>): { readonly args: Schema<A>; readonly result: Schema<R> } {
  return { args, result };
}

/**
 * `tx` on a read or write runs it inside that open transaction; without it the
 * read sees the head and the write is its own commit. `fence`, `wait` apply
 * to commits only (outside a transaction, or on `commit`).
 */
export const requests = {
  get: op(object({ path: str, tx: opt(uint) }), nullable(entry)),
  exists: op(object({ path: str, tx: opt(uint) }), bool),
  list: op(object({ path: str, after: opt(str), limit: opt(uint), tx: opt(uint) }), listing),
  /** Result: the commit's revision, or nil inside a transaction. */
  set: op(object({ path: str, value: bytes, ifVersion: opt(uint), ifModRev: opt(uint), ifAbsent: opt(bool), fence, wait, tx: opt(uint) }), nullable(uint)),
  create: op(object({ path: str, value: opt(bytes), ephemeral: opt(bool), sequential: opt(bool), fence, wait, tx: opt(uint) }), str),
  delete: op(object({ path: str, recursive: opt(bool), ifVersion: opt(uint), fence, wait, tx: opt(uint) }), bool),
  check: op(object({ path: str, tx: uint, version: opt(uint), modRev: opt(uint), exists: opt(bool) }), nil),
  /**
   * Atomic operations (they never conflict). Results: the new integer (add,
   * min, max), the commit's revision (append), whether the node was created
   * (setIfAbsent); nil inside a transaction.
   */
  add: op(object({ path: str, delta: int, fence, wait, tx: opt(uint) }), nullable(int)),
  min: op(object({ path: str, operand: int, fence, wait, tx: opt(uint) }), nullable(int)),
  max: op(object({ path: str, operand: int, fence, wait, tx: opt(uint) }), nullable(int)),
  append: op(object({ path: str, value: bytes, fence, wait, tx: opt(uint) }), nullable(uint)),
  setIfAbsent: op(object({ path: str, value: bytes, fence, wait, tx: opt(uint) }), nullable(bool)),
  multi: op(object({ ops: arrayOf(wireMultiOp), fence, wait }), object({ revision: uint, results: arrayOf(union(union(str, bool, 'string or boolean'), nil, 'string, boolean or nil')) }, loose)),
  begin: op(object({ tx: uint }), object({ snapshotRevision: uint }, loose)),
  commit: op(object({ tx: uint, fence, wait }), object({ revision: uint, replayed: bool }, loose)),
  abort: op(object({ tx: uint }), nil),
  lock: op(object({ lock: uint, path: str, mode: opt(lockMode), wait: opt(bool), timeoutMs: opt(uint), robust: opt(bool) }), object({ token: uint, ownerDied: bool, mode: lockMode }, loose)),
  upgrade: op(object({ lock: uint, wait: opt(bool), timeoutMs: opt(uint) }), object({ token: uint }, loose)),
  downgrade: op(object({ lock: uint }), nil),
  release: op(object({ lock: uint }), nil),
  /** The robust-mutex calls on a held lock (markConsistent / markUnrecoverable). */
  markLock: op(object({ lock: uint, state: literal('consistent', 'unrecoverable') }), nil),
  resetLock: op(object({ path: str }), nil),
  locks: op(object({}), arrayOf(lockInfo)),
  lockTable: op(object({}), object({ held: arrayOf(lockInfo), waiting: arrayOf(waiterInfo) }, loose)),
  /** The server's open sessions with what they hold (lock counts only on paths the caller may read). */
  listSessions: op(object({}), arrayOf(sessionInfo)),
  /** Result: the first revision the watch can deliver (events carry revisions > or ≥ it, see docs). */
  watch: op(object({ watch: uint, path: str, recursive: opt(bool), fromRevision: opt(uint) }), object({ revision: uint }, loose)),
  unwatch: op(object({ watch: uint }), nil),
  /** Opens another session on this connection; later requests name it in the envelope's `s`. */
  /** Result: its id and name, and for a resumable session (an etcd front-end) its resume credential. */
  session: op(object({ session: uint, name: opt(str) }), object({ id: str, name: str, secret: opt(str) }, loose)),
  endSession: op(object({ session: uint }), nil),
  /** The client closes on purpose: the connection's close that follows ends its sessions at once. */
  goodbye: op(object({}), nil),
  /** A lock wait carried over by a resume (welcome `waits`): answered as `lock` is, once granted or failed. */
  awaitLock: op(object({ lock: uint }), object({ token: uint, ownerDied: bool, mode: lockMode }, loose)),
  stats: op(object({}), anyMap),
  snapshot: op(object({}), nil),
  ping: op(object({}), nil),
} as const;

export type RequestTable = typeof requests;
export type RequestOp = keyof RequestTable;
export type Args<K extends RequestOp> = Infer<RequestTable[K]['args']>;
export type Result<K extends RequestOp> = Infer<RequestTable[K]['result']>;
export const REQUEST_OPS = Object.keys(requests) as RequestOp[];

export function isRequestOp(s: unknown): s is RequestOp {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(requests, s);
}

// ---------------------------------------------------------------- envelopes

/** One session's claim in a hello's resume: its id and secret, the locks it holds (handle, token), its lock waits. */
const resumeClaimFields = {
  session: str, secret: str,
  locks: arrayOf(object({ l: uint, token: uint }), 100_000),
  waits: opt(arrayOf(object({ l: uint, path: str, mode: lockMode, wait: opt(bool), timeoutMs: opt(uint) }), 100_000)),
};

/** What a resume gave back, per session: true (`locks`: the claimed lock handles still held, `waits`: the claimed waits carried over), or why not. */
const resumedFields = { resumed: opt(bool), locks: opt(arrayOf(uint)), waits: opt(arrayOf(uint)), resumeError: opt(wireError) };

/** Client → server. A request's id, and the id a cancel names, travel in the frame header. */
export const helloBody = object({
  t: literal('hello'), magic: literal(PROTOCOL_MAGIC), versions: arrayOf(uint, 16),
  token: opt(str), name: opt(str),
  /** Resume a session after a lost link (docs/protocol.md, "Resuming a session"): added without a version bump. */
  resume: opt(object({ ...resumeClaimFields, sessions: opt(arrayOf(object({ s: uint, ...resumeClaimFields }), 10_000)) })),
});
export type HelloBody = Infer<typeof helloBody>;

export type ClientMessage =
  | HelloBody
  | { [K in RequestOp]: { t: 'req'; id: number; op: K; s: number; a: Args<K> } }[RequestOp]
  | { t: 'cancel'; id: number };

export type RequestMessage = Extract<ClientMessage, { t: 'req' }>;

export const welcomeBody = object({
  t: literal('welcome'), version: uint, session: str, name: str, ttlMs: uint, revision: uint, limits,
  /** The session's resume credential, and how long after a request's send time its lease outlives this server's answer (ms). */
  secret: opt(str), resumeMs: opt(uint),
  /** The hello's resume: true when the session was resumed (`locks`: the lock handles still held), or why not. */
  ...resumedFields,
  /** The extra sessions the hello's resume named, by handle. */
  sessions: opt(arrayOf(object({ s: uint, ...resumedFields }, loose))),
}, loose);
export type WelcomeBody = Infer<typeof welcomeBody>;

const serverBodies = {
  welcome: welcomeBody,
  ok: object({ t: literal('ok'), r: (v: unknown) => v, rev: uint }, loose),
  err: object({ t: literal('err'), e: wireError }, loose),
  event: object({ t: literal('event'), w: uint, ev: arrayOf(wireEvent) }, loose),
  watchEnd: object({ t: literal('watchEnd'), w: uint, e: wireError }, loose),
  lockLost: object({ t: literal('lockLost'), l: uint, e: wireError }, loose),
  sessionEnd: object({ t: literal('sessionEnd'), s: uint, e: wireError }, loose),
  bye: object({ t: literal('bye'), e: wireError }, loose),
};
export const serverBody = tagged('t', serverBodies);
type ServerBodyOf<K extends keyof typeof serverBodies> = Infer<(typeof serverBodies)[K]>;

/** Server → client. `ok`/`err` carry the request's id; everything else is pushed with id 0. */
export type ServerMessage =
  | ServerBodyOf<'welcome'>
  | (Omit<ServerBodyOf<'ok'>, 'r'> & { id: number; r: unknown })
  | (ServerBodyOf<'err'> & { id: number })
  | ServerBodyOf<'event'>
  | ServerBodyOf<'watchEnd'>
  | ServerBodyOf<'lockLost'>
  | ServerBodyOf<'sessionEnd'>
  | ServerBodyOf<'bye'>;

export type ServerBody = { [K in keyof typeof serverBodies]: ServerBodyOf<K> }[keyof typeof serverBodies];

// ---------------------------------------------------------------- errors

/** The one place a LatchkeyError (or anything thrown) becomes its wire form. */
export function toWireError(e: unknown): WireError {
  if (e instanceof LatchkeyError) {
    const w: WireError = { code: e.code, message: e.message };
    if (e.path !== undefined) w.path = e.path;
    if (e.info !== undefined) w.info = e.info;
    return w;
  }
  return { code: 'INTERNAL', message: e instanceof Error ? `internal error: ${e.message}` : 'internal error' };
}

/** The one place a wire error becomes a LatchkeyError again, the same code, message, path and info. */
export function fromWireError(w: WireError): LatchkeyError {
  if (isErrorCode(w.code)) return new LatchkeyError(w.code, w.message, { ...(w.path !== undefined ? { path: w.path } : {}), ...(w.info !== undefined ? { info: w.info } : {}) });
  // A newer peer may know codes this one does not; keep what it said.
  return new LatchkeyError('INTERNAL', w.message, { ...(w.path !== undefined ? { path: w.path } : {}), info: { ...w.info, code: w.code } });
}

export const KNOWN_ERROR_CODES: readonly string[] = ErrorCodes;

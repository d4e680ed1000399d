/**
 * Operations and their execution against a tree.
 *
 * A `Workspace` is a root pointer plus the revision its writes will carry and
 * the mutations they produced. Every write path of the engine goes through
 * it: plain writes on the pending head, transactions on their snapshot,
 * replay on the head at commit, `multi` batches. An operation either throws a
 * LatchkeyError having changed nothing, or succeeds completely.
 */
import { LatchkeyError, assert, invalidArgument } from './errors.js';
import { joinPath, parsePath, validName } from './path.js';
import { type Mutation, type Node, EMPTY_VALUE, lookup, putNode, putRoot, removeNode, setPerms } from './tree.js';
import { bytesOf, sameValue } from './value.js';

export interface SetOptions {
  /** Write only if the node's version is this (0 = the node must be absent). */
  ifVersion?: number;
  /** Write only if the node's modRev is this. */
  ifModRev?: number;
  /** Write only if the node does not exist. */
  ifAbsent?: boolean;
}

export interface CreateOptions {
  /** Session id that owns the node; it is deleted when that session ends. */
  owner?: string;
  /** Append a zero-padded, monotonically increasing counter to the name. */
  sequential?: boolean;
  /**
   * The number a sequential create uses, reserved beforehand (a transaction
   * reserves it when the create runs, so replay at commit makes the same
   * name and concurrent creators never conflict). Internal: never from the wire.
   */
  seqNumber?: number;
}

/**
 * Chooses the number of a sequential child of `parent` whose counter (in the
 * workspace's view) is `seen`; the engine reserves it so no one else gets it.
 */
export type Sequencer = (parent: string, seen: number) => number;

export interface DeleteOptions {
  recursive?: boolean;
  ifVersion?: number;
}

export interface CheckOptions {
  version?: number;
  modRev?: number;
  exists?: boolean;
}

/** An operation as recorded in a transaction and carried by `multi` and the wire. */
export type Op =
  | { op: 'get'; path: string }
  | { op: 'list'; path: string; after?: string; limit?: number }
  | ({ op: 'set'; path: string; value: Uint8Array } & SetOptions)
  | ({ op: 'create'; path: string; value: Uint8Array } & CreateOptions)
  | ({ op: 'delete'; path: string } & DeleteOptions)
  | ({ op: 'check'; path: string } & CheckOptions)
  | { op: 'setPerms'; path: string; perms: readonly string[] }
  | AtomicOp;

/**
 * Atomic operations: mutations whose effect is computed from the node's value
 * at the moment they apply, not from anything the caller read. In a
 * transaction they record no read, so they commute with every other
 * transaction's atomic ops on the same node, and replay re-applies them to
 * the head (see transaction.ts).
 *  - add: the value is a decimal integer ("-12"; absent or empty counts as 0)
 *    and becomes value + delta;
 *  - min / max: the value becomes min/max(value, operand) (absent: operand);
 *  - append: the bytes are appended (absent: created with them);
 *  - setIfAbsent: the node is created with the bytes unless it exists.
 * Integers stay within ±(2⁵³−1): a value that is not such an integer, or a
 * result outside that range, is INVALID_ARGUMENT (nothing written).
 */
export type AtomicOp =
  | { op: 'add'; path: string; delta: number }
  | { op: 'min' | 'max'; path: string; operand: number }
  | { op: 'append' | 'setIfAbsent'; path: string; value: Uint8Array };

export type AtomicKind = AtomicOp['op'];

export type WriteOp = Extract<Op, { op: 'set' | 'create' | 'delete' | 'check' | 'setPerms' }> | AtomicOp;

const ATOMIC: ReadonlySet<string> = new Set<AtomicKind>(['add', 'min', 'max', 'append', 'setIfAbsent']);

export function isAtomic(op: WriteOp): op is AtomicOp {
  return ATOMIC.has(op.op);
}

/**
 * Checks an atomic op's arguments (not the node it applies to): after this,
 * any INVALID_ARGUMENT from applying it is about the node's value, a
 * response that depends on state and is replayed like any other.
 */
export function checkAtomicArgs(op: AtomicOp): void {
  switch (op.op) {
    case 'add':
      if (!Number.isSafeInteger(op.delta)) throw invalidArgument(`add: delta must be a safe integer, not ${String(op.delta)}`);
      return;
    case 'min':
    case 'max':
      if (!Number.isSafeInteger(op.operand)) throw invalidArgument(`${op.op}: operand must be a safe integer, not ${String(op.operand)}`);
      return;
    case 'append':
    case 'setIfAbsent':
      if (!(op.value instanceof Uint8Array)) throw invalidArgument(`${op.op}: value must be bytes`);
  }
}

const INTEGER = /^-?[0-9]{1,16}$/;
const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

/** The integer a node holds for add/min/max: absent or empty → undefined/0; anything else must be a safe decimal integer. */
export function integerValue(path: string, value: Uint8Array): number {
  if (value.length === 0) return 0;
  const text = value.length <= 17 ? utf8d.decode(value) : '';
  const n = INTEGER.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) {
    throw new LatchkeyError('INVALID_ARGUMENT', `${path} does not hold a decimal integer`, { path, info: { length: value.length } });
  }
  return n;
}

export function integerBytes(n: number): Uint8Array {
  return utf8.encode(String(n));
}

export interface ListResult {
  names: string[];
  /** True when `limit` cut the listing short. */
  more: boolean;
}

export const SEQUENTIAL_DIGITS = 10;

function conflict(path: string, why: string): LatchkeyError {
  return new LatchkeyError('CONFLICT', `${why} at ${path}`, { path });
}

function checkCount(name: string, v: number | undefined): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw invalidArgument(`${name} must be a non-negative integer`);
}

export class Workspace {
  readonly mutations: Mutation[] = [];
  /** Inside `planSet`: record mutations, leave `root` as it is. */
  private planning = false;
  /** The parsed path of each mutation `planSet` recorded. */
  readonly plannedSegs: Array<readonly string[]> = [];

  /** `maxValueBytes` bounds values this workspace builds itself (append). */
  constructor(public root: Node, readonly rev: number, private readonly sequencer?: Sequencer, readonly maxValueBytes = Infinity) {}

  get(path: string): Node | undefined {
    return lookup(this.root, parsePath(path));
  }

  list(path: string, after?: string, limit?: number): ListResult {
    const node = lookup(this.root, parsePath(path));
    if (node === undefined) throw new LatchkeyError('NOT_FOUND', `no node at ${path}`, { path });
    if (after !== undefined && (typeof after !== 'string' || (after !== '' && !validName(after)))) throw invalidArgument('list: `after` must be a child name');
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) throw invalidArgument('list: `limit` must be a positive integer');
    if (limit === undefined) return { names: node.children.keys(after === '' ? undefined : after), more: false };
    const names = node.children.keys(after === '' ? undefined : after, limit + 1);
    const more = names.length > limit;
    if (more) names.pop();
    return { names, more };
  }

  /** Creates every missing ancestor of segs (exclusive) as an empty node. */
  private ensureParents(path: string, segs: readonly string[]): void {
    let n: Node | undefined = this.root;
    let i = 0;
    for (; i < segs.length - 1; i++) {
      const next: Node | undefined = n.children.get(segs[i]!);
      if (next === undefined) break;
      n = next;
    }
    if (n.ephemeralOwner !== undefined) throw invalidArgument(`${joinPath(segs, i)} is ephemeral and cannot have children (writing ${path})`);
    for (; i < segs.length - 1; i++) this.put(segs, i + 1, EMPTY_VALUE);
  }

  private put(segs: readonly string[], upto: number, value: Uint8Array, owner?: string, seq?: boolean): void {
    const path = joinPath(segs, upto);
    const s = upto === segs.length ? segs : segs.slice(0, upto);
    if (this.planning) this.plannedSegs.push(s);
    else this.root = s.length === 0 ? putRoot(this.root, this.rev, value) : putNode(this.root, s, this.rev, value, owner, seq);
    const m: Mutation = owner !== undefined || seq
      ? { op: 'put', path, value, ...(owner !== undefined ? { ephemeralOwner: owner } : {}), ...(seq ? { seq: true } : {}) }
      : { op: 'put', path, value };
    this.mutations.push(m);
  }

  /**
   * The mutations `set` makes, checked exactly as `set` checks them, without
   * applying them to `root` (the engine applies a burst of plain sets
   * itself: engine.ts, "Bursts"). Only as a workspace's one operation: later
   * reads would not see it.
   */
  planSet(path: string, value: Uint8Array, o: SetOptions = {}): void {
    assert(this.mutations.length === 0, 'planSet on a used workspace');
    this.planning = true;
    try {
      this.set(path, value, o);
    } finally {
      this.planning = false;
    }
  }

  set(path: string, value: Uint8Array, o: SetOptions = {}): void {
    const segs = parsePath(path);
    checkCount('ifVersion', o.ifVersion);
    checkCount('ifModRev', o.ifModRev);
    const node = lookup(this.root, segs);
    if (o.ifAbsent && node !== undefined) throw conflict(path, 'ifAbsent: node exists');
    if (o.ifVersion !== undefined && (node?.version ?? 0) !== o.ifVersion) {
      throw conflict(path, `ifVersion ${o.ifVersion}: version is ${node?.version ?? 0}`);
    }
    if (o.ifModRev !== undefined && (node?.modRev ?? 0) !== o.ifModRev) {
      throw conflict(path, `ifModRev ${o.ifModRev}: modRev is ${node?.modRev ?? 0}`);
    }
    if (node === undefined) this.ensureParents(path, segs);
    this.put(segs, segs.length, value);
  }

  /** Returns the path created (which differs from `path` when sequential). */
  create(path: string, value: Uint8Array, o: CreateOptions = {}): string {
    let segs = parsePath(path);
    checkCount('seqNumber', o.seqNumber);
    if (segs.length === 0) throw new LatchkeyError('EXISTS', 'the root always exists', { path });
    if (o.sequential) {
      const parentSegs = segs.slice(0, -1);
      const parent = lookup(this.root, parentSegs);
      const seen = parent?.seq ?? 0;
      const n = o.seqNumber ?? (this.sequencer === undefined ? seen : this.sequencer(joinPath(parentSegs, parentSegs.length), seen));
      path = path + String(n).padStart(SEQUENTIAL_DIGITS, '0');
      segs = parsePath(path);
    }
    if (lookup(this.root, segs) !== undefined) throw new LatchkeyError('EXISTS', `node exists at ${path}`, { path });
    this.ensureParents(path, segs);
    this.put(segs, segs.length, value, o.owner, o.sequential === true);
    return path;
  }

  /** Returns whether a node was deleted. */
  delete(path: string, o: DeleteOptions = {}): boolean {
    const segs = parsePath(path);
    checkCount('ifVersion', o.ifVersion);
    if (segs.length === 0) throw invalidArgument('the root cannot be deleted');
    const node = lookup(this.root, segs);
    if (o.ifVersion !== undefined && (node?.version ?? 0) !== o.ifVersion) {
      throw conflict(path, `ifVersion ${o.ifVersion}: version is ${node?.version ?? 0}`);
    }
    if (node === undefined) return false;
    if (!o.recursive && node.children.size > 0) {
      throw new LatchkeyError('NOT_EMPTY', `${path} has ${node.children.size} children (use recursive)`, { path });
    }
    this.root = removeNode(this.root, segs, this.rev);
    this.mutations.push({ op: 'del', path });
    return true;
  }

  check(path: string, o: CheckOptions): void {
    const node = lookup(this.root, parsePath(path));
    if (o.exists !== undefined && (node !== undefined) !== o.exists) throw conflict(path, o.exists ? 'check: node is absent' : 'check: node exists');
    if (o.version !== undefined && (node?.version ?? 0) !== o.version) throw conflict(path, `check: version is ${node?.version ?? 0}, not ${o.version}`);
    if (o.modRev !== undefined && (node?.modRev ?? 0) !== o.modRev) throw conflict(path, `check: modRev is ${node?.modRev ?? 0}, not ${o.modRev}`);
  }

  /** Replaces a node's access-control entries; NOT_FOUND when it does not exist. */
  setPerms(path: string, perms: readonly string[]): void {
    const segs = parsePath(path);
    if (!Array.isArray(perms) || perms.some((p) => typeof p !== 'string')) throw invalidArgument('perms must be an array of strings');
    if (lookup(this.root, segs) === undefined) throw new LatchkeyError('NOT_FOUND', `no node at ${path}`, { path });
    this.root = setPerms(this.root, segs, this.rev, perms);
    this.mutations.push({ op: 'perms', path, perms: [...perms] });
  }

  /** Writes `value` at `path` (creating parents) unless it already holds exactly these bytes. */
  private putIfChanged(path: string, segs: readonly string[], node: Node | undefined, value: Uint8Array): void {
    if (node !== undefined && sameValue(node.value, value)) return;
    if (node === undefined) this.ensureParents(path, segs);
    this.put(segs, segs.length, value);
  }

  /**
   * Applies an atomic op to the node as it is in this workspace. Returns the
   * new integer (add/min/max), whether the node was created (setIfAbsent),
   * or undefined (append). A node left unchanged is not rewritten.
   */
  atomic(op: AtomicOp): number | boolean | undefined {
    checkAtomicArgs(op);
    const segs = parsePath(op.path);
    const node = lookup(this.root, segs);
    switch (op.op) {
      case 'add':
      case 'min':
      case 'max': {
        if (segs.length === 0) throw invalidArgument(`${op.op}: the root holds no integer`);
        const cur = node === undefined ? undefined : integerValue(op.path, bytesOf(node.value));
        let next: number;
        if (op.op === 'add') {
          next = (cur ?? 0) + op.delta;
          if (!Number.isSafeInteger(next)) {
            throw new LatchkeyError('INVALID_ARGUMENT', `add: ${String(cur ?? 0)} + ${op.delta} leaves the safe integer range at ${op.path}`, { path: op.path });
          }
        } else {
          next = cur === undefined ? op.operand : op.op === 'min' ? Math.min(cur, op.operand) : Math.max(cur, op.operand);
        }
        this.putIfChanged(op.path, segs, node, integerBytes(next));
        return next;
      }
      case 'append': {
        if (segs.length === 0) throw invalidArgument('append: not on the root');
        const old = node === undefined ? EMPTY_VALUE : bytesOf(node.value);
        const size = old.length + op.value.length;
        if (size > this.maxValueBytes) {
          throw new LatchkeyError('TOO_LARGE', `append: value at ${op.path} would be ${size} bytes; the limit is ${this.maxValueBytes}`, { path: op.path, info: { size, limit: this.maxValueBytes } });
        }
        if (node !== undefined && op.value.length === 0) return undefined;
        const v = new Uint8Array(size);
        v.set(old, 0);
        v.set(op.value, old.length);
        this.putIfChanged(op.path, segs, node, v);
        return undefined;
      }
      case 'setIfAbsent':
        if (node !== undefined) return false;
        this.ensureParents(op.path, segs);
        this.put(segs, segs.length, op.value);
        return true;
    }
  }

  /** Executes a write op; returns its result (created path, deleted flag, new integer, or undefined). */
  write(op: WriteOp): string | number | boolean | undefined {
    switch (op.op) {
      case 'set': this.set(op.path, op.value, op); return undefined;
      case 'create': return this.create(op.path, op.value, op);
      case 'delete': return this.delete(op.path, op);
      case 'check': this.check(op.path, op); return undefined;
      case 'setPerms': this.setPerms(op.path, op.perms); return undefined;
      default: return this.atomic(op);
    }
  }
}


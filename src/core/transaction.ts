/**
 * Transactions: snapshot reads, precise validation, replay.
 *
 * A transaction runs every operation on a private Workspace rooted at the
 * snapshot it began with, so it reads its snapshot plus its own writes. Each
 * operation is recorded with the response the caller saw, and each read with
 * a cheap witness (the modRev of the node read, or the childrenRev of the
 * directory listed, or "absent").
 *
 * Commit (`replayAt`) re-executes the record against the current head, in
 * order, on a fresh Workspace:
 *  - a read whose witness still matches gives the same response by
 *    construction (validation passed for it);
 *  - a read whose witness moved is re-answered and compared with what the
 *    caller saw (replay); equal bytes or names are as good as unchanged;
 *  - a write is re-executed and its outcome (success/result, or error code)
 *    compared.
 * Every response equal → the Workspace's mutations are the commit. The first
 * difference → CONFLICT naming that path. This is oxenstored's replay
 * (seed 002) with per-node validation in front of it, so transactions on
 * disjoint nodes never conflict whatever prefix they share, and a read of a
 * value rewritten with the same bytes does not conflict either.
 *
 * Atomic operations (add, min, max, append, setIfAbsent; ops.ts) are writes
 * whose response does not depend on the node: inside a transaction they
 * answer nothing but success or an error code, and record no read. Replay
 * re-applies them to the head and compares only that outcome, so two
 * transactions adding to one counter both commit, each adding to what the
 * other left. A later read of that node in the same transaction sees the
 * transaction's own write (an OWN witness), which replay always re-answers
 * and compares: reading the counter after adding to it validates like any
 * read, and so does a read before it.
 *
 * A node's `stat` returned inside a transaction is informational: replay
 * compares values and existence, not revisions. A transaction that must
 * depend on a version says so with `ifVersion`/`check`, which replay
 * re-checks exactly.
 */
import { LatchkeyError, isErrorCode } from './errors.js';
import { type ListResult, type WriteOp, Workspace, checkAtomicArgs, isAtomic } from './ops.js';
import { type Node, lookup } from './tree.js';
import { type Value, sameValue } from './value.js';
import { parsePath } from './path.js';

/** What an operation answered: a value, or an error code. */
export type Outcome = { ok: true; value: unknown } | { ok: false; code: string };

export type Recorded =
  | { kind: 'get'; path: string; witness: number; value: Value | undefined }
  | { kind: 'list'; path: string; after: string | undefined; limit: number | undefined; witness: number; result: ListResult | string }
  | { kind: 'write'; op: WriteOp; outcome: Outcome };

const ABSENT = -1;
/**
 * Witness of a read that saw the transaction's own write. The transaction
 * writes at a provisional revision (snapshot + 1) which a real commit may
 * also carry, so such a witness proves nothing at head: it is never taken as
 * unchanged, and replay always re-answers and compares.
 */
const OWN = -2;

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function outcomeOf(f: () => unknown): Outcome {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    if (e instanceof LatchkeyError && e.code !== 'INTERNAL') return { ok: false, code: e.code };
    throw e;
  }
}

function sameOutcome(a: Outcome, b: Outcome, atomic: boolean): boolean {
  if (a.ok !== b.ok) return false;
  if (atomic && a.ok) return true; // the caller was told only that it was done
  if (!a.ok || !b.ok) return (a as { code: string }).code === (b as { code: string }).code;
  return a.value === b.value;
}

export class TxState {
  readonly ws: Workspace;
  readonly record: Recorded[] = [];
  private writes = 0;

  constructor(readonly snapshot: Node, readonly snapshotRev: number, readonly maxValueBytes = Infinity) {
    this.ws = new Workspace(snapshot, snapshotRev + 1, undefined, maxValueBytes);
  }

  get hasWrites(): boolean {
    return this.writes > 0;
  }

  get opCount(): number {
    return this.record.length;
  }

  get(path: string): Node | undefined {
    const node = this.ws.get(path);
    const witness = node === undefined ? ABSENT : node.modRev === this.ws.rev ? OWN : node.modRev;
    this.record.push({ kind: 'get', path, witness, value: node?.value });
    return node;
  }

  list(path: string, after?: string, limit?: number): ListResult {
    const segs = parsePath(path);
    const dir = lookup(this.ws.root, segs);
    const witness = dir === undefined ? ABSENT : dir.childrenRev === this.ws.rev ? OWN : dir.childrenRev;
    let result: ListResult | string;
    try {
      result = this.ws.list(path, after, limit);
    } catch (e) {
      if (!(e instanceof LatchkeyError) || !isErrorCode(e.code) || e.code === 'INVALID_ARGUMENT') throw e;
      this.record.push({ kind: 'list', path, after, limit, witness, result: e.code });
      throw e;
    }
    this.record.push({ kind: 'list', path, after, limit, witness, result });
    return result;
  }

  /**
   * Executes and records a write; rethrows its error after recording it. An
   * atomic op answers undefined here (its result would be a read).
   */
  write(op: WriteOp): string | boolean | undefined {
    parsePath(op.path); // bad paths are the caller's bug, not a response to replay
    const atomic = isAtomic(op);
    // Bad arguments too; once they are checked, an atomic op's INVALID_ARGUMENT is about the node's value.
    if (atomic) checkAtomicArgs(op);
    this.writes++;
    let outcome: Outcome;
    try {
      const value = this.ws.write(op);
      outcome = { ok: true, value: atomic ? undefined : value };
    } catch (e) {
      if (!(e instanceof LatchkeyError) || e.code === 'INTERNAL' || (e.code === 'INVALID_ARGUMENT' && !atomic)) throw e;
      outcome = { ok: false, code: e.code };
      this.record.push({ kind: 'write', op, outcome });
      throw e;
    }
    this.record.push({ kind: 'write', op, outcome });
    return outcome.value as string | boolean | undefined;
  }
}

export type ReplayResult =
  | { ok: true; ws: Workspace; /** some witness moved but every response was equal */ replayed: boolean }
  | { ok: false; path: string; index: number };

/**
 * Re-executes a transaction's record against `head` (whose writes will carry
 * revision `rev`). Pure: returns the workspace to commit, or where it diverged.
 */
export function replayAt(record: readonly Recorded[], head: Node, rev: number, maxValueBytes = Infinity): ReplayResult {
  const ws = new Workspace(head, rev, undefined, maxValueBytes);
  let replayed = false;
  for (let i = 0; i < record.length; i++) {
    const r = record[i]!;
    switch (r.kind) {
      case 'get': {
        const node = ws.get(r.path);
        const w = node === undefined ? ABSENT : node.modRev;
        if (w === r.witness) break;
        const own = w === rev && r.witness === OWN; // this transaction's own write, then and now
        if ((node === undefined) !== (r.value === undefined)) return { ok: false, path: r.path, index: i };
        if (node !== undefined && !sameValue(node.value, r.value)) return { ok: false, path: r.path, index: i };
        if (!own) replayed = true;
        break;
      }
      case 'list': {
        const dir = ws.get(r.path);
        const w = dir === undefined ? ABSENT : dir.childrenRev;
        if (w === r.witness) break;
        const own = w === rev && r.witness === OWN;
        const again = outcomeOf(() => ws.list(r.path, r.after, r.limit));
        if (typeof r.result === 'string') {
          if (again.ok || again.code !== r.result) return { ok: false, path: r.path, index: i };
        } else {
          const lr = again.ok ? (again.value as ListResult) : undefined;
          if (lr === undefined || lr.more !== r.result.more || !sameNames(lr.names, r.result.names)) return { ok: false, path: r.path, index: i };
        }
        if (!own) replayed = true;
        break;
      }
      case 'write': {
        const again = outcomeOf(() => ws.write(r.op));
        if (!sameOutcome(again, r.outcome, isAtomic(r.op))) return { ok: false, path: r.op.path, index: i };
        break;
      }
    }
  }
  return { ok: true, ws, replayed };
}

/**
 * Write admission, the engine's side (engine.ts `write`, `commitTxNow`):
 * where a write touches the tree, for the lock service (locks.ts: mandatory
 * locks), and the value store's write back-pressure asked after it
 * (storage/values.ts note 6): locks, then bytes.
 */
import type { WriteOptions } from '../api.js';
import type { WriteTarget } from '../core/lock-table.js';
import type { WriteOp } from '../core/ops.js';
import { parentPath } from '../core/path.js';
import type { TxState } from '../core/transaction.js';
import type { ValueStore } from '../storage/values.js';
import { type Admission, type LockService, NO_ADMISSION } from './locks.js';

/**
 * The value bound, asked once the write's lock admission `a` is given.
 * Applies the write (`apply`, told the fence to check) at once when nothing
 * waits and its `bytes` of large values fit. Otherwise the write takes its
 * place in the order now and waits, first come first served (a write of no
 * large values too, while any waits: writes keep the order they were made
 * in):
 *  - its fence is checked now, not again when it applies (the session's own
 *    release of that lock, made after the write, must not fail it); a
 *    failed check is answered by `fail`;
 *  - an admission given at once (NO_ADMISSION, in this same tick), which
 *    holds nothing, becomes a held one (LockService.holdWrite): another
 *    session's lock overlapping the write waits for it to apply, as it would
 *    for a write applied in this tick;
 *  - it fails SESSION_EXPIRED if its session ends meanwhile (engine.ts
 *    `endSession`, ValueStore.cancelWaiters), releasing that admission.
 * No cycle: a write waiting here holds lock-table entries and waits only for
 * bytes, which the log syncs of writes already applied release (those wait
 * for nothing else); lock waiters may wait for it, but nothing waiting here
 * waits for a lock.
 */
export function gate<R>(
  store: ValueStore, locks: LockService, a: Admission, session: string, targets: readonly WriteTarget[], fence: WriteOptions['fence'], bytes: number,
  apply: (a: Admission, fence: WriteOptions['fence']) => R | Promise<R>, fail: (e: unknown) => R | Promise<R>,
): R | Promise<R> {
  if (fence !== undefined) {
    try {
      locks.checkFence(session, fence);
    } catch (e) {
      a.done();
      return fail(e);
    }
  }
  const g = store.admit(bytes, session);
  if (!(g instanceof Promise)) return released(settled(() => apply(a, undefined)), g);
  const held = a === NO_ADMISSION && targets.length > 0 ? locks.holdWrite(session, targets) : a;
  return g.then((release) => released(settled(() => apply(held, undefined)), release), (e: unknown) => {
    held.done();
    throw e;
  });
}

/** `out`, after which `release` is called once it settles (a grant of the value bound is held until the write is durable or failed). */
function released<R>(out: Promise<R>, release: () => void): Promise<R> {
  void out.then(release, release);
  return out;
}

/** Runs `f`; its result (or what it throws) as a promise. */
export function settled<R>(f: () => R | Promise<R>): Promise<R> {
  try {
    return Promise.resolve(f());
  } catch (e) {
    return Promise.reject(e);
  }
}

/** The places a transaction's writes touch, for lock admission. */
export function writeTargets(tx: TxState): WriteTarget[] {
  const out: WriteTarget[] = [];
  for (const r of tx.record) {
    if (r.kind !== 'write') continue;
    const t = targetOfOp(r.op);
    if (t !== undefined) out.push(t);
  }
  return out;
}

/** Where a write op touches the tree (undefined for `check`, which only reads). */
export function targetOfOp(op: WriteOp): WriteTarget | undefined {
  switch (op.op) {
    case 'check': return undefined;
    case 'setPerms': return { path: op.path, subtree: false };
    case 'create': return targetOf('create', op.path, op.sequential === true);
    case 'set':
    case 'delete': return targetOf(op.op, op.path);
    default: return targetOf('set', op.path); // atomic ops write one node
  }
}

export function targetOf(op: 'set' | 'create' | 'delete', path: string, sequential = false): WriteTarget {
  // A sequential create's final name is chosen at apply time: admit the parent's subtree.
  if (sequential) return { path: parentPath(path), subtree: true };
  return { path, subtree: op === 'delete' };
}

/**
 * What the XenStore adapter (src/xenstore) needs of a store, over etcd: the
 * shape of engine/access.ts's EngineAccess (this layer may not import the
 * engine; the CLI hands this object to startXenstoreServer).
 *
 *  - reads: the mirror's head (visibleRoot/visibleRev), without a barrier:
 *    a front-end's XenStore reads see its own acknowledged writes and every
 *    revision its mirror has applied (another front-end's write shows once
 *    the watch brings it, normally milliseconds);
 *  - writes: one commit through the commit loop (backend.write), after a
 *    barrier, with mandatory locking as for the session's own writes;
 *  - transactions: the adapter's TxState committed by commitTxState (one
 *    Txn, replay on the new head, CONFLICT → EAGAIN only when an answer
 *    differs);
 *  - commit hook: each revision the mirror applies, as the engine's
 *    Published (mutations, root before and after): watches fire for writes
 *    of every front-end and every latchkey client of the prefix;
 *  - permissions: stored beside each node (P/p/PATH, keys.ts), written and
 *    deleted with it by the commit plan, applied by the mirror; a change
 *    fires XenStore watches as in the engine.
 */
import type { CommitResult, WriteOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import { Workspace } from '../core/ops.js';
import type { TxState } from '../core/transaction.js';
import { type Mutation, type Node, lookup } from '../core/tree.js';
import { parsePath } from '../core/path.js';
import type { EtcdBackend } from './backend.js';
import type { Locks } from './locks.js';
import { commitTxState } from './transaction.js';

type Target = { readonly path: string; readonly subtree: boolean };
type Published = { rev: number; mutations: readonly Mutation[]; before: Node; after: Node };

/** The XenStore adapter's view of an etcd-backed store (see the header). */
export function xenstoreAccess(backend: EtcdBackend, locks: Locks) {
  const write = async <T>(session: string, targets: readonly Target[], opts: WriteOptions, fn: (ws: Workspace) => T): Promise<{ value: T; rev: number }> => {
    const admit = async (plan: Parameters<Locks['admitWrite']>[2], _base: Node, rev: number): Promise<boolean> => {
      if (locks.admitWrite(session, targets, plan, rev, undefined) === undefined) return true;
      await locks.nextChange(opts.signal ?? new AbortController().signal);
      return false;
    };
    const r = await backend.write(fn, opts, admit, (base, rev) => new Workspace(base, rev + 1, undefined, backend.maxValueBytes));
    return { value: r.value, rev: r.rev };
  };
  const commitTx = (session: string, tx: TxState, opts: WriteOptions): Promise<CommitResult> => commitTxState(backend, locks, session, tx, opts);
  return {
    get visibleRoot(): Node { return backend.mirror.root; },
    get visibleRev(): number { return backend.mirror.rev; },
    get closed(): boolean { return backend.closed || backend.mirror.failure !== undefined; },
    get openTransactions(): number { return backend.openTransactions; },
    set openTransactions(n: number) { backend.openTransactions = n; },
    /** etcd keeps old revisions until its own compaction: nothing to pin. */
    pinSnapshot: (_rev: number): (() => void) => () => {},
    write,
    writeNow: write,
    commitTx,
    commitTxNow: commitTx,
    onCommit(hook: (c: Published) => void): () => void {
      return backend.mirror.listen((changes, rev, before, after) => {
        const mutations: Mutation[] = [];
        for (const c of changes) {
          if (c.kind === 'n') {
            mutations.push(c.type === 'put' ? { op: 'put', path: c.rest, value: new Uint8Array(c.value ?? new Uint8Array(0)) } : { op: 'del', path: c.rest });
          } else if (c.kind === 'p') {
            // Permissions set or cleared on a node that is still there (a deleted node's go with its 'del').
            const n = lookup(after, parsePath(c.rest));
            if (n !== undefined) mutations.push({ op: 'perms', path: c.rest, perms: n.perms ?? [] });
          }
        }
        if (mutations.length > 0) hook({ rev, mutations, before, after });
      });
    },
    guardWrites(_session: string, guard: ((path: string) => void) | undefined): void {
      if (guard !== undefined) throw new LatchkeyError('INVALID_ARGUMENT', 'write guards are not served from etcd');
    },
    watches: { size: 0, oldestRevision: 0 },
  };
}

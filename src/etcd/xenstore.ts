/**
 * What the XenStore adapter (src/xenstore) needs of a store, over etcd: the
 * shape of engine/access.ts's EngineAccess (this layer may not import the
 * engine; the CLI hands this object to startXenstoreServer).
 *
 *  - reads: the mirror's head (visibleRoot/visibleRev), after a barrier
 *    (`readBarrier`: one linearizable range of P/r and the mirror catching
 *    up, as the Store API's reads): a read sees every write acknowledged
 *    before it arrived, through any front-end. Barriers are shared: every
 *    request that arrives while one is in flight waits for the next one, so
 *    N reads arriving together cost two ranges at most, not N;
 *  - writes: one commit through the commit loop (backend.write; a barrier
 *    only before an answer that writes nothing, an XsError such as EACCES,
 *    ENOENT or EQUOTA included, as for every write; the Txn compares the
 *    nearest existing ancestor of each node created, so a permission
 *    revoked through another front-end fails it), with
 *    mandatory locking as for the session's own writes; a
 *    write or commit still waiting (a lock, a retry) when its connection's
 *    session ends is withdrawn (the session's end signal aborts it);
 *  - transactions: the adapter's TxState committed by commitTxState (one
 *    Txn, replay on the new head, CONFLICT → EAGAIN only when an answer
 *    differs);
 *  - commit hook: each revision the mirror applies, as the engine's
 *    Published (mutations, root before and after): watches fire for writes
 *    of every front-end and every latchkey client of the prefix;
 *  - permissions: stored beside each node (P/p/PATH, keys.ts), written and
 *    deleted with it by the commit plan, applied by the mirror; a change
 *    fires XenStore watches as in the engine;
 *  - domains: the domain table is in etcd (`P/x/DOMID`, keys.ts), so every
 *    front-end of the prefix knows the same guests (`EtcdDomains`).
 */
import type { CommitResult, WriteOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { Workspace } from '../core/ops.js';
import type { TxState } from '../core/transaction.js';
import { type Mutation, type Node, lookup } from '../core/tree.js';
import { parsePath } from '../core/path.js';
import type { EtcdBackend } from './backend.js';
import type { Locks } from './locks.js';
import { commitTxState } from './transaction.js';

type Target = { readonly path: string; readonly subtree: boolean };
type Published = { rev: number; mutations: readonly Mutation[]; before: Node; after: Node };

/**
 * Shared barriers (see the header). A request takes a ticket when it arrives
 * (the number of barriers begun so far); a barrier begun after that, once
 * complete, covers it. At most one barrier is in flight and one queued.
 */
export class BarrierBatch {
  private begun = 0;
  private done = 0;
  private current: Promise<void> | undefined;
  private currentIndex = 0;
  private next: Promise<void> | undefined;
  /** Barriers begun (each one linearizable range), for tests and stats. */
  get count(): number { return this.begun; }

  constructor(private readonly barrier: () => Promise<void>) {}

  ticket(): number {
    return this.begun;
  }

  wait(ticket: number): Promise<void> | undefined {
    if (this.done > ticket) return undefined;
    if (this.current !== undefined && this.currentIndex > ticket) return this.current;
    if (this.current === undefined) return this.begin();
    // The one in flight began before this request arrived: the next one, begun once it ends, covers it.
    return (this.next ??= this.current.then(noop, noop).then(() => {
      this.next = undefined;
      return this.current !== undefined && this.currentIndex > ticket ? this.current : this.begin();
    }));
  }

  private begin(): Promise<void> {
    const index = ++this.begun;
    const p: Promise<void> = this.barrier().then(() => {
      this.done = Math.max(this.done, index);
    }).finally(() => {
      if (this.current === p) this.current = undefined;
    });
    this.current = p;
    this.currentIndex = index;
    return p;
  }
}

const noop = (): void => {};

/** A domain record as stored in P/x/DOMID. */
type StoredDomain = { m: string; p: number; t?: number; r?: 1 };

interface DomainRecord { readonly domid: number; readonly mfn: string; readonly port: number; readonly target?: number; readonly releasing?: boolean }

function parseDomain(domid: number, value: Buffer): DomainRecord | undefined {
  try {
    const v = JSON.parse(value.toString()) as StoredDomain;
    if (typeof v.m !== 'string' || typeof v.p !== 'number') return undefined;
    return { domid, mfn: v.m, port: v.p, ...(typeof v.t === 'number' ? { target: v.t } : {}), ...(v.r === 1 ? { releasing: true } : {}) };
  } catch {
    return undefined; // a record we cannot read: no such domain
  }
}

/**
 * The XenStore domain table in etcd (src/xenstore/domains.ts DomainRegistry):
 * one key P/x/DOMID per introduced guest, without a lease (a guest outlives
 * the front-end that introduced it). Each change is one Txn compared on the
 * record (create_revision 0 to create, mod_revision to change), after a
 * barrier; the mirror applies it, and `onChange` tells each front-end's
 * server, which opens or closes the guest's socket there.
 */
export class EtcdDomains {
  constructor(private readonly backend: EtcdBackend) {}

  private key(domid: number): Buffer {
    return Buffer.from(this.backend.keys.of('x', String(domid)));
  }

  private current(domid: number): { rec: DomainRecord | undefined; modRev: number } {
    const r = this.backend.mirror.flat.x.get(String(domid));
    return { rec: r === undefined ? undefined : parseDomain(domid, r.value), modRev: r?.modRev ?? 0 };
  }

  records(): DomainRecord[] {
    const out: DomainRecord[] = [];
    for (const [k, r] of this.backend.mirror.flat.x) {
      const rec = parseDomain(Number(k), r.value);
      if (rec !== undefined) out.push(rec);
    }
    return out;
  }

  /** Puts (undefined: deletes) the record if it still has mod revision `modRev` (0: absent); false when it moved. */
  private async change(domid: number, modRev: number, value: StoredDomain | undefined): Promise<boolean> {
    const key = this.key(domid);
    const rev = await this.backend.send({
      compare: [modRev === 0 ? { key, target: 'Create', result: 'Equal', create_revision: 0 } : { key, target: 'Mod', result: 'Equal', mod_revision: modRev }],
      success: [
        value === undefined ? { request_delete_range: { key } } : { request_put: { key, value: Buffer.from(JSON.stringify(value)) } },
        { request_put: { key: Buffer.from(this.backend.mirror.revKey), value: Buffer.from('') } },
      ],
      empty: false,
    });
    return rev !== undefined;
  }

  /** Runs `step` on the record after a barrier, again while its compare fails. */
  private async update<T>(domid: number, step: (rec: DomainRecord | undefined, modRev: number) => Promise<T | undefined>): Promise<T> {
    await this.backend.barrier();
    for (;;) {
      this.backend.checkOpen();
      const { rec, modRev } = this.current(domid);
      const r = await step(rec, modRev);
      if (r !== undefined) return r;
    }
  }

  introduce(domid: number, mfn: string, port: number): Promise<'created' | 'updated' | 'mfn' | 'busy'> {
    return this.update(domid, async (rec, modRev) => {
      if (rec === undefined) return (await this.change(domid, modRev, { m: mfn, p: port })) ? 'created' : undefined;
      if (rec.releasing === true) return 'busy';
      if (rec.mfn !== mfn) return 'mfn';
      if (rec.port === port) return 'updated';
      return (await this.change(domid, modRev, { ...stored(rec), p: port })) ? 'updated' : undefined;
    });
  }

  setTarget(domid: number, target: number): Promise<boolean> {
    return this.update(domid, async (rec, modRev) => {
      if (rec === undefined) return false;
      return (await this.change(domid, modRev, { ...stored(rec), t: target })) ? true : undefined;
    });
  }

  beginRelease(domid: number): Promise<boolean> {
    return this.update(domid, async (rec, modRev) => {
      if (rec === undefined) return false;
      if (rec.releasing === true) return true;
      return (await this.change(domid, modRev, { ...stored(rec), r: 1 })) ? true : undefined;
    });
  }

  async remove(domid: number): Promise<void> {
    await this.update(domid, async (rec, modRev) => {
      if (rec === undefined && modRev === 0) return true;
      return (await this.change(domid, modRev, undefined)) ? true : undefined;
    });
  }

  onChange(fn: (domid: number, rec: DomainRecord | undefined) => void): () => void {
    return this.backend.mirror.listen((changes) => {
      for (const c of changes) {
        if (c.kind !== 'x') continue;
        const domid = Number(c.rest);
        fn(domid, c.type === 'put' && c.value !== undefined ? parseDomain(domid, Buffer.from(c.value)) : undefined);
      }
    });
  }
}

function stored(rec: DomainRecord): StoredDomain {
  return { m: rec.mfn, p: rec.port, ...(rec.target !== undefined ? { t: rec.target } : {}), ...(rec.releasing === true ? { r: 1 as const } : {}) };
}

/**
 * The XenStore adapter's view of an etcd-backed store (see the header).
 * `endSignal(session)`: the signal aborted when that session ends (its
 * connection closed), which withdraws the session's waiting writes.
 */
export function xenstoreAccess(backend: EtcdBackend, locks: Locks, endSignal: (session: string) => AbortSignal | undefined) {
  /** The caller's signal, else the session's end: a request must not outlive its connection. */
  const withEnd = (session: string, opts: WriteOptions): WriteOptions => {
    const ended = endSignal(session);
    if (ended === undefined) return opts;
    return { ...opts, signal: opts.signal === undefined ? ended : AbortSignal.any([opts.signal, ended]) };
  };
  const write = async <T>(session: string, targets: readonly Target[], options: WriteOptions, fn: (ws: Workspace) => T): Promise<{ value: T; rev: number }> => {
    const opts = withEnd(session, options);
    const admit = async (plan: Parameters<Locks['admitWrite']>[2], _base: Node, rev: number): Promise<boolean> => {
      if (locks.admitWrite(session, targets, plan, rev, undefined) === undefined) {
        opts.signal?.throwIfAborted();
        return true;
      }
      await locks.nextChange(opts.signal ?? new AbortController().signal);
      return false;
    };
    const r = await backend.write(fn, opts, admit);
    return { value: r.value, rev: r.rev };
  };
  const commitTx = (session: string, tx: TxState, opts: WriteOptions): Promise<CommitResult> => commitTxState(backend, locks, session, tx, withEnd(session, opts));
  const readBarrier = new BarrierBatch(() => backend.barrier());
  const domains = new EtcdDomains(backend);
  return {
    readBarrier,
    domains,
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

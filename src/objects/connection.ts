/**
 * Connection: one cache (identity map + LRU), one transaction at a time, one
 * consistent view — ZODB's Connection over latchkey's Store API.
 *
 * Design:
 *  1. Stored form: object `oid` lives at `<prefix>/o/<oid>`; the root is oid
 *     `0`. Every commit that writes objects also does `add(<prefix>/tid, 1)`
 *     (an atomic op: never a conflict between writers), so the modRev of
 *     `tid` is the revision of the newest object commit.
 *  2. Transaction boundary (start of every attempt): begin a latchkey
 *     transaction and read a path nobody writes (`<prefix>/anchor`): that
 *     first read fixes the snapshot R without a witness that could ever make
 *     the transaction conflict. Then read `tid` outside the transaction (so
 *     writers never conflict on it): its modRev T is the newest object commit
 *     at some revision ≥ R. Wait until this connection's
 *     watch on the prefix has delivered revision T (every object change ≤ R is
 *     then known), and turn into ghosts exactly the objects changed in
 *     (last boundary, R] by others. The cache is now the state at R; every
 *     load in the transaction reads the same snapshot through the latchkey
 *     transaction. Events past R wait for a later boundary.
 *  3. Commit: changed objects (and new objects reachable from them, given
 *     oids here) are written with `ifModRev` = the revision they were loaded
 *     at (`ifAbsent` for new ones): a second writer of an object conflicts,
 *     as in ZODB. Reads of objects loaded in the transaction are latchkey
 *     reads and are validated too. A newly added reference to an existing
 *     object is `check`ed to exist, so a concurrent pack cannot delete it
 *     under the writer.
 *  4. CONFLICT on an object this transaction wrote whose class has
 *     `resolveConflict`: a resolution transaction re-reads the written
 *     objects, and for each that moved calls
 *     resolveConflict(old, committed, mine) and writes the result with
 *     `ifModRev` = committed. Anything else (a read that moved, a class
 *     without resolveConflict, resolveConflict throwing) re-runs the whole
 *     function after a backoff, with the conflicting objects invalidated.
 *  5. Abort or failure: changed objects go back to ghosts (reloaded on next
 *     touch), objects first saved in the failed attempt are New again.
 */
import type { CommitResult, Store, Transaction, TransactionOptions, WatchEvent } from '../api.js';
import { LatchkeyError, assert } from '../core/errors.js';
import { DEFAULT_TRANSACTION_TIMEOUT_MS, backoffMs, sleep, throwIfAborted } from '../util/retry.js';
import { type Decoded, PersistentRef, packRecord, sameBytes, unpackRecord, walk } from './codec.js';
import { NotSerializableError, UnknownClassError, notInTransaction } from './errors.js';
import {
  type FetchedState, type Jar, type Meta, type Persistent, type PersistentClass, Status,
  fieldsOf, ghostify, installNew, isPersistent, makeGhost, metaOf,
} from './persistent.js';
import { PMap } from './pmap.js';
import { classByName, nameOfClass } from './registry.js';

export interface Layout {
  readonly store: Store;
  readonly prefix: string;
  readonly objDir: string;
  readonly tidPath: string;
  /** Never written: the first read of every transaction, to fix its snapshot without a witness that could move. */
  readonly anchorPath: string;
}

export interface ConnectionStats {
  /** Objects fetched from the store (cold loads). */
  loads: number;
  loadFailures: number;
  /** Loaded objects turned back into ghosts by LRU eviction. */
  evictions: number;
  /** Loaded objects turned into ghosts because another connection changed them. */
  invalidations: number;
  /** Watch failures answered by invalidating the whole cache (should stay 0). */
  fullInvalidations: number;
  transactions: number;
  commits: number;
  objectsWritten: number;
  conflicts: number;
  /** Objects whose conflict resolveConflict merged. */
  resolved: number;
  /** Re-runs of the transaction function after an unresolved CONFLICT. */
  retries: number;
  /** Objects loaded now (the LRU), and objects known (loaded or ghost). */
  cached: number;
  known: number;
}

interface Write {
  readonly m: Meta;
  readonly path: string;
  bytes: Uint8Array;
  readonly refs: string[];
  readonly newRefs: string[];
}

const RETRY = { baseMs: 0.5, capMs: 100 };
const WATCH_WAIT_MS = 30_000;
const RESOLVE_ROUNDS = 20;

export class Connection implements Jar, AsyncDisposable {
  txSerial = 0;
  /** Revision of this connection's last commit that wrote objects (0: none yet). */
  lastCommitRevision = 0;
  private tx: Transaction | undefined;
  /** Identity map: one oid, one object. Weak, so ghosts nobody holds go away. */
  private readonly objects = new Map<string, WeakRef<Persistent>>();
  private readonly finalizer = new FinalizationRegistry<string>((oid) => {
    const r = this.objects.get(oid);
    if (r !== undefined && r.deref() === undefined) this.objects.delete(oid);
  });
  /** Loaded (and changed) objects, least recently used first. */
  private readonly lru = new Map<string, Meta>();
  private changedList: Meta[] = [];
  private savedNew: Meta[] = [];
  private pending: Array<{ rev: number; oid: string }> = [];
  private watchRev: number;
  private appliedRev: number;
  private readonly ownWrites = new Map<number, Set<string>>();
  private watchWaiters: Array<() => void> = [];
  private watchError: unknown;
  private watchCtl = new AbortController();
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly counters: Omit<ConnectionStats, 'cached' | 'known'> = {
    loads: 0, loadFailures: 0, evictions: 0, invalidations: 0, fullInvalidations: 0, transactions: 0,
    commits: 0, objectsWritten: 0, conflicts: 0, resolved: 0, retries: 0,
  };
  /** Per class: the fields its constructor initialises (to know when defaults are needed). */
  private static readonly defaultKeys = new WeakMap<PersistentClass, readonly string[]>();

  constructor(private readonly layout: Layout, public cacheSize: number, private readonly onClose?: (c: Connection) => void) {
    this.watchRev = layout.store.revision;
    this.appliedRev = this.watchRev;
    this.startWatch(this.watchRev + 1);
  }

  private startWatch(from: number): void {
    const ctl = this.watchCtl;
    void (async () => {
      try {
        for await (const ev of this.layout.store.watch(this.layout.prefix, { recursive: true, fromRevision: from, signal: ctl.signal })) {
          this.onEvent(ev);
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
        const resume = LatchkeyError.is(e, 'QUOTA') ? e.info?.resumeFrom : undefined;
        if (typeof resume === 'number') {
          // A slow consumer's watch stops whole revisions short; watching again from there loses nothing.
          this.startWatch(resume);
          return;
        }
        this.watchError = e;
      }
      this.wake();
    })();
  }

  private onEvent(ev: WatchEvent): void {
    if (ev.path.startsWith(this.layout.objDir)) {
      const oid = ev.path.slice(this.layout.objDir.length);
      if (!oid.includes('/')) this.pending.push({ rev: ev.revision, oid });
    }
    if (ev.revision > this.watchRev) {
      this.watchRev = ev.revision;
      this.wake();
    }
  }

  private wake(): void {
    const ws = this.watchWaiters;
    this.watchWaiters = [];
    for (const w of ws) w();
  }

  private async waitWatch(rev: number): Promise<void> {
    const deadline = Date.now() + WATCH_WAIT_MS;
    while (this.watchRev < rev && this.watchError === undefined) {
      if (Date.now() > deadline) throw new LatchkeyError('TIMEOUT', `objects: the watch on ${this.layout.prefix} did not reach revision ${rev} in ${WATCH_WAIT_MS} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000);
        this.watchWaiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  /** Step 2 of the design: bring the cache to the snapshot R. */
  private async sync(lastObjectCommit: number, snapshot: number): Promise<void> {
    await this.waitWatch(lastObjectCommit);
    if (this.watchError !== undefined) {
      // The watch broke (history compacted, link lost): we cannot say what changed, so nothing cached is trusted.
      this.counters.fullInvalidations++;
      for (const m of [...this.lru.values()]) this.invalidateMeta(m);
      this.pending = [];
      this.watchError = undefined;
      this.watchCtl = new AbortController();
      this.watchRev = snapshot;
      this.startWatch(snapshot + 1);
    } else {
      let i = 0;
      for (; i < this.pending.length && this.pending[i]!.rev <= snapshot; i++) {
        const { rev, oid } = this.pending[i]!;
        if (this.ownWrites.get(rev)?.has(oid)) continue;
        const obj = this.objects.get(oid)?.deref();
        if (obj !== undefined) this.invalidateMeta(metaOf(obj));
      }
      if (i > 0) this.pending.splice(0, i);
    }
    for (const rev of this.ownWrites.keys()) if (rev <= snapshot) this.ownWrites.delete(rev);
    if (snapshot > this.appliedRev) this.appliedRev = snapshot;
    this.evict(Infinity);
  }

  private invalidateMeta(m: Meta): void {
    const was = m.status;
    ghostify(m);
    if (was === Status.Loaded) {
      this.lru.delete(m.oid!);
      this.counters.invalidations++;
    }
  }

  // ---- Jar -------------------------------------------------------------

  async fetchState(m: Meta): Promise<FetchedState> {
    const tx = this.tx;
    if (tx === undefined) throw notInTransaction('loading an object');
    const path = this.layout.objDir + m.oid!;
    let entry;
    try {
      entry = await tx.get(path);
      if (entry === undefined) throw new LatchkeyError('NOT_FOUND', `object ${m.oid} is not in the store (removed by pack, or never committed)`, { path });
      const dec = unpackRecord(entry.value, (oid, cn) => this.ref(oid, cn));
      const cls = classByName(dec.className);
      if (cls === undefined) throw new UnknownClassError(dec.className, m.oid!);
      if (!(m.target instanceof cls)) throw new LatchkeyError('CORRUPT', `object ${m.oid} is stored as ${dec.className} but was referenced as another class`, { path });
      this.counters.loads++;
      return { ...this.prepare(cls, dec), raw: entry.value, modRev: entry.stat.modRev };
    } catch (e) {
      this.counters.loadFailures++;
      throw e;
    }
  }

  /** migrate, then class defaults for missing fields; all before the object can see any of it. */
  private prepare(cls: PersistentClass, dec: Decoded): { fields: Record<string, unknown>; refs: string[]; mustSave: boolean } {
    let fields = dec.fields;
    if (typeof cls.migrate === 'function') fields = cls.migrate(fields) ?? fields;
    let keys = Connection.defaultKeys.get(cls);
    let fresh: Record<string, unknown> | undefined;
    if (keys === undefined) {
      fresh = this.defaultsOf(cls);
      keys = Object.keys(fresh);
      Connection.defaultKeys.set(cls, keys);
    }
    let mustSave = false;
    for (const k of keys) {
      if (Object.prototype.hasOwnProperty.call(fields, k)) continue;
      fresh ??= this.defaultsOf(cls);
      const v = fresh[k];
      fields[k] = v;
      if (isPersistent(v)) mustSave = true;
    }
    return { fields, refs: dec.refs, mustSave };
  }

  private defaultsOf(cls: PersistentClass): Record<string, unknown> {
    try {
      return fieldsOf(metaOf(new cls()));
    } catch {
      return {};
    }
  }

  accessed(m: Meta): void {
    m.lastTx = this.txSerial;
    if (m.status === Status.Loaded || m.status === Status.Changed) {
      const oid = m.oid!;
      this.lru.delete(oid);
      this.lru.set(oid, m);
      if (this.lru.size > this.cacheSize) this.evict(32);
    }
  }

  registerChanged(m: Meta): void {
    if (this.tx === undefined) throw notInTransaction('changing a persistent object');
    this.changedList.push(m);
  }

  /** LRU eviction back to ghosts: never a changed object, never one touched in the running transaction. */
  private evict(maxScan: number): void {
    let scanned = 0;
    for (const [oid, m] of this.lru) {
      if (this.lru.size <= this.cacheSize || scanned++ >= maxScan) break;
      if (m.status !== Status.Loaded || (this.tx !== undefined && m.lastTx === this.txSerial)) continue;
      ghostify(m);
      this.lru.delete(oid);
      this.counters.evictions++;
    }
  }

  /** The object for a stored reference: the cached one, or a new ghost. */
  private ref(oid: string, className: string): Persistent {
    const had = this.objects.get(oid)?.deref();
    if (had !== undefined) return had;
    const cls = classByName(className);
    if (cls === undefined) throw new UnknownClassError(className, oid);
    const g = makeGhost(cls, oid, this);
    this.remember(oid, g);
    return g;
  }

  private remember(oid: string, obj: Persistent): void {
    this.objects.set(oid, new WeakRef(obj));
    this.finalizer.register(obj, oid);
  }

  // ---- transactions -----------------------------------------------------

  /**
   * Runs `fn(root)` in a transaction of this connection (one at a time, in
   * call order), committing when it returns; re-runs it on an unresolved
   * CONFLICT as `store.transaction` does.
   */
  transaction<T>(fn: (root: PMap) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    if (this.closed) return Promise.reject(new LatchkeyError('CLOSED', 'the object connection is closed'));
    const run = this.queue.then(() => this.run(fn, options));
    this.queue = run.catch(() => {});
    return run;
  }

  private async run<T>(fn: (root: PMap) => Promise<T>, options: TransactionOptions): Promise<T> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TRANSACTION_TIMEOUT_MS;
    const start = Date.now();
    this.counters.transactions++;
    for (let attempt = 0; ; attempt++) {
      throwIfAborted(options.signal);
      if (this.closed) throw new LatchkeyError('CLOSED', 'the object connection is closed');
      this.txSerial++;
      const tx = this.layout.store.begin();
      this.tx = tx;
      let conflict: LatchkeyError;
      try {
        // The first read fixes the snapshot R; a path nobody writes, so it never makes the transaction conflict.
        await tx.exists(this.layout.anchorPath);
        // Read after R outside the transaction (no witness: writers never conflict on tid): every object
        // commit ≤ R is ≤ this tid's modRev, so once the watch reached it, every change ≤ R is known.
        const tid = await this.layout.store.get(this.layout.tidPath);
        await this.sync(tid?.stat.modRev ?? 0, tx.snapshotRevision);
        const root = await this.root();
        const result = await fn(root);
        throwIfAborted(options.signal);
        await this.commit(tx);
        return result;
      } catch (e) {
        this.rollback();
        if (tx.state === 'open') await tx.abort().catch(() => {});
        if (!LatchkeyError.is(e, 'CONFLICT')) throw e;
        conflict = e;
      } finally {
        this.tx = undefined;
      }
      this.counters.conflicts++;
      if ((options.retries !== undefined && attempt >= options.retries) || Date.now() - start >= timeoutMs) throw conflict;
      this.counters.retries++;
      await sleep(backoffMs(RETRY, attempt), options.signal);
    }
  }

  private async root(): Promise<PMap> {
    const r = this.ref('0', 'latchkey.PMap');
    assert(r instanceof PMap, 'the root object is a PMap');
    try {
      await r.load();
    } catch (e) {
      if (!LatchkeyError.is(e, 'NOT_FOUND') || e instanceof UnknownClassError) throw e;
      const m = metaOf(r);
      installNew(m);
      this.accessed(m);
      m.self.changed();
    }
    return r;
  }

  private rollback(): void {
    for (const m of this.changedList) {
      if (m.status === Status.Changed) {
        m.status = Status.Loaded;
        this.lru.delete(m.oid!);
        ghostify(m);
      }
    }
    for (const m of this.savedNew) {
      this.objects.delete(m.oid!);
      this.lru.delete(m.oid!);
      m.oid = undefined;
      m.jar = undefined;
      m.status = Status.New;
      m.modRev = 0;
    }
    this.changedList = [];
    this.savedNew = [];
  }

  /** The changed objects' stored form, discovering and naming new objects they reference. */
  private collectWrites(): Write[] {
    const out: Write[] = [];
    const seen = new Set<Meta>();
    const queue = [...this.changedList];
    while (queue.length > 0) {
      const m = queue.pop()!;
      if (seen.has(m) || m.status !== Status.Changed) continue;
      seen.add(m);
      const name = nameOfClass(m.target.constructor);
      const label = `${name ?? (m.target.constructor as { name: string }).name}(${m.oid})`;
      if (name === undefined) throw new NotSerializableError(label, 'its class is not registered with @persistent');
      const refs: string[] = [];
      const onRef = (obj: Persistent, path: string): PersistentRef => {
        const om = metaOf(obj);
        if (om.jar !== undefined && om.jar !== this) throw new NotSerializableError(path, 'an object of another connection');
        const cn = nameOfClass(om.target.constructor);
        if (cn === undefined) throw new NotSerializableError(path, `an instance of ${(om.target.constructor as { name: string }).name}, whose class is not registered with @persistent`);
        if (om.status === Status.New) {
          om.oid = newOid();
          om.jar = this;
          om.status = Status.Changed;
          om.modRev = 0;
          om.lastTx = this.txSerial;
          this.remember(om.oid, om.self);
          this.lru.set(om.oid, om);
          this.savedNew.push(om);
          queue.push(om);
        }
        refs.push(om.oid!);
        return new PersistentRef(om.oid!, cn);
      };
      const walked: Record<string, unknown> = {};
      for (const k of Object.keys(m.target)) walked[k] = walk(m.target[k], `${label}.${k}`, onRef, new Set());
      const bytes = packRecord(name, walked);
      if (m.modRev !== 0 && sameBytes(m.raw, bytes)) {
        m.status = Status.Loaded;
        continue;
      }
      const before = new Set(m.refs);
      out.push({ m, path: this.layout.objDir + m.oid!, bytes, refs, newRefs: refs.filter((o) => !before.has(o)) });
    }
    return out;
  }

  private async commit(tx: Transaction): Promise<void> {
    const writes = this.collectWrites();
    if (writes.length === 0) {
      await tx.commit();
      this.changedList = [];
      return;
    }
    let result: CommitResult;
    let resolved = new Set<Meta>();
    try {
      await this.issue(tx, writes, async (w) => {
        await tx.set(w.path, w.bytes, w.m.modRev === 0 ? { ifAbsent: true } : { ifModRev: w.m.modRev });
      });
      result = await tx.commit();
    } catch (e) {
      if (!LatchkeyError.is(e, 'CONFLICT') || !this.resolvable(e, writes)) throw e;
      if (tx.state === 'open') await tx.abort().catch(() => {});
      ({ result, resolved } = await this.resolve(writes));
    }
    const mine = new Set<string>();
    for (const w of writes) {
      const m = w.m;
      m.raw = w.bytes;
      m.modRev = result.revision;
      m.refs = w.refs;
      m.status = Status.Loaded;
      mine.add(m.oid!);
      if (resolved.has(m)) this.invalidateMeta(m);
    }
    this.ownWrites.set(result.revision, mine);
    this.lastCommitRevision = result.revision;
    this.changedList = [];
    this.savedNew = [];
    this.counters.commits++;
    this.counters.objectsWritten += writes.length;
  }

  /** Issues the writes, the existence checks of new references and the tid add, pipelined. */
  private async issue(tx: Transaction, writes: readonly Write[], write: (w: Write) => Promise<void>): Promise<void> {
    const fresh = new Set(writes.filter((w) => w.m.modRev === 0).map((w) => w.m.oid!));
    const checked = new Set<string>();
    const ops: Promise<void>[] = writes.map(write);
    for (const w of writes) {
      for (const oid of w.newRefs) {
        if (fresh.has(oid) || checked.has(oid)) continue;
        checked.add(oid);
        ops.push(tx.check(this.layout.objDir + oid, { exists: true }));
      }
    }
    const settled = await Promise.allSettled(ops);
    for (const s of settled) if (s.status === 'rejected') throw s.reason;
    await tx.add(this.layout.tidPath, 1);
  }

  private resolvable(e: LatchkeyError, writes: readonly Write[]): boolean {
    const w = writes.find((x) => x.path === e.path);
    return w !== undefined && w.m.modRev !== 0 && typeof (w.m.target.constructor as PersistentClass).resolveConflict === 'function';
  }

  /** Step 4 of the design: re-read what moved, merge with resolveConflict, write with ifModRev = committed. */
  private async resolve(writes: readonly Write[]): Promise<{ result: CommitResult; resolved: Set<Meta> }> {
    let last: unknown;
    for (let round = 0; round < RESOLVE_ROUNDS; round++) {
      const tx = this.layout.store.begin();
      const resolved = new Set<Meta>();
      try {
        await this.issue(tx, writes, async (w) => {
          if (w.m.modRev === 0) return tx.set(w.path, w.bytes, { ifAbsent: true });
          const cur = await tx.get(w.path);
          if (cur !== undefined && cur.stat.modRev === w.m.modRev) return tx.set(w.path, w.bytes, { ifModRev: w.m.modRev });
          const cls = w.m.target.constructor as PersistentClass;
          if (cur === undefined || w.m.raw === undefined || typeof cls.resolveConflict !== 'function') {
            throw new LatchkeyError('CONFLICT', `object ${w.m.oid} changed and cannot be merged`, { path: w.path });
          }
          const merged = mergeState(cls, w.m.raw, cur.value, w.bytes, w.path);
          resolved.add(w.m);
          return tx.set(w.path, merged, { ifModRev: cur.stat.modRev });
        });
        const result = await tx.commit();
        this.counters.resolved += resolved.size;
        return { result, resolved };
      } catch (e) {
        if (tx.state === 'open') await tx.abort().catch(() => {});
        if (!LatchkeyError.is(e, 'CONFLICT') || e.info?.unresolvable === true) throw e;
        last = e;
      }
    }
    throw last;
  }

  // ---- lifetime and figures ---------------------------------------------

  stats(): ConnectionStats {
    return { ...this.counters, cached: this.lru.size, known: this.objects.size };
  }

  /** Turns every unchanged loaded object into a ghost (ZODB's cacheMinimize). */
  minimize(): void {
    for (const m of [...this.lru.values()]) {
      if (m.status !== Status.Loaded) continue;
      ghostify(m);
      this.lru.delete(m.oid!);
      this.counters.evictions++;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    this.watchCtl.abort();
    this.wake();
    this.onClose?.(this);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function mergeState(cls: PersistentClass, oldRaw: Uint8Array, committedRaw: Uint8Array, mineRaw: Uint8Array, path: string): Uint8Array {
  const old = unpackRecord(oldRaw);
  const committed = unpackRecord(committedRaw);
  const mine = unpackRecord(mineRaw);
  const refuse = (why: string, cause?: unknown): LatchkeyError =>
    new LatchkeyError('CONFLICT', `resolveConflict could not merge ${path}: ${why}`, { path, cause, info: { unresolvable: true } });
  if (committed.className !== mine.className) throw refuse('the class changed');
  let state: Record<string, unknown>;
  try {
    state = cls.resolveConflict!(old.fields, committed.fields, mine.fields);
  } catch (e) {
    throw refuse((e as Error).message, e);
  }
  const walked: Record<string, unknown> = {};
  for (const k of Object.keys(state)) walked[k] = walk(state[k], `${mine.className}.${k}`, undefined, new Set());
  return packRecord(mine.className, walked);
}

function newOid(): string {
  const a = new Uint32Array(2);
  globalThis.crypto.getRandomValues(a);
  return a[0]!.toString(16).padStart(8, '0') + a[1]!.toString(16).padStart(8, '0');
}

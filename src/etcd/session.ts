/**
 * A session on etcd is an etcd lease. Its ephemeral nodes and lock requests
 * are keys attached to the lease, so etcd deletes them when the lease ends,
 * whether the session closed or its process died.
 *
 * Lease safety (docs/architecture.md "Leases"): a lock must never be used
 * after etcd could have handed it to someone else. etcd ends a lease TTL
 * after the last keep-alive it received; this client only knows when it
 * *sent* the keep-alives etcd answered. So the session counts its lease as
 * good until (send time of the newest answered keep-alive) + TTL, and gives
 * up a margin (a quarter of the TTL, at least 500 ms) before that: it ends
 * itself (SESSION_EXPIRED), its locks' signals abort, and only then could
 * etcd expire the lease. Keep-alives go out every TTL/3 (etcd3's default),
 * so a healthy link never comes near the margin.
 */
import { createHash, randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { Entry, Listing, ListOptions, Lock, LockInfo, LockOptions, MultiResult, Transaction, WriteOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { AtomicOp, WriteOp, Workspace } from '../core/ops.js';
import { parsePath } from '../core/path.js';
import { type Node, lookup, walkTree } from '../core/tree.js';
import type { CheckedMultiOp, CreateFlags, DeleteFlags, SetConditions } from '../edge/args.js';
import { entryOfNode, listNode } from '../edge/entry.js';
import { applyMultiOps, multiWriteOps } from '../edge/multi.js';
import { SessionEdge } from '../edge/session.js';
import { REMOTE_RETRY, type RetryCounters } from '../util/retry.js';
import { type EtcdBackend, etcdError } from './backend.js';
import type { PlanBuilder } from './commit.js';
import { type Locks, type LockOwner } from './locks.js';
import { KeepAliveHedge, keepAliveOnce } from './faults.js';
import { EtcdTransaction, writeTargets } from './transaction.js';

/** What a session needs of its lease: etcd3's `Lease`, or one adopted from another front-end (adopt.ts). */
export interface SessionLease {
  on(event: 'keepaliveFired', fn: () => void): unknown;
  /** `res.TTL`: the TTL etcd gave the lease at this keep-alive (seconds), when the lease says. */
  on(event: 'keepaliveSucceeded', fn: (res?: { TTL?: string }) => void): unknown;
  /** The keep-alive stream failed: its unanswered keep-alives will never be answered. */
  on(event: 'keepaliveFailed', fn: () => void): unknown;
  on(event: 'lost', fn: (err: Error) => void): unknown;
  grant(): Promise<string>;
  revoke(): Promise<unknown>;
  /** Stops keeping it alive, without revoking it (the session moved to another front-end). */
  release(): void;
}

/** A live lease taken over from another front-end (adopt.ts): the session resumes on it. */
export interface AdoptedLease {
  readonly lease: SessionLease;
  /** The lease's TTL as granted, seconds. */
  readonly ttl: number;
  /** Epoch ms: the lease lives at least until then (etcd's remaining TTL, measured from before asking). */
  readonly goodUntil: number;
  /** The session record's tag: ours now (see `resumable`). */
  readonly tag: string;
  /** The session record as this front-end wrote it (compared before the session's end revokes the lease). */
  readonly record: Buffer;
}

/**
 * Until when keep-alive answers say the lease lives. Both lease kinds fire
 * keep-alives on a timer whether or not the last one was answered, and a
 * stream answers in order: an answer is credited from the send time of the
 * oldest unanswered keep-alive, with the TTL the answer gives (at most the
 * granted one). Crediting from the newest send, or from the answer's
 * arrival, would let the session believe its lease lives longer than etcd
 * counts it.
 */
export class KeepAliveCredit {
  private readonly sent: number[] = [];
  constructor(private readonly ttlSeconds: number) {}

  /** A keep-alive is about to be sent at `now` (epoch ms). */
  fired(now: number): void {
    if (this.dead) return;
    // Bounded: with no answers the session ends anyway; a send not recorded only makes later credits older (safe).
    if (this.sent.length < 64) this.sent.push(now);
  }

  /** An answer came (its TTL, seconds, when known): the epoch ms the lease lives until, or undefined (no credit). */
  answered(ttl: string | number | undefined): number | undefined {
    if (this.dead) return undefined;
    const sent = this.sent.shift();
    if (sent === undefined) return undefined; // an answer we cannot date
    const n = ttl === undefined ? this.ttlSeconds : Number(ttl);
    const secs = Number.isFinite(n) ? Math.min(this.ttlSeconds, n) : this.ttlSeconds;
    return secs > 0 ? sent + secs * 1000 : undefined;
  }

  /**
   * The stream failed. etcd3 then opens a new stream but leaves its
   * listener on the old one, so an old answer arriving late is reported
   * like a new one and would be matched to a later send (credit too long).
   * The stream's answers are never credited again: the hedge keeps the
   * lease alive alone (faults.ts KeepAliveHedge.alone).
   */
  failed(): void {
    this.sent.length = 0;
    this.dead = true;
  }
  private dead = false;
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

export class EtcdSession extends SessionEdge implements LockOwner {
  private idValue = '';
  readonly name: string;
  closed = false;
  private readonly txs = new Set<EtcdTransaction>();
  private readonly lease: SessionLease;
  private readonly granted: Promise<void>;
  /** Tags this session's record P/s/ID: a record with another tag means another front-end resumed it. */
  private tag: string;
  private unlistenMoved: (() => void) | undefined;
  /** The secret a client presents to resume this session on another front-end (set by `resumable`). */
  secret: string | undefined;
  /** ms after a request's send time that the lease certainly outlives this front-end's answer to it (the margin less the check period). */
  readonly resumeMs: number;
  private readonly endController = new AbortController();
  private goodUntil = Infinity;
  private readonly credit: KeepAliveCredit;
  private timer: NodeJS.Timeout | undefined;
  private counter = 0;
  /**
   * Between the session id and the counter in its lock requests' ids: empty
   * for a fresh session, a random generation for an adopted one, so ids
   * never repeat across front-ends (a late enqueue of the old front-end's
   * cannot name a request of the new one's).
   */
  private readonly idGeneration: string;
  /** The session record P/s/ID as this front-end wrote it, once resumable or adopted. */
  private record: Buffer | undefined;
  private endReason: LatchkeyError | undefined;
  gaveUp = false;

  constructor(protected readonly backend: EtcdBackend, protected readonly lockService: Locks, name?: string, adopted?: AdoptedLease) {
    super();
    backend.sessionsOpen++;
    setMaxListeners(0, this.endController.signal); // every lock and waiter of the session listens to its end
    const ttl = adopted?.ttl ?? backend.ttlSeconds;
    this.lease = adopted?.lease ?? backend.leaseClient.lease(ttl);
    this.idGeneration = adopted === undefined ? '' : `${randomBytes(6).toString('hex')}.`;
    this.record = adopted?.record;
    this.tag = adopted?.tag ?? randomBytes(9).toString('base64');
    const marginMs = Math.max(500, (ttl * 1000) / 4);
    const checkMs = Math.min(250, marginMs / 2);
    this.resumeMs = Math.floor(marginMs - checkMs);
    // Credit from the oldest unanswered send (KeepAliveCredit); a keep-alive
    // stuck on its stream gets a second one on a fresh stream, credited from
    // its own send time (faults.ts KeepAliveHedge).
    this.credit = new KeepAliveCredit(ttl);
    const hedge = new KeepAliveHedge({
      afterMs: Math.max(1000, (ttl * 1000) / 10),
      // alone, well inside the margin the session keeps (a quarter TTL, at least 500 ms)
      aloneEveryMs: Math.min(Math.max(1000, (ttl * 1000) / 10), (ttl * 1000) / 4),
      send: (timeoutMs) => keepAliveOnce(backend.leaseClient, this.idValue, timeoutMs),
      credit: (sentAt, secs) => {
        this.goodUntil = Math.max(this.goodUntil === Infinity ? 0 : this.goodUntil, sentAt + Math.min(ttl, secs) * 1000);
      },
      gone: () => this.die(`its lease ${this.idValue} has expired`),
    });
    this.lease.on('keepaliveFired', () => {
      const now = Date.now();
      this.credit.fired(now);
      hedge.fired(now);
    });
    this.lease.on('keepaliveSucceeded', (res) => {
      hedge.answered();
      const until = this.credit.answered(res?.TTL);
      if (until !== undefined) this.goodUntil = Math.max(this.goodUntil === Infinity ? 0 : this.goodUntil, until);
    });
    this.lease.on('keepaliveFailed', () => {
      hedge.failed();
      this.credit.failed();
      hedge.alone();
    });
    this.lease.on('lost', (err) => this.die(`its lease was lost: ${err.message}`));
    const grantSent = Date.now();
    this.granted = this.lease.grant().then((id) => {
      // Ended before its lease came (a refused hello, a closed connection): no renewal watch to start.
      if (this.closed) return;
      this.idValue = id;
      this.goodUntil = Math.max(this.goodUntil === Infinity ? 0 : this.goodUntil, adopted?.goodUntil ?? grantSent + ttl * 1000);
      if (adopted !== undefined) this.watchMoved();
      this.timer = setInterval(() => {
        hedge.tick(Date.now());
        if (Date.now() > this.goodUntil - marginMs) this.die('its lease could not be renewed in time (the client gave up before etcd could expire it)');
      }, checkMs);
      this.timer.unref();
    }, (e: unknown) => {
      this.die(`its lease could not be granted: ${e instanceof Error ? e.message : String(e)}`);
      throw etcdError(e);
    });
    this.granted.catch(() => {});
    this.name = name ?? 'session';
  }

  get id(): string {
    return this.idValue;
  }

  get endSignal(): AbortSignal {
    return this.endController.signal;
  }

  /** Resolves once the lease is granted (the session has its id). */
  ready(): Promise<void> {
    return this.granted;
  }

  /**
   * Makes the session resumable on another front-end: a secret for its
   * client, whose digest goes into the session record P/s/ID (attached to
   * the lease, so it ends with the session). Resolves to the secret.
   */
  async resumable(): Promise<string> {
    await this.granted;
    this.checkOpen();
    const secret = randomBytes(24).toString('base64url');
    const key = Buffer.from(this.backend.keys.of('s', this.idValue));
    const value = Buffer.from(JSON.stringify({ h: sha256(secret), n: this.name, o: this.tag }));
    // Only onto no record: a late copy of this Txn (backend.send resends after a deadline) cannot put this
    // front-end's tag back over an adopting front-end's.
    const rev = await this.backend.send({
      compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
      empty: false,
      success: [{ request_put: { key, value, lease: this.idValue } }, { request_put: { key: Buffer.from(this.backend.mirror.revKey), value: Buffer.alloc(0) } }],
    });
    if (rev === undefined) throw new LatchkeyError('INTERNAL', `session ${this.idValue} already has a session record`);
    this.record = value;
    this.secret = secret;
    this.watchMoved();
    return secret;
  }

  /** Another front-end resuming this session rewrites its record with its own tag: this one then lets go, without revoking. */
  private watchMoved(): void {
    if (this.unlistenMoved !== undefined) return;
    this.unlistenMoved = this.backend.mirror.listen((changes) => {
      for (const c of changes) {
        if (c.kind !== 's' || c.rest !== this.idValue || c.type !== 'put' || c.value === undefined) continue;
        let tag: unknown;
        try {
          tag = (JSON.parse(Buffer.from(c.value).toString()) as { o?: unknown }).o;
        } catch {
          continue;
        }
        if (tag !== this.tag) this.moved();
      }
    });
  }

  /** Resumed elsewhere: end here as if closed, but leave the lease, its locks and ephemerals to the new front-end. */
  private moved(): void {
    this.letGo(new LatchkeyError('SESSION_EXPIRED', `session ${this.name} was resumed on another front-end`));
  }

  /**
   * Ends the session here without revoking its lease: keep-alives stop, and
   * etcd expires the lease at its TTL unless another front-end adopts it.
   * For a session that moved, and for one whose resume failed after its
   * lease was adopted (EtcdStore.resumeSession): its client still trusts
   * its locks until its resume window closes, which comes before etcd can
   * expire the lease, so they must not go to anyone else before that.
   */
  letGo(reason: LatchkeyError): void {
    if (this.closed) return;
    this.closed = true;
    this.backend.sessionsOpen--;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.unlistenMoved?.();
    this.lease.release();
    for (const tx of [...this.txs]) tx.kill('session resumed on another front-end');
    this.txs.clear();
    this.endReason = reason;
    this.endController.abort(this.endReason);
  }

  nextId(): string {
    return `${this.idValue}.${this.idGeneration}${++this.counter}`;
  }

  /**
   * Before a resumable session's end revokes its lease: deletes its record
   * if it is still this front-end's (compared on the whole value, so on the
   * tag), which also makes a concurrent adoption fail its compare. False
   * when another front-end holds the session (its tag is in the record) or
   * the answer is unknown: then the lease must not be revoked.
   */
  private async stillOurs(): Promise<boolean> {
    if (this.record === undefined) return true;
    const key = Buffer.from(this.backend.keys.of('s', this.idValue));
    try {
      const rev = await this.backend.send({
        compare: [{ key, target: 'Value', result: 'Equal', value: this.record }],
        empty: false,
        success: [{ request_delete_range: { key } }, { request_put: { key: Buffer.from(this.backend.mirror.revKey), value: Buffer.alloc(0) } }],
      });
      if (rev !== undefined) return true;
      // Not our record: gone (the lease ended; revoking is harmless) or another front-end's.
      const kv = (await this.backend.client.kv.range({ key })).kvs[0];
      return kv === undefined;
    } catch {
      return false;
    }
  }

  checkOpen(): void {
    this.backend.checkOpen();
    if (this.closed) throw this.endReason ?? new LatchkeyError('SESSION_EXPIRED', `session ${this.name} has ended`);
  }

  protected get maxValueBytes(): number {
    return this.backend.maxValueBytes;
  }

  protected async _get(path: string): Promise<Entry | undefined> {
    await this.backend.barrier();
    const n = lookup(this.backend.mirror.root, parsePath(path));
    return n === undefined ? undefined : entryOfNode(path, n, this.backend.mirror.rev);
  }

  protected async _exists(path: string): Promise<boolean> {
    await this.backend.barrier();
    return lookup(this.backend.mirror.root, parsePath(path)) !== undefined;
  }

  protected async _list(path: string, options: ListOptions): Promise<Listing> {
    await this.backend.barrier();
    const n = lookup(this.backend.mirror.root, parsePath(path));
    const rev = this.backend.mirror.rev;
    if (n === undefined) throw new LatchkeyError('NOT_FOUND', `no node at ${path}`, { path });
    return listNode(n, rev, options);
  }

  /** A write outside a transaction, with mandatory locking and fencing. */
  private async write<T>(ops: readonly WriteOp[], options: WriteOptions, fn: (ws: Workspace) => T): Promise<{ rev: number; value: T }> {
    await this.granted;
    const targets = writeTargets(ops);
    const fence = options.fence === undefined ? undefined : typeof options.fence === 'number' ? options.fence : options.fence.token;
    const admit = async (plan: PlanBuilder, _base: Node, rev: number): Promise<boolean> => {
      const blocker = this.lockService.admitWrite(this.id, targets, plan, rev, fence);
      if (blocker === undefined) return true;
      if (options.wait === false) {
        throw new LatchkeyError('LOCKED', `${targets[0]?.path ?? '/'} is locked by session ${blocker.session} (${blocker.mode} on ${blocker.path})`, { path: blocker.path });
      }
      const signal = options.signal === undefined ? this.endSignal : AbortSignal.any([options.signal, this.endSignal]);
      try {
        await this.lockService.nextChange(signal);
      } catch {
        this.checkOpen();
        throw new LatchkeyError('ABORTED', 'write aborted while waiting for a lock');
      }
      return false;
    };
    return this.backend.write(fn, options, admit);
  }

  protected async _set(path: string, value: Uint8Array, cond: SetConditions, options: WriteOptions): Promise<number> {
    return (await this.write([{ op: 'set', path, value }], options, (ws) => ws.set(path, value, cond))).rev;
  }

  protected async _create(path: string, value: Uint8Array, flags: CreateFlags, options: WriteOptions): Promise<string> {
    const sequential = flags.sequential === true;
    await this.granted;
    const owner = flags.ephemeral ? this.id : undefined;
    return (await this.write([{ op: 'create', path, value, sequential }], options, (ws) => ws.create(path, value, { owner, sequential }))).value;
  }

  protected async _delete(path: string, flags: DeleteFlags, options: WriteOptions): Promise<boolean> {
    return (await this.write([{ op: 'delete', path }], options, (ws) => ws.delete(path, { recursive: flags.recursive === true, ifVersion: flags.ifVersion }))).value;
  }

  protected async _multi(ops: CheckedMultiOp[], options: WriteOptions): Promise<MultiResult> {
    await this.granted;
    const writes = multiWriteOps(ops, this.id);
    const r = await this.write(writes, options, (ws) => applyMultiOps(ws, writes));
    return { revision: r.rev, results: r.value };
  }

  protected async _atomic(op: AtomicOp, options: WriteOptions): Promise<number | boolean> {
    const r = await this.write([op], options, (ws) => ws.atomic(op));
    return op.op === 'append' ? r.rev : r.value as number | boolean;
  }

  protected readonly retryPolicy = REMOTE_RETRY;

  protected get retryCounters(): RetryCounters {
    return this.backend.retryCounters;
  }

  protected _begin(): Transaction {
    const tx = new EtcdTransaction(this.backend, this.lockService, { id: this.id, txEnded: (t) => this.txs.delete(t), ready: () => this.granted });
    this.txs.add(tx);
    return tx;
  }

  protected _lock(path: string, options: LockOptions): Promise<Lock> {
    return this.lockService.lock(this, path, options);
  }

  locks(): LockInfo[] {
    return [...this.lockService.mine.values()].filter((l) => l.owner === this && l.held).map((l) => l.info());
  }

  /** The session ends without a clean close: its lease is gone or given up. */
  private die(why: string): void {
    if (this.closed) return;
    this.gaveUp = true;
    this.endReason = new LatchkeyError('SESSION_EXPIRED', `session ${this.name} ended: ${why}`);
    void this.end(true).catch(() => {});
  }

  /**
   * Ends the session. A clean close deletes its ephemeral nodes in one
   * commit (so their parents' childrenRev moves, as in the engine), then
   * revokes the lease, which deletes its lock requests: locks it still holds
   * go to the next waiter with ownerDied.
   */
  async end(died: boolean): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.backend.sessionsOpen--;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.unlistenMoved?.();
    for (const tx of [...this.txs]) tx.kill(died ? 'session died' : 'session closed');
    this.txs.clear();
    this.endController.abort(this.endReason ?? new LatchkeyError('SESSION_EXPIRED', `session ${this.name} has ended`));
    if (this.backend.closed || this.idValue === '') {
      if (this.record === undefined) await this.lease.revoke().catch(() => {});
      else this.lease.release(); // cannot check the record: another front-end may hold the session
      return;
    }
    if (!(await this.stillOurs())) {
      // Resumed on another front-end (a move the mirror has not shown us, say across a reload), or unknown:
      // leave the lease to its holder, or to expire at its TTL.
      this.lease.release();
      return;
    }
    if (!died) {
      try {
        const id = this.idValue;
        await this.backend.write((ws) => {
          const mine: string[] = [];
          for (const [p, n] of walkTree(ws.root)) if (n.ephemeralOwner === id) mine.push(p);
          for (const p of mine) if (ws.get(p) !== undefined) ws.delete(p);
        }, {}, async () => true);
      } catch {
        // the lease revocation below deletes them anyway
      }
    }
    await this.lease.revoke().catch(() => {});
    // Revocation deletes keys at a revision no commit of ours names: bump the revision key so reads after this see it.
    await this.backend.send({ compare: [], success: [{ request_put: { key: Buffer.from(this.backend.mirror.revKey), value: Buffer.alloc(0) } }], empty: false }).catch(() => {});
  }

  close(): Promise<void> {
    return this.end(false);
  }
}

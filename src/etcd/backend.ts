/**
 * The etcd backend's shared state: one etcd client, the mirror, and the
 * commit loop every write goes through (see commit.ts for the Txn and
 * mirror.ts for reads).
 *
 * Commit loop. A write (or a transaction's commit) is computed on the mirror
 * at revision H and sent as one Txn whose compares hold iff nothing it
 * depended on changed since H. When etcd answers "compares failed" at
 * revision R, the loop waits until the mirror has applied R and computes
 * again: a plain write re-executes on the new head (it never conflicts; a
 * condition such as ifVersion is judged on the new head), a transaction
 * replays its record (core/transaction.ts replayAt) and fails CONFLICT only
 * when an answer differs.
 */
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import type { WriteOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { Workspace } from '../core/ops.js';
import type { Node } from '../core/tree.js';
import { type RetryCounters, newRetryCounters } from '../util/retry.js';
import { PinnedWorkspace, PlanBuilder, type TxnPlan } from './commit.js';
import { CallDeadlineError, LeaderTerm, MemberHealth } from './faults.js';
import { Keys } from './keys.js';
import { Mirror } from './mirror.js';

/** How long one etcd call may take before its outcome counts as unknown: 3 s, or a third of a longer lease. */
const CALL_TIMEOUT_MS = 3000;
/** How long a member taken out of rotation stays out (faults.ts). */
const MEMBER_OUT_MS = 5000;
/**
 * Deadline misses in a row that take a member out: one, as a stopped member
 * (SIGSTOP, a partition) must cost one deadline, not one per call; under an
 * overload that slows every member, the last member is never out (faults.ts).
 */
const DEADLINE_MISSES = 1;
/** How long a Txn waits for its answer before the leader's term is probed (faults.ts LeaderTerm). */
const TERM_CHECK_MS = 500;
/** A Txn that was still unanswered when the leader changed: its proposal may be lost (faults.ts LeaderTerm). */
class LeaderChangedError extends Error {
  constructor() {
    super('the etcd leader changed while a Txn waited for its answer (outcome unknown)');
    this.name = 'LeaderChangedError';
  }
}
/** Sends of one Txn whose calls outlived their deadline or a leader (send()). */
const SEND_ATTEMPTS = 3;

export interface EtcdOptions {
  /** host:port of each member. */
  endpoints: string[];
  /** Key prefix of this store (default /latchkey). */
  prefix?: string;
  /** Session lease TTL in seconds (default 10). */
  ttlSeconds?: number;
  /** Per-call deadline, ms (default 3 s, or a third of a longer lease). */
  callTimeoutMs?: number;
  /** etcd's request size limit (default 1.5 MiB): values up to 1 MiB fit. */
  maxValueBytes?: number;
}

export interface CommitOutcome<T> {
  rev: number;
  value: T;
}

/** Parses etcd://host:port,host:port/?prefix=/p&ttl=10&timeout=3000. */
export function parseEtcdUrl(url: string): EtcdOptions {
  const m = /^etcd:\/\/([^/?]+)\/?(\?.*)?$/.exec(url);
  if (m === null) throw new LatchkeyError('INVALID_ARGUMENT', `not an etcd URL: ${url} (etcd://host:port[,host:port…]/?prefix=/latchkey)`);
  const endpoints = m[1]!.split(',').filter((h) => h.length > 0);
  if (endpoints.length === 0 || endpoints.some((h) => !/^[^:]+:\d+$/.test(h))) throw new LatchkeyError('INVALID_ARGUMENT', `etcd URL needs host:port endpoints: ${url}`);
  const q = new URLSearchParams(m[2] ?? '');
  const o: EtcdOptions = { endpoints };
  const prefix = q.get('prefix');
  if (prefix !== null) {
    if (!prefix.startsWith('/')) throw new LatchkeyError('INVALID_ARGUMENT', `etcd prefix must start with /: ${prefix}`);
    o.prefix = prefix;
  }
  const ttl = q.get('ttl');
  if (ttl !== null) {
    const n = Number(ttl);
    if (!Number.isInteger(n) || n < 2) throw new LatchkeyError('INVALID_ARGUMENT', `etcd ttl must be an integer ≥ 2 seconds: ${ttl}`);
    o.ttlSeconds = n;
  }
  const timeout = q.get('timeout');
  if (timeout !== null) {
    const n = Number(timeout);
    if (!Number.isInteger(n) || n < 100) throw new LatchkeyError('INVALID_ARGUMENT', `etcd timeout must be an integer ≥ 100 (ms per call): ${timeout}`);
    o.callTimeoutMs = n;
  }
  return o;
}

/** An etcd error as a LatchkeyError: unreachable cluster → CONNECTION_LOST. */
export function etcdError(e: unknown): LatchkeyError {
  if (e instanceof LatchkeyError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  if (/compact/i.test(msg)) return new LatchkeyError('COMPACTED', `etcd: ${msg}`, { cause: e });
  if (/too large|request is too large/i.test(msg)) return new LatchkeyError('TOO_LARGE', `etcd: ${msg}`, { cause: e });
  return new LatchkeyError('CONNECTION_LOST', `etcd: ${msg}`, { cause: e });
}

/**
 * Errors about the caller or the connection, not about the store's state:
 * answered without a barrier (backend.write). Anything else a write's
 * computation throws (a LatchkeyError, XenStore's XsError, a plain Error)
 * may come from a stale head.
 */
// Not INVALID_ARGUMENT nor TOO_LARGE: they can be about the node as it is (no integer to add to, a parent that is
// ephemeral, an append past the limit).
const NOT_FROM_HEAD = new Set(['ABORTED', 'CLOSED', 'SESSION_EXPIRED', 'CONNECTION_LOST']);

function notFromHead(e: unknown): boolean {
  return e instanceof LatchkeyError && NOT_FROM_HEAD.has(e.code);
}

export class EtcdBackend {
  readonly client: Etcd3;
  readonly keys: Keys;
  readonly mirror: Mirror;
  readonly ttlSeconds: number;
  readonly maxValueBytes: number;
  closed = false;
  commits = 0;
  validations = 0;
  replays = 0;
  conflicts = 0;
  openTransactions = 0;
  sessionsOpen = 0;
  readonly retryCounters: RetryCounters = newRetryCounters();

  /** The session leases' client: grants, keep-alives, revokes (see newClient). */
  readonly leaseClient: Etcd3;
  /** Each client's member records (faults.ts), for stats. */
  readonly healths: MemberHealth[] = [];
  readonly callTimeoutMs: number;
  /** The raft term as last seen; a Txn that waits across a leader change is sent again (faults.ts). */
  readonly term: LeaderTerm;
  /** Commit ids (send()): this client's random prefix and a counter. */
  private readonly idPrefix = randomBytes(9).toString('base64');
  private nextId = 0;

  constructor(readonly options: EtcdOptions) {
    this.ttlSeconds = options.ttlSeconds ?? 10;
    this.callTimeoutMs = options.callTimeoutMs ?? Math.max(CALL_TIMEOUT_MS, Math.round((this.ttlSeconds * 1000) / 3));
    this.client = this.newClient();
    this.leaseClient = this.newClient(true);
    this.keys = new Keys(options.prefix ?? '/latchkey');
    this.mirror = new Mirror(this.client, this.keys, () => this.newClient());
    this.maxValueBytes = options.maxValueBytes ?? 1024 * 1024;
    this.term = new LeaderTerm(async () => {
      const r = await this.client.kv.range({ key: Buffer.from(this.mirror.revKey), serializable: true, keys_only: true });
      return Number(r.header.raft_term);
    }, TERM_CHECK_MS);
  }

  /**
   * A client of the cluster. `own`: on connections of its own (grpc-js
   * otherwise shares one HTTP/2 connection per member among every client
   * with the same options), for the session leases, whose keep-alives must
   * not share a connection, a member's fault record or etcd3's resets of a
   * member's connections (on any failed call) with the store's calls.
   */
  private newClient(own = false): Etcd3 {
    const health = new MemberHealth({ outMs: MEMBER_OUT_MS, deadlineMisses: DEADLINE_MISSES });
    this.healths.push(health);
    const callTimeoutMs = this.callTimeoutMs;
    return new Etcd3({
      hosts: this.options.endpoints.map((h) => `http://${h}`),
      dialTimeout: 3000,
      // A member that stops answering (SIGSTOP, a partition) must not hold a call forever: unary calls
      // time out (their outcome is then unknown: CONNECTION_LOST), and gRPC pings find a dead stream.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
      // Pings only while a call is open (etcd answers pings on idle connections with GOAWAY too_many_pings).
      grpcOptions: { 'grpc.keepalive_time_ms': 5000, 'grpc.keepalive_timeout_ms': 2000, ...(own ? { 'grpc.use_local_subchannel_pool': 1 } : {}) },
      // A refused connection or a missed deadline takes a member out for a while, but never the last member
      // (faults.ts); etcd3's default needs three failures and ignores deadlines.
      faultHandling: { host: (h) => health.policy(h) },
    });
  }

  async start(): Promise<void> {
    try {
      await this.mirror.start();
      // The term before the first Txn: a write no longer takes a barrier (which noted it) first (faults.ts LeaderTerm).
      await this.term.learn();
    } catch (e) {
      this.client.close();
      this.leaseClient.close();
      throw etcdError(e);
    }
  }

  checkOpen(): void {
    if (this.closed) throw new LatchkeyError('CLOSED', 'the store is closed');
    if (this.mirror.failure !== undefined) throw etcdError(this.mirror.failure);
  }

  /**
   * Waits until the mirror holds every commit acknowledged before this call:
   * one linearizable read of the revision key (see mirror.ts note 1).
   */
  async barrier(signal?: AbortSignal): Promise<void> {
    let rev = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await this.client.kv.range({ key: Buffer.from(this.mirror.revKey) });
        this.term.note(r.header.raft_term);
        rev = r.kvs.length > 0 ? Number(r.kvs[0]!.mod_revision) : 0;
        break;
      } catch (e) {
        // A read is safe to send again (to another member: the client's circuit breaker moves off a dead one).
        if (attempt >= 3 || this.closed) throw etcdError(e);
      }
    }
    await this.catchUp(rev, signal);
    this.checkOpen();
  }

  /**
   * Waits for the mirror to apply `rev`. A watch stream stuck on a member
   * that stopped answering is replaced (the mirror resumes from its revision
   * on whichever member answers); after that, CONNECTION_LOST.
   */
  async catchUp(rev: number, signal?: AbortSignal): Promise<void> {
    if (this.mirror.rev >= rev) return;
    for (let attempt = 1; attempt <= 4; attempt++) {
      // 1 s, then 2, 3, 4: a lagging stream on a loaded machine costs a needless resume, a stuck one little time.
      // A timer cleared on success, not AbortSignal.timeout: that one fires whether or not the wait is over
      // (a DOMException and an abort event per commit: 4% of the client's CPU in the 300-VM workload).
      const t = new AbortController();
      const timer = setTimeout(() => t.abort(new Error('the mirror did not catch up in time')), attempt * 1000);
      try {
        await this.mirror.waitFor(rev, signal === undefined ? t.signal : AbortSignal.any([signal, t.signal]));
        return;
      } catch (e) {
        if (signal?.aborted) throw new LatchkeyError('ABORTED', 'aborted', { cause: e });
        if (this.closed) throw new LatchkeyError('CLOSED', 'the store is closed');
        await this.mirror.restartWatch().catch(() => {});
      } finally {
        clearTimeout(timer);
      }
    }
    throw new LatchkeyError('CONNECTION_LOST', `etcd: this client's view did not reach revision ${rev} (no member streams events)`);
  }

  /**
   * Sends a plan; undefined when its compares failed (after the mirror
   * caught up with the revision that failed them).
   *
   * Every Txn that writes puts a fresh commit id into the revision key, and
   * the mirror remembers the ids it saw. etcd3 resends a call whose
   * connection failed, so an answer "compares failed" may be the resend of a
   * Txn that did apply: the id tells (the mirror has seen every revision up
   * to the answer's). A call that failed outright is CONNECTION_LOST unless
   * its id shows up by then: its outcome is unknown, as on any network.
   */
  async send(plan: TxnPlan): Promise<number | undefined> {
    // Unique across clients (a random prefix per client) and cheap (randomBytes per Txn was 1.7% of the client's CPU).
    const id = this.idPrefix + (this.nextId++).toString(36);
    const success = plan.success.map((op) => (op.request_put?.key?.toString() === this.mirror.revKey ? { request_put: { key: op.request_put.key, value: Buffer.from(id) } } : op));
    let res;
    for (let attempt = 1; ; attempt++) {
      try {
        const since = this.term.term;
        const call = this.client.kv.txn({ compare: plan.compare, success, failure: [] });
        const r = await this.term.race(call, since);
        if (r === 'moved') {
          // Left to its deadline; its answer, if any, only moves the term (the id tells whether it applied).
          call.then((x) => this.term.note(x.header.raft_term), () => {});
          throw new LeaderChangedError();
        }
        res = r.value;
        this.term.note(res.header.raft_term);
        break;
      } catch (e) {
        const seen = await this.barrier().then(() => this.mirror.commits.get(id), () => undefined);
        if (seen !== undefined) {
          this.commits++;
          return seen;
        }
        // A call that outlived its deadline may still apply: sent again with the same id, it either applies
        // or fails its compares because the first did, which the id tells. Twice more at most; then its
        // outcome is unknown. Sound only for a Txn whose writes are all compared (a put of a new key compares
        // create_revision == 0) or idempotent: docs/etcd.md "Calls and members" lists them, and the one
        // exception (markUnrecoverable after a resetLock).
        // A leader change while it waited (faults.ts LeaderTerm) leaves it in the same state as a missed deadline.
        if (!(e instanceof CallDeadlineError || e instanceof LeaderChangedError) || attempt >= SEND_ATTEMPTS || this.closed) throw etcdError(e);
      }
    }
    const rev = Number(res.header.revision);
    await this.catchUp(rev);
    if (!res.succeeded) {
      const seen = this.mirror.commits.get(id);
      if (seen === undefined) return undefined;
      this.commits++;
      return seen;
    }
    this.commits++;
    return rev;
  }

  /**
   * A write outside a transaction: `fn` runs on a workspace over the head,
   * `check` (locks) may add compares or throw, and the loop re-runs both on
   * the new head whenever the Txn's compares fail.
   *
   * No barrier before the first try: the Txn's compares pin everything the
   * write's computation read (commit.ts: the nodes it wrote or deleted, the
   * nodes it checked or looked at without writing, the nearest existing
   * ancestor of each node it created, whose permissions XenStore judged and
   * copied; `check`'s lock keys), so a write computed on a head that lags the
   * cluster either applies exactly as it would have on the newest state, or
   * fails its compares (then the mirror catches up with the revision etcd
   * answered, which is after every write acknowledged before this call).
   * What the Txn cannot vouch for is an answer that writes nothing: any
   * error thrown by `fn` or `check` (EXISTS, CONFLICT, LOCKED without
   * waiting, LOCK_LOST, XenStore's EACCES, ENOENT, EQUOTA…) or a no-op (a
   * delete of an absent node). Such an answer is given only on a head that
   * is known fresh: after a barrier (one linearizable range), the write is
   * computed again. Only errors about the caller or the connection, not the
   * store's state (`notFromHead`), are answered at once. Before, every write
   * paid that range first: 2 RPCs per set instead of 1 (docs/etcd.md, Writes).
   */
  async write<T>(fn: (ws: Workspace) => T, options: WriteOptions, check: (plan: PlanBuilder, base: Node, rev: number) => Promise<boolean>): Promise<CommitOutcome<T>> {
    // True once the head holds every commit acknowledged before this call.
    let fresh = false;
    const refresh = async (): Promise<void> => {
      await this.barrier(options.signal);
      fresh = true;
    };
    const answerNow = (e: unknown): boolean => fresh || this.closed || options.signal?.aborted === true || notFromHead(e);
    for (;;) {
      this.checkOpen();
      options.signal?.throwIfAborted();
      const base = this.mirror.root;
      const baseRev = this.mirror.rev;
      const ws = new PinnedWorkspace(base, baseRev + 1, undefined, this.maxValueBytes);
      let value: T;
      try {
        value = fn(ws);
      } catch (e) {
        if (answerNow(e)) throw e;
        await refresh();
        continue;
      }
      const plan = new PlanBuilder(this.keys, base);
      plan.diff(ws, (owner) => owner);
      if (plan.writes === 0) {
        if (fresh) return { rev: baseRev, value };
        await refresh();
        continue;
      }
      let admitted: boolean;
      try {
        admitted = await check(plan, base, baseRev);
      } catch (e) {
        if (answerNow(e)) throw e;
        await refresh();
        continue;
      }
      if (!admitted) continue; // the lock state moved while waiting: compute again
      const rev = await this.send(plan.build(this.mirror.revKey));
      if (rev !== undefined) return { rev, value };
      fresh = true; // send() caught up with the revision that failed the compares
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.mirror.close();
    this.client.close();
    this.leaseClient.close();
  }
}

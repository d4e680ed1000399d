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
import { Etcd3 } from 'etcd3';
import type { WriteOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { Workspace } from '../core/ops.js';
import type { Node } from '../core/tree.js';
import type { RetryCounters } from '../util/retry.js';
import { PlanBuilder, type TxnPlan } from './commit.js';
import { Keys } from './keys.js';
import { Mirror } from './mirror.js';

export interface EtcdOptions {
  /** host:port of each member. */
  endpoints: string[];
  /** Key prefix of this store (default /latchkey). */
  prefix?: string;
  /** Session lease TTL in seconds (default 10). */
  ttlSeconds?: number;
  /** etcd's request size limit (default 1.5 MiB): values up to 1 MiB fit. */
  maxValueBytes?: number;
}

export interface CommitOutcome<T> {
  rev: number;
  value: T;
}

/** Parses etcd://host:port,host:port/?prefix=/p&ttl=10. */
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
  readonly retryCounters: RetryCounters = { txRuns: 0, txAttempts: 0, txRetries: 0, txGaveUp: 0 };

  constructor(readonly options: EtcdOptions) {
    this.client = new Etcd3({ hosts: options.endpoints.map((h) => `http://${h}`), dialTimeout: 3000 });
    this.keys = new Keys(options.prefix ?? '/latchkey');
    this.mirror = new Mirror(this.client, this.keys);
    this.ttlSeconds = options.ttlSeconds ?? 10;
    this.maxValueBytes = options.maxValueBytes ?? 1024 * 1024;
  }

  async start(): Promise<void> {
    try {
      await this.mirror.start();
    } catch (e) {
      this.client.close();
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
    let rev: number;
    try {
      const r = await this.client.kv.range({ key: Buffer.from(this.mirror.revKey) });
      rev = r.kvs.length > 0 ? Number(r.kvs[0]!.mod_revision) : 0;
    } catch (e) {
      throw etcdError(e);
    }
    await this.mirror.waitFor(rev, signal);
    this.checkOpen();
  }

  /** Sends a plan; undefined when its compares failed (after the mirror caught up with the revision that failed them). */
  async send(plan: TxnPlan): Promise<number | undefined> {
    let res;
    try {
      res = await this.client.kv.txn({ compare: plan.compare, success: plan.success, failure: [] });
    } catch (e) {
      throw etcdError(e);
    }
    const rev = Number(res.header.revision);
    await this.mirror.waitFor(rev);
    if (!res.succeeded) return undefined;
    this.commits++;
    return rev;
  }

  /**
   * A write outside a transaction: `fn` runs on a workspace over the head,
   * `check` (locks) may add compares or throw, and the loop re-runs both on
   * the new head whenever the Txn's compares fail.
   */
  async write<T>(fn: (ws: Workspace) => T, options: WriteOptions, check: (plan: PlanBuilder, base: Node, rev: number) => Promise<boolean>,
    makeWs: (base: Node, rev: number) => Workspace): Promise<CommitOutcome<T>> {
    await this.barrier(options.signal);
    for (;;) {
      this.checkOpen();
      options.signal?.throwIfAborted();
      const base = this.mirror.root;
      const baseRev = this.mirror.rev;
      const ws = makeWs(base, baseRev);
      const value = fn(ws);
      const plan = new PlanBuilder(this.keys, base);
      plan.diff(ws, (owner) => owner);
      if (plan.writes === 0) return { rev: baseRev, value };
      if (!(await check(plan, base, baseRev))) continue; // the lock state moved while waiting: compute again
      const rev = await this.send(plan.build(this.mirror.revKey));
      if (rev !== undefined) return { rev, value };
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.mirror.close();
    this.client.close();
  }
}

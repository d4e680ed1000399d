/**
 * Prometheus metrics (prom-client), on a registry of their own.
 *
 * Two kinds of source, chosen so the request path pays nothing new:
 *  - counters and gauges the engine and server already keep (stats()) are
 *    read when Prometheus scrapes (a `collect` per metric): commits,
 *    conflicts, replays, sessions, connections, locks held, watch backlog…
 *  - latencies come from the engine's observers (engine/observe.ts), each a
 *    histogram `observe` where the event happens: commit and fsync (once per
 *    sync group), lock waits (only requests that waited), snapshots.
 *
 * Names follow Prometheus conventions: `_total` counters, `_seconds`
 * histograms, base units. The list is in docs/metrics.md; a test parses the
 * output and checks every name and type there.
 */
import client from 'prom-client';
import type { EmbeddedStore } from '../engine/store.js';

type Stats = Record<string, unknown>;

/** A stats field as a number (0 when absent). */
function num(s: Stats | undefined, k: string): number {
  const v = s?.[k];
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface MetricsSources {
  readonly store: EmbeddedStore;
  /** The server's own figures (connections, watches, memory); absent without a server. */
  readonly server?: () => Stats;
}

export class Metrics {
  readonly registry = new client.Registry();
  private readonly detach: () => void;
  /** Sums and counts since start, for the console's latency charts (no histogram parsing in the browser). */
  readonly latency = { commit: { sum: 0, count: 0 }, fsync: { sum: 0, count: 0 }, lockWait: { sum: 0, count: 0 } };

  constructor(src: MetricsSources) {
    const reg = this.registry;
    const registers = [reg];
    let snap: { store: Stats; server: Stats | undefined } | undefined;
    // One stats() call per scrape, shared by every collect below.
    const stats = (): { store: Stats; server: Stats | undefined } => {
      if (snap === undefined) {
        snap = { store: src.store.stats() as unknown as Stats, server: src.server?.() };
        queueMicrotask(() => { snap = undefined; });
      }
      return snap;
    };
    const fromStats = (name: string, help: string, kind: 'counter' | 'gauge', read: () => number): void => {
      if (kind === 'counter') {
        new client.Counter({ name, help, registers, collect() { this.reset(); this.inc(Math.max(0, read())); } });
      } else {
        new client.Gauge({ name, help, registers, collect() { this.set(read()); } });
      }
    };
    const st = (k: string) => (): number => num(stats().store, k);
    const sv = (k: string) => (): number => num(stats().server, k);
    const storage = (k: string) => (): number => num(stats().store['storage'] as Stats | undefined, k);

    fromStats('latchkey_commits_total', 'Commits applied (each one revision).', 'counter', st('commits'));
    fromStats('latchkey_transaction_commits_total', 'Transaction commits (a subset of commits, plus those that changed nothing).', 'counter', st('txCommits'));
    fromStats('latchkey_validations_total', 'Transaction commits checked against a head that had moved.', 'counter', st('validations'));
    fromStats('latchkey_replays_total', 'Transaction commits replayed on a moved head that still committed.', 'counter', st('replays'));
    fromStats('latchkey_conflicts_total', 'Transaction commits refused with CONFLICT.', 'counter', st('conflicts'));
    fromStats('latchkey_deadlocks_total', 'Lock requests refused because waiting would close a cycle (DEADLOCK).', 'counter', st('deadlocks'));
    fromStats('latchkey_lock_grants_total', 'Lock grants, immediate or after a wait.', 'counter', st('lockGrants'));
    fromStats('latchkey_snapshots_total', 'Snapshots written.', 'counter', st('snapshots'));
    fromStats('latchkey_snapshot_errors_total', 'Snapshots that failed.', 'counter', st('snapshotErrors'));
    fromStats('latchkey_fsyncs_total', 'Log syncs that carried commits (group commit: one per group).', 'counter', st('groupSyncs'));
    fromStats('latchkey_revision', 'The revision readers see.', 'gauge', st('revision'));
    fromStats('latchkey_nodes', 'Nodes in the tree.', 'gauge', st('nodes'));
    fromStats('latchkey_sessions', 'Open sessions.', 'gauge', st('sessions'));
    fromStats('latchkey_open_transactions', 'Open transactions.', 'gauge', st('openTransactions'));
    fromStats('latchkey_locks_held', 'Locks held.', 'gauge', st('locksHeld'));
    fromStats('latchkey_lock_waiters', 'Lock requests waiting.', 'gauge', st('lockWaiters'));
    fromStats('latchkey_owner_died_taints', 'Paths tainted owner-died now (cleared by markConsistent or resetLock).', 'gauge', st('ownerDiedTaints'));
    fromStats('latchkey_unrecoverable_locks', 'Paths marked unrecoverable now.', 'gauge', st('unrecoverableLocks'));
    fromStats('latchkey_read_only', '1 when the store turned read-only (a failed log sync).', 'gauge', () => (stats().store['readOnly'] === undefined ? 0 : 1));
    fromStats('latchkey_log_bytes_since_snapshot', 'Log bytes written since the last snapshot.', 'gauge', storage('bytesSinceSnapshot'));
    fromStats('latchkey_recovery_seconds', 'Time the last start spent recovering the data directory.', 'gauge', () => storage('recoveryMs')() / 1000);
    if (src.server !== undefined) {
      fromStats('latchkey_connections', 'Client connections open.', 'gauge', sv('connections'));
      fromStats('latchkey_connections_accepted_total', 'Client connections accepted.', 'counter', sv('accepted'));
      fromStats('latchkey_connections_refused_total', 'Client connections refused (limit or shutdown).', 'counter', sv('refused'));
      fromStats('latchkey_watches', 'Watches open on client connections.', 'gauge', sv('watches'));
      fromStats('latchkey_watch_backlog_events', 'Watch events queued for clients, not yet sent.', 'gauge', sv('watchBacklog'));
      fromStats('latchkey_memory_charged_bytes', 'Bytes charged to the server memory budget (requests, replies, transactions, watch backlogs).', 'gauge', sv('memoryCharged'));
      fromStats('latchkey_memory_budget_bytes', 'The server memory budget.', 'gauge', sv('memoryBudget'));
      fromStats('latchkey_memory_evictions_total', 'Connections closed BUSY for the memory budget.', 'counter', sv('memoryEvictions'));
    }
    // A value cache, where the store has one: its hits and misses (absent stats read as none).
    const cache = (k: string) => (): number => {
      const s = stats().store;
      const c = s['cache'] as Stats | undefined;
      return c !== undefined ? num(c, k) : num(s, `cache${k[0]!.toUpperCase()}${k.slice(1)}`);
    };
    if (hasCache(src.store.stats() as unknown as Stats)) {
      fromStats('latchkey_cache_hits_total', 'Value cache hits.', 'counter', cache('hits'));
      fromStats('latchkey_cache_misses_total', 'Value cache misses.', 'counter', cache('misses'));
    }

    const commit = new client.Histogram({ name: 'latchkey_commit_duration_seconds', help: 'Commit latency, from submit to durable and visible (logged stores only).', buckets: LATENCY_BUCKETS, registers });
    const fsync = new client.Histogram({ name: 'latchkey_fsync_duration_seconds', help: 'Log sync (write + fdatasync) time per group of commits.', buckets: LATENCY_BUCKETS, registers });
    const lockWait = new client.Histogram({ name: 'latchkey_lock_wait_seconds', help: 'Time lock requests (kind="lock") and writes held up by a lock (kind="write") waited before their grant.', labelNames: ['kind'], buckets: LATENCY_BUCKETS, registers });
    const handoffs = new client.Counter({ name: 'latchkey_lock_handoffs_total', help: 'Grants to requests that were waiting (a lock passed from a holder to a waiter).', registers });
    const ownerDied = new client.Counter({ name: 'latchkey_owner_died_total', help: 'Locks whose holder session died holding them (each taints its path owner-died).', registers });
    const ownerDiedGrants = new client.Counter({ name: 'latchkey_owner_died_grants_total', help: 'Lock grants that carried ownerDied.', registers });
    const ended = new client.Counter({ name: 'latchkey_sessions_ended_total', help: 'Sessions ended, by reason: closed (cleanly) or died (connection lost, lease lapsed).', labelNames: ['reason'], registers });
    const snapDur = new client.Histogram({ name: 'latchkey_snapshot_duration_seconds', help: 'Time to write a snapshot.', buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300], registers });
    ended.inc({ reason: 'closed' }, 0);
    ended.inc({ reason: 'died' }, 0);
    lockWait.zero({ kind: 'lock' });
    lockWait.zero({ kind: 'write' });
    client.collectDefaultMetrics({ register: reg });

    const lat = this.latency;
    this.detach = src.store.observe({
      synced(fsyncMs, commitMs) {
        fsync.observe(fsyncMs / 1000);
        lat.fsync.sum += fsyncMs;
        lat.fsync.count++;
        for (const ms of commitMs) {
          commit.observe(ms / 1000);
          lat.commit.sum += ms;
        }
        lat.commit.count += commitMs.length;
      },
      lockGranted(e) {
        if (e.ownerDied) ownerDiedGrants.inc();
        if (!e.waited) return;
        lockWait.observe({ kind: e.admission ? 'write' : 'lock' }, e.waitMs / 1000);
        lat.lockWait.sum += e.waitMs;
        lat.lockWait.count++;
        handoffs.inc();
      },
      sessionEnded(e) {
        ended.inc({ reason: e.died ? 'died' : 'closed' });
        if (e.died) ownerDied.inc(e.locks.length);
      },
      snapshot(e) {
        if (e.error === undefined) snapDur.observe(e.ms / 1000);
      },
    });
  }

  /** The text exposition format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  close(): void {
    this.detach();
    this.registry.clear();
  }
}

function hasCache(s: Stats): boolean {
  return typeof s['cache'] === 'object' || typeof s['cacheHits'] === 'number';
}

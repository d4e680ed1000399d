/**
 * /metrics parsed by a Prometheus text-format parser: every metric that
 * docs/observability.md lists is there with its type, and the counters and
 * histograms move under a load of commits, a conflict, a replay, a lock
 * wait, a session dying with a lock, and a refused deadlock.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import parse from 'parse-prometheus-text-format';
import { connect } from '../../src/client/store.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { ADMIN, READER, served, until } from './helpers.js';

type Families = ReturnType<typeof parse>;

/** The metric table of docs/observability.md: name → type. */
function documented(): Map<string, string> {
  const doc = readFileSync(new URL('../../../docs/observability.md', import.meta.url), 'utf8');
  const out = new Map<string, string>();
  for (const m of doc.matchAll(/^\| `((?:latchkey|process)_[a-z_]+)` \| (counter|gauge|histogram) \|/gm)) out.set(m[1]!, m[2]!);
  return out;
}

interface Scrape {
  readonly fams: Families;
  readonly text: string;
}

async function scrape(get: (p: string, t?: string) => Promise<Response>): Promise<Scrape> {
  const r = await get('/metrics', ADMIN);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await r.text();
  return { fams: parse(text), text };
}

function value({ fams, text }: Scrape, name: string, labels: Record<string, string> = {}): number {
  const f = fams.find((x) => x.name === name);
  assert.ok(f !== undefined, `${name} is missing`);
  if (f.type === 'HISTOGRAM') {
    const labelled = Object.keys(labels).length > 0;
    if (!labelled) return Number(f.metrics[0]?.count ?? NaN);
    // parse-prometheus-text-format keeps one series of a labelled histogram (its labels and count lost): read
    // that series' _count line itself.
    const sel = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',');
    const m = new RegExp(`^${name}_count\\{${sel}\\} (\\d+)$`, 'm').exec(text);
    assert.ok(m !== null, `${name}_count{${sel}} is missing`);
    return Number(m[1]);
  }
  const s = f.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  assert.ok(s !== undefined, `${name}${JSON.stringify(labels)} has no sample`);
  return Number(s.value);
}

test('metrics: every documented metric is exposed with its documented type', async () => {
  await using s = await served();
  const docs = documented();
  assert.ok(docs.size >= 35, `the doc table lists ${docs.size} metrics`);
  const { fams } = await scrape(s.get);
  const byName = new Map(fams.map((f) => [f.name, f.type.toLowerCase()]));
  for (const [name, type] of docs) assert.equal(byName.get(name), type, `${name}: exposed as ${byName.get(name)}, documented as ${type}`);
  // And nothing of ours undocumented (process and nodejs metrics are prom-client's own).
  for (const f of fams) if (f.name.startsWith('latchkey_') && !f.name.startsWith('latchkey_cache_')) assert.ok(docs.has(f.name), `${f.name} is not in docs/observability.md`);
});

test('metrics: counters and histograms move under load', async () => {
  await using s = await served({ ttlMs: 60_000 });
  const before = await scrape(s.get);
  const a = await connect(s.url, { token: ADMIN, reconnect: false });
  const b = await connect(s.url, { token: ADMIN, reconnect: false });
  try {
    // Commits (each fsynced, grouped).
    await Promise.all(Array.from({ length: 200 }, (_, i) => a.set(`/load/${i % 20}`, `v${i}`)));
    // A conflict: a transaction read /c/x, someone else wrote it before the commit.
    const tx = a.begin();
    await tx.get('/c/x');
    await tx.set('/c/y', '1');
    await b.set('/c/x', 'moved');
    await assert.rejects(tx.commit(), (e: unknown) => LatchkeyError.is(e, 'CONFLICT'));
    // A replay: the transaction read /c/same, which was rewritten with the same bytes before the commit.
    await a.set('/c/same', 'same');
    const tx2 = a.begin();
    await tx2.get('/c/same');
    await tx2.set('/c/z', '1');
    await b.set('/c/same', 'same');
    assert.equal((await tx2.commit()).replayed, true);
    // A lock wait and its handoff.
    const held = await a.lock('/l/one');
    const waiting = b.lock('/l/one');
    await until(() => s.store.lockTable().waiting.length === 1, 'the waiter to queue');
    await held.release();
    const got = await waiting;
    await got.release();
    // A refused deadlock: a holds /d1 and waits for /d2; b holds /d2 and asks for /d1.
    const d1 = await a.lock('/d1');
    const d2 = await b.lock('/d2');
    const aWaits = a.lock('/d2');
    await until(() => s.store.lockTable().waiting.length === 1, 'a to wait for /d2');
    await assert.rejects(b.lock('/d1'), (e: unknown) => LatchkeyError.is(e, 'DEADLOCK'));
    await d2.release();
    await (await aWaits).release();
    await d1.release();
  } finally {
    await b.close();
  }
  // A session that dies holding a lock (its socket destroyed, no goodbye; TCP lingers for its lease): a connection
  // with a short lease on a second server would take long to set up, so the holder here is an in-process session ended as a death.
  const dying = s.store.ownedSession({ name: 'doomed' });
  await dying.lock('/l/died');
  await dying.end(true);
  await s.store.session({ name: 'brief' }).close();
  const heir = await a.lock('/l/died');
  assert.equal(heir.ownerDied, true);
  await heir.release();
  await a.close();
  await until(() => s.server.connectionCount === 0, 'the connections to close');
  await s.store.snapshot();

  const after = await scrape(s.get);
  const moved = (name: string, atLeast: number, labels: Record<string, string> = {}): void => {
    const d = value(after, name, labels) - value(before, name, labels);
    assert.ok(d >= atLeast, `${name}${JSON.stringify(labels)} moved by ${d}, expected at least ${atLeast}`);
  };
  moved('latchkey_commits_total', 200);
  moved('latchkey_fsyncs_total', 1);
  moved('latchkey_commit_duration_seconds', 200);
  moved('latchkey_fsync_duration_seconds', 1);
  moved('latchkey_conflicts_total', 1);
  moved('latchkey_validations_total', 2);
  moved('latchkey_replays_total', 1);
  moved('latchkey_lock_wait_seconds', 2, { kind: 'lock' });
  moved('latchkey_lock_handoffs_total', 2);
  moved('latchkey_lock_grants_total', 5);
  moved('latchkey_deadlocks_total', 1);
  moved('latchkey_owner_died_total', 1);
  moved('latchkey_owner_died_grants_total', 1);
  moved('latchkey_sessions_ended_total', 1, { reason: 'died' });
  moved('latchkey_sessions_ended_total', 1, { reason: 'closed' });
  moved('latchkey_connections_accepted_total', 2);
  moved('latchkey_snapshots_total', 1);
  moved('latchkey_snapshot_duration_seconds', 1);
  assert.ok(value(after, 'latchkey_revision') >= 200);
  assert.ok(value(after, 'process_cpu_seconds_total') > 0);
  // The histograms' buckets are cumulative and end at the count.
  const commit = after.fams.find((f) => f.name === 'latchkey_commit_duration_seconds')!.metrics[0]!;
  assert.equal(commit.buckets!['+Inf'], commit.count);
});

test('metrics: /metrics needs a token when the server has an auth table; any valid token reads it', async () => {
  await using s = await served();
  assert.equal((await s.get('/metrics')).status, 401);
  assert.equal((await s.get('/metrics', 'not-a-token-at-all')).status, 401);
  assert.equal((await s.get('/metrics', READER)).status, 200);
});

test('metrics: the Grafana dashboard queries only metrics the server exposes', async () => {
  await using s = await served();
  const { fams } = await scrape(s.get);
  const names = new Set(fams.map((f) => f.name));
  const dash = JSON.parse(readFileSync(new URL('../../../docs/grafana-dashboard.json', import.meta.url), 'utf8')) as { panels: Array<{ targets: Array<{ expr: string }> }> };
  const used = new Set<string>();
  for (const p of dash.panels) for (const t of p.targets) for (const m of t.expr.matchAll(/\b((?:latchkey|process|nodejs)_[a-z0-9_]+)/g)) used.add(m[1]!.replace(/_bucket$/, ''));
  assert.ok(used.size >= 20, `the dashboard uses ${used.size} metrics`);
  for (const n of used) {
    if (n.startsWith('latchkey_cache_')) continue; // only with a value cache (documented)
    assert.ok(names.has(n), `the dashboard queries ${n}, which /metrics does not expose`);
  }
});

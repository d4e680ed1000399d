/**
 * `npm run bench -- etcd`: latchkey on an etcd cluster (src/etcd) beside the etcd3 client's own recipes on the same three-member cluster in one run: the floor (get, set, list of 20 children against plain etcd calls); lock acquire+release and contended handoff (2 and 8 contenders) against etcd3's `Lock` and etcd's Mutex recipe; the 300-VM workload (bench/vm-workload.ts) against etcd3's STM transactions, with the conflicts each side surfaces; and the failover pause (the leader SIGKILLed during a steady write load: the longest gap between acknowledged writes, latchkey and plain etcd3 side by side).
 *
 * Rates and the VM workload alternate rounds between the sides (bench/util
 * `alternate`); the failover rounds run both sides at once through the same
 * kill and election. Load averages are printed with each figure.
 *
 * The cluster: three members started here on free loopback ports in a temp
 * dir (bench/peers/etcd-cluster.ts; needs the etcd binary, `npm run
 * bench:setup` installs it) and stopped after; "not available" when there is
 * no binary. LK_ETCD_ENDPOINTS=host:port,… runs on a cluster given instead
 * (then no failover: its members are not this process's to kill). --quick
 * runs every part small (a few seconds each).
 */
import os from 'node:os';
import { Etcd3 } from 'etcd3';
import { connectEtcd, type EtcdStore } from '../../src/etcd/store.js';
import { type Contender, handoff, type HandoffResult } from '../lock-handoff.js';
import { EtcdCluster } from '../peers/etcd-cluster.js';
import { EtcdSession, etcd3Lock, etcdLock, stmKv } from '../peers/etcd.js';
import { peerVmWorkload } from '../peers/vm-peer.js';
import { alternate, type BenchOptions, type Cell, cellOf, median, note, now, peerInfo, ratio, roundPlan, table } from '../util.js';
import { vmWorkload } from '../vm-workload.js';

/** Runs `fn` for `ms`, sequentially; ops per second. */
async function perSec(fn: () => Promise<unknown>, ms: number): Promise<number> {
  const t0 = now();
  let n = 0;
  while (now() - t0 < ms) {
    await fn();
    n++;
  }
  return n / ((now() - t0) / 1000);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const load = (): string => os.loadavg()[0]!.toFixed(2);

interface Ctx {
  o: BenchOptions;
  store: EtcdStore;
  raw: Etcd3;
  prefix: string;
}

async function floor({ o, store, raw, prefix }: Ctx): Promise<void> {
  const ms = o.quick ? 300 : 2000;
  const plan = o.quick ? { rounds: 1, warmup: 0 } : { rounds: 3, warmup: 1 };
  const rawSession = await EtcdSession.open(raw, 10);
  const lockNs = raw.namespace(`${prefix}-lock/`);
  try {
    for (let i = 0; i < 20; i++) {
      await store.set(`/dir/c${i}`, 'x');
      await raw.put(`${prefix}-raw/dir/c${i}`).value('x');
    }
    await store.set('/k', 'v');
    await raw.put(`${prefix}-raw/k`).value('v');
    const cases: Array<[string, Array<[string, () => Promise<unknown>]>]> = [
      ['get', [['latchkey', () => store.get('/k')], ['plain', () => raw.get(`${prefix}-raw/k`).buffer()]]],
      ['set', [['latchkey', () => store.set('/k', 'v')], ['plain', () => raw.put(`${prefix}-raw/k`).value('v').exec()]]],
      ['list 20 children', [['latchkey', () => store.list('/dir')], ['plain', () => raw.getAll().prefix(`${prefix}-raw/dir/`).keys()]]],
      ['lock + release (uncontended)', [
        ['latchkey', async () => (await store.lock('/l')).release()],
        ['plain', async () => (await etcdLock(rawSession, `${prefix}-raw/l`)).release()],
        ['etcd3 Lock', async () => (await etcd3Lock(lockNs, 'l')).release()],
      ]],
    ];
    const rows: Cell[][] = [];
    for (const [name, sides] of cases) {
      const r = await alternate(`floor: ${name}`, sides.map(([n, fn]) => ({ name: n, run: () => perSec(fn, ms) })), plan);
      const lk = cellOf(r.get('latchkey'));
      rows.push([name, lk, cellOf(r.get('plain')), r.has('etcd3 Lock') ? cellOf(r.get('etcd3 Lock')) : '', ratio(lk, cellOf(r.get('plain')))]);
    }
    table(`latchkey on etcd vs plain etcd3, one client, sequential calls, ops/s (higher is better)`,
      ['operation', 'latchkey on etcd', 'plain etcd3 (locks: Mutex recipe)', 'etcd3 Lock', 'latchkey / plain'], rows);
    note('latchkey reads are linearizable: one range of the revision key, then the answer from the client\'s mirror; a set is one Txn (its compare on the node\'s mod revision, the node\'s put and the revision key\'s put; no range before it), after which the client waits for its mirror to apply it; plain etcd3\'s put is one put without a compare. The plain lock is etcd\'s Mutex recipe on a session lease (bench/peers/etcd.ts); etcd3\'s `Lock` grants a lease of its own for every acquire and revokes it on release.');
  } finally {
    await rawSession.close();
  }
}

async function handoffs({ o, store, raw, prefix }: Ctx): Promise<void> {
  const ms = o.quick ? 300 : 2000;
  const maxGrants = o.quick ? 200 : 2000;
  const plan = o.quick ? { rounds: 1, warmup: 0 } : { rounds: 3, warmup: 1 };
  const lockNs = raw.namespace(`${prefix}-lock/`);
  const kinds: Array<[string, (i: number) => Promise<Contender>]> = [
    ['latchkey on etcd', async () => {
      const s = store.session();
      return { acquire: (n) => s.lock(n), close: () => s.close() };
    }],
    ['etcd3 Lock (try, watch, retry)', async () => ({ acquire: (n) => etcd3Lock(lockNs, n), close: async () => {} })],
    ['etcd Mutex recipe', async () => {
      const s = await EtcdSession.open(raw, 10);
      return { acquire: (n) => etcdLock(s, `${prefix}-mutex${n}`), close: () => s.close() };
    }],
  ];
  const rows: Cell[][] = [];
  for (const c of [2, 8]) {
    const details = new Map<string, HandoffResult[]>();
    const r = await alternate(`handoff, ${c} contenders`, kinds.map(([name, make]) => ({
      name,
      run: async (round: number) => {
        const h = await handoff(make, c, ms, maxGrants, '/handoff');
        if (round >= 0) details.set(name, [...(details.get(name) ?? []), h]);
        return h.perSec;
      },
    })), plan);
    const cell = (name: string, f: (h: HandoffResult) => number): Cell => {
      const a = r.get(name);
      if (a === undefined || typeof a.median === 'string') return cellOf(a);
      const hs = (details.get(name) ?? []).filter((h) => h.handoffs > 0);
      return hs.length === 0 ? 'no handoff' : median(hs.map(f));
    };
    for (const [label, f] of [['handoffs/s', (h: HandoffResult) => h.perSec], ['handoff p50 ms', (h: HandoffResult) => h.p50], ['handoff p99 ms', (h: HandoffResult) => h.p99],
      ['grants / handoffs (all rounds)', undefined]] as const) {
      const cells = kinds.map(([name]) => {
        if (f !== undefined) return cell(name, f);
        const hs = details.get(name) ?? [];
        return `${hs.reduce((x, h) => x + h.grants, 0)} / ${hs.reduce((x, h) => x + h.handoffs, 0)}`;
      });
      rows.push([`${label}, ${c} contenders`, ...cells, f === undefined ? '' : ratio(cells[0], cells[1])]);
    }
  }
  table('lock handoff on one exclusive lock (contenders in one process, one client connection per system)', ['measure', ...kinds.map(([n]) => n), 'latchkey / etcd3 Lock'], rows, { chart: false });
  note(`Handoff: C contenders loop acquire → release on one lock for ${ms} ms (or ${maxGrants} grants) a round; handoffs/s counts grants to a different contender than the last holder; latency is from the holder's release call to the next holder's grant (bench/lock-handoff.ts, as in compare-locks). latchkey contenders are sessions (leases) of one store; etcd3 Lock contenders try \`lock(key).acquire()\` and on EtcdLockFailedError watch the key until it is deleted, then try again (a herd: every waiter wakes and races); Mutex-recipe contenders each hold a session lease and watch only their predecessor.`);
}

async function vms({ o, store, raw, prefix }: Ctx): Promise<void> {
  const n = o.quick ? 20 : 300;
  const plan = roundPlan(o, { rounds: 3 });
  const stm = stmKv(raw.namespace(`${prefix}-stm`));
  const lk: Array<{ tx: number; conflicts: number; validations: number; replays: number }> = [];
  const st: Array<{ tx: number; retries: number }> = [];
  const r = await alternate(`${n} VMs`, [
    {
      name: 'latchkey on etcd',
      run: async (round) => {
        const s0 = store.stats();
        const x = await vmWorkload(store, n);
        const s1 = store.stats();
        if (round >= 0) lk.push({ tx: x.transactions, conflicts: x.conflictsReturned, validations: s1.validations - s0.validations, replays: s1.replays - s0.replays });
        return x.seconds;
      },
    },
    {
      name: 'etcd3 STM',
      run: async (round) => {
        const x = await peerVmWorkload(stm, n);
        if (round >= 0) st.push({ tx: x.transactions, retries: x.retries });
        return x.seconds;
      },
    },
  ], plan);
  const sum = <T>(xs: T[], f: (x: T) => number): number => xs.reduce((a, x) => a + f(x), 0);
  const secs = (name: string): Cell => cellOf(r.get(name));
  table(`${n} parallel VM start/shutdowns on the three-member cluster, one client each (seconds: median of ${plan.rounds} rounds; counts: all measured rounds)`,
    ['system', 'seconds', 'transactions committed', 'conflicts returned to the caller (whole transaction run again)', 'commits re-planned on a newer head (a compare failed)', 'of those, with a read answered again (replay)'],
    [
      ['latchkey on etcd', secs('latchkey on etcd'), sum(lk, (x) => x.tx), sum(lk, (x) => x.conflicts), sum(lk, (x) => x.validations), sum(lk, (x) => x.replays)],
      ['etcd3 STM (SerializableSnapshot)', secs('etcd3 STM'), sum(st, (x) => x.tx), sum(st, (x) => x.retries), 'n/a', 'n/a'],
      ['latchkey / STM (time)', ratio(secs('latchkey on etcd'), secs('etcd3 STM')), '', '', '', ''],
    ], { chart: false });
  const lkSecs = secs('latchkey on etcd');
  if (typeof lkSecs === 'string') note(`latchkey on etcd failed here: ${lkSecs}`);
  note('The VM workload is bench/vm-workload.ts (seed 002\'s shape: per VM a creating transaction, 10 plain writes, 3 device transactions reading /local/domain/0/vm, a shutdown and a recursive-delete transaction), all VMs at once. latchkey: one EtcdStore; a commit whose compares fail is re-checked against the new state in the client (replay) and only a changed answer is a CONFLICT to the caller. etcd3 STM: one Etcd3 client, `stm({ retries: 0 }).transact()` per transaction, each STMConflictError counted and the whole transaction run again (what transact() does by itself with retries); a recursive delete lists the keys under the path outside the transaction (STM reads cannot be ranges) and deletes each in it (bench/peers/etcd.ts stmKv).');
}

interface Gap {
  acks: number;
  errors: number;
  /** Longest time between two acknowledged operations from 1 s before the kill to the end, ms. */
  gapMs: number;
  /** From the kill to the first operation sent after it being acknowledged… approximated by the first ack after the kill, ms. */
  firstAfterMs: number;
}

/** `loops` sequential writers until `stop()`; the time of every acknowledgement. */
function writers(loops: number, write: (loop: number, n: number) => Promise<unknown>): { acks: number[]; errors: () => number; codes: Map<string, number>; stop: () => Promise<void> } {
  const acks: number[] = [];
  const codes = new Map<string, number>();
  let errors = 0;
  let stopped = false;
  const running = Array.from({ length: loops }, async (_, l) => {
    for (let n = 0; !stopped; n++) {
      try {
        await write(l, n);
        acks.push(now());
      } catch (e) {
        errors++;
        const code = (e as { code?: unknown }).code;
        const k = typeof code === 'string' ? code : (e as Error).name;
        codes.set(k, (codes.get(k) ?? 0) + 1);
        await sleep(5);
      }
    }
  });
  return { acks, errors: () => errors, codes, stop: async () => { stopped = true; await Promise.all(running); } };
}

/** `endedAt`: the round's end, which counts as the end of a gap that no acknowledgement closed. */
function gapOf(acks: number[], errors: number, killedAt: number, endedAt: number): Gap {
  const ts = [...acks.filter((t) => t >= killedAt - 1000), endedAt].sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < ts.length; i++) gap = Math.max(gap, ts[i]! - ts[i - 1]!);
  const first = acks.filter((t) => t > killedAt).sort((a, b) => a - b)[0];
  return { acks: acks.length, errors, gapMs: gap, firstAfterMs: first === undefined ? NaN : first - killedAt };
}

async function failover(ctx: Ctx, cluster: EtcdCluster | undefined, endpoints: string): Promise<void> {
  const { o, raw, prefix } = ctx;
  if (cluster === undefined) {
    note('failover: not available (the cluster was given by LK_ETCD_ENDPOINTS: its members are not this process\'s to kill)');
    return;
  }
  const rounds = o.quick ? 1 : 3;
  const after = o.quick ? 3000 : 6000;
  const loops = 4;
  // A store of its own: what an earlier phase did to the first one (a session given up under load) does not carry over.
  const store = await connectEtcd(`etcd://${endpoints}/?prefix=${prefix}`);
  const res: Array<{ lk: Gap; plain: Gap; load: string }> = [];
  const codes = { lk: new Map<string, number>(), plain: new Map<string, number>() };
  const addCodes = (to: Map<string, number>, from: Map<string, number>): void => {
    for (const [k, v] of from) to.set(k, (to.get(k) ?? 0) + v);
  };
  for (let r = 0; r < rounds; r++) {
    const lkW = writers(loops, (l, n) => store.set(`/fo/${l}`, String(n)));
    const plainW = writers(loops, (l, n) => raw.put(`${prefix}-raw/fo/${l}`).value(String(n)).exec());
    await sleep(1500);
    const leader = await cluster.leader();
    if (leader === undefined) throw new Error('failover: no leader before the kill');
    const killedAt = now();
    await cluster.kill(leader);
    await sleep(after);
    const endedAt = now();
    await Promise.all([lkW.stop(), plainW.stop()]);
    addCodes(codes.lk, lkW.codes);
    addCodes(codes.plain, plainW.codes);
    res.push({ lk: gapOf(lkW.acks, lkW.errors(), killedAt, endedAt), plain: gapOf(plainW.acks, plainW.errors(), killedAt, endedAt), load: load() });
    cluster.restart(leader);
    if (!(await cluster.waitHealthy(60_000))) throw new Error('failover: the killed member did not come back healthy in 60 s');
    await sleep(1000);
  }
  await store.close().catch(() => {});
  // No acknowledgement after the kill at all: no figure (NaN would not survive the JSON record).
  const m = (f: (g: Gap) => number, side: 'lk' | 'plain'): Cell => {
    const v = median(res.map((x) => f(x[side])));
    return Number.isFinite(v) ? v : 'none';
  };
  const row = (label: string, f: (g: Gap) => number): Cell[] => [label, m(f, 'lk'), m(f, 'plain'), ratio(m(f, 'lk'), m(f, 'plain'))];
  table(`failover: the etcd leader SIGKILLed under ${loops} sequential writers per side, both sides at once (median of ${rounds} kill${rounds === 1 ? '' : 's'}; load ${res.map((x) => x.load).join(', ')})`,
    ['measure', 'latchkey on etcd (store.set)', 'plain etcd3 (put)', 'latchkey / plain'], [
      row('longest gap between acknowledged writes, ms', (g) => g.gapMs),
      row('kill → first acknowledgement after it, ms', (g) => g.firstAfterMs),
      row('writes failed (retried; outcome unknown)', (g) => g.errors),
      row(`writes acknowledged in the round (${((1500 + after) / 1000).toFixed(1)} s)`, (g) => g.acks),
    ], { chart: false });
  note(`Failover: ${loops} writer loops per side in one process (latchkey: one EtcdStore; plain: one Etcd3 client; both given all three members), both running; after 1.5 s the member that says it leads is SIGKILLed; the writers run ${after / 1000} s more. The gap is the longest time between two acknowledgements of a side from 1 s before the kill on (etcd's election timeout here is 1,000 ms, heartbeat 100 ms). Then the member is restarted on its data directory and the cluster is healthy again before the next round. Per round: ${res.map((x, i) => `#${i + 1} latchkey ${x.lk.gapMs.toFixed(0)} ms / plain ${x.plain.gapMs.toFixed(0)} ms`).join('; ')}. Failed writes by error (all rounds): latchkey ${JSON.stringify(Object.fromEntries(codes.lk))}, plain ${JSON.stringify(Object.fromEntries(codes.plain))}; a plain put sent to the killed member waits for the etcd3 client to give up on that connection (it sets no deadline of its own), so its gap can outlast the election.`);
}

export default async function run(o: BenchOptions): Promise<void> {
  let cluster: EtcdCluster | undefined;
  let endpoints: string;
  const given = process.env.LK_ETCD_ENDPOINTS;
  if (given !== undefined) {
    endpoints = given;
  } else {
    const c = await EtcdCluster.start();
    if (typeof c === 'string') {
      console.log(`etcd: ${c}`);
      note(`etcd: ${c}`);
      return;
    }
    cluster = c;
    endpoints = c.endpoints;
  }
  const prefix = `/lk-bench-${process.pid}`;
  let store: EtcdStore | undefined;
  const raw = new Etcd3({ hosts: endpoints.split(',').map((h) => `http://${h}`) });
  try {
    store = await connectEtcd(`etcd://${endpoints}/?prefix=${prefix}`);
    peerInfo('etcd3 (plain calls, its Lock, its STM, the Mutex recipe)', undefined, [
      'the same three-member cluster on loopback (heartbeat 100 ms, election timeout 1,000 ms, WAL fsynced before each commit is acknowledged), one Etcd3 client (one gRPC connection pool over the three members) beside one latchkey EtcdStore',
    ]);
    const ctx: Ctx = { o, store, raw, prefix };
    console.log(`etcd: cluster at ${endpoints}, load ${load()}`);
    await floor(ctx);
    await handoffs(ctx);
    await vms(ctx);
    await failover(ctx, cluster, endpoints);
  } finally {
    await store?.close().catch(() => {});
    await raw.delete().prefix(prefix).exec().catch(() => {});
    raw.close();
    await cluster?.stop();
  }
}

/**
 * `npm run bench -- remote`: the server in its own process, clients in this
 * one (or in more processes), over the Unix socket and TCP loopback.
 *
 * - get/set ops/s with 1, 8, 64 connections, each keeping a window of
 *   requests in flight (pipelined), against an in-memory server and against
 *   a durable one (fsync per group commit);
 * - request latency of one connection with one request at a time;
 * - the 300 parallel VM start/shutdown workload over the socket;
 * - lock round trip, handoff, death-to-grant and the 7,000-waiter herd when
 *   the lock service is in the build (they say so when it is not).
 * The embedded store is measured in the same run as the peer to compare with.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Store } from '../../src/api.js';
import { open } from '../../src/engine/open.js';
import { connect, type RemoteStore } from '../../src/client/store.js';
import { type BenchOptions, now, percentile, table } from '../util.js';
import { vmWorkload } from '../vm-workload.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(here, '../../src/cli/main.js');
const CHILD = path.resolve(here, '../remote-child.js');

/** Child processes still running: a benchmark that dies must not leave them behind. */
const live = new Set<ChildProcess>();
let reaperInstalled = false;

function track(proc: ChildProcess): void {
  if (!reaperInstalled) {
    reaperInstalled = true;
    process.once('exit', () => { for (const p of live) p.kill('SIGKILL'); });
  }
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
}

interface Child {
  proc: ChildProcess;
  /** Resolves with the next full line the child prints. */
  line(): Promise<string>;
}

function child(role: string, env: Record<string, string>): Child {
  const proc = spawn(process.execPath, [CHILD], { env: { ...process.env, LK_ROLE: role, ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
  track(proc);
  let buf = '';
  const lines: string[] = [];
  let waiting: ((l: string) => void) | undefined;
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    while (waiting !== undefined && lines.length > 0) {
      const w = waiting;
      waiting = undefined;
      w(lines.shift()!);
    }
  });
  return {
    proc,
    line: () => new Promise((resolve) => {
      if (lines.length > 0) resolve(lines.shift()!);
      else waiting = resolve;
    }),
  };
}

function exited(c: Child): Promise<void> {
  return c.proc.exitCode !== null || c.proc.signalCode !== null ? Promise.resolve() : new Promise((r) => c.proc.once('exit', () => r()));
}

/** Handoff latency among contenders in separate processes, death-to-grant, and the 7,000-waiter herd. */
async function lockBenches(s: RemoteStore, url: string, quick: boolean): Promise<void> {
  // Handoff: each contender process locks and releases one path in a loop; a handoff is the time
  // from one holder's release to the next holder's grant (CLOCK_MONOTONIC in every process).
  const hand: (string | number)[][] = [];
  for (const n of quick ? [2, 8] : [2, 8, 64]) {
    const rounds = Math.max(20, Math.floor((quick ? 2000 : 8000) / n));
    const cs = Array.from({ length: n }, () => child('contender', { LK_URL: url, LK_PATH: '/handoff', LK_ROUNDS: String(rounds) }));
    for (const c of cs) await c.line(); // ready
    const t0 = now();
    for (const c of cs) c.proc.stdin!.end('go\n'); // ended: an open stdin would keep the child alive
    const results = await Promise.all(cs.map(async (c) => JSON.parse(await c.line()) as [string, string][]));
    const secs = (now() - t0) / 1000;
    await Promise.all(cs.map(exited));
    const events = results.flat().map(([g, r]) => [BigInt(g), BigInt(r)] as const).sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const gaps: number[] = [];
    for (let i = 1; i < events.length; i++) gaps.push(Number(events[i]![0] - events[i - 1]![1]) / 1000);
    gaps.sort((a, b) => a - b);
    hand.push([n, events.length, events.length / secs, percentile(gaps, 50), percentile(gaps, 99)]);
  }
  table('lock handoff among contender processes (exclusive, one path)', ['contenders', 'handoffs', 'handoffs/s', 'p50 µs', 'p99 µs'], hand);

  // Death-to-grant: SIGKILL the holder's process; time until the waiter here is granted.
  const deaths: number[] = [];
  for (let i = 0; i < (quick ? 3 : 10); i++) {
    const h = child('holder', { LK_URL: url, LK_PATH: `/death/${i}` });
    await h.line(); // held
    let grantedAt = 0;
    const granted = s.lock(`/death/${i}`).then((l) => { grantedAt = now(); return l; });
    while ((await s.fetchLockTable()).waiting.length === 0) await new Promise((r) => setTimeout(r, 1));
    const t = now();
    h.proc.kill('SIGKILL');
    const l = await granted;
    deaths.push(grantedAt - t);
    if (!l.ownerDied) console.log('(death-to-grant: a grant came without ownerDied)');
    await l.release();
    await exited(h);
  }
  deaths.sort((a, b) => a - b);
  table('death-to-grant (SIGKILL the holder process → waiter granted, ms)', ['runs', 'p50', 'max'], [[deaths.length, percentile(deaths, 50), deaths.at(-1)!]]);

  // The herd: 7,000 sessions in 4 processes wait on 7,000 paths behind lock('/'); one release.
  const total = quick ? 2000 : 7000;
  const procs = 4;
  const all = await s.lock('/');
  const hs = Array.from({ length: procs }, (_, p) => child('herd', { LK_URL: url, LK_SESSIONS: String(total / procs), LK_BASE: String(p * total / procs) }));
  for (const h of hs) await h.line(); // queued (sent)
  while ((await s.fetchLockTable()).waiting.length < total) await new Promise((r) => setTimeout(r, 5));
  const releasedNs = process.hrtime.bigint();
  await all.release();
  const res = await Promise.all(hs.map(async (h) => JSON.parse(await h.line()) as { granted: number; lastNs: string }));
  const last = res.reduce((m, r) => (BigInt(r.lastNs) > m ? BigInt(r.lastNs) : m), 0n);
  const granted = res.reduce((n, r) => n + r.granted, 0);
  for (const h of hs) h.proc.kill('SIGTERM');
  await Promise.all(hs.map(exited));
  table(`herd: ${total.toLocaleString('en-US')} sessions in ${procs} processes behind lock('/')`, ['granted', 'release → last grant (ms)'], [[granted, Number(last - releasedNs) / 1e6]]);
}

interface Served {
  proc: ChildProcess;
  dir: string;
  unix: string;
  tcp: string;
  stop(): Promise<void>;
}

async function startServer(extra: string[]): Promise<Served> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-bench-'));
  const proc = spawn(process.execPath, [CLI, 'serve', '--data', dir, '--listen', '127.0.0.1:0', '--insecure-loopback', '--ttl-ms', '60000', ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
  track(proc);
  let out = '';
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('ready\n')) resolve();
    });
    proc.on('exit', (c) => reject(new Error(`server exited ${c}`)));
  });
  return {
    proc, dir,
    unix: /^(unix:\/\/.*)$/m.exec(out)![1]!,
    tcp: /^(tcp:\/\/.*)$/m.exec(out)![1]!,
    async stop() {
      const exited = new Promise((r) => proc.on('exit', r));
      proc.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs `op` on each store with `window` requests in flight per store, for `ms`; returns ops/s. */
async function pipelined(stores: readonly Store[], window: number, ms: number, op: (s: Store, i: number) => Promise<unknown>): Promise<number> {
  let done = 0;
  let i = 0;
  const end = now() + ms;
  const t0 = now();
  await Promise.all(stores.map(async (s) => {
    await Promise.all(Array.from({ length: window }, async () => {
      while (now() < end) {
        await op(s, i++);
        done++;
      }
    }));
  }));
  return done / ((now() - t0) / 1000);
}

async function latency(s: Store, n: number, op: (i: number) => Promise<unknown>): Promise<{ p50: number; p99: number }> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = now();
    await op(i);
    xs.push(now() - t);
  }
  xs.sort((a, b) => a - b);
  return { p50: percentile(xs, 50) * 1000, p99: percentile(xs, 99) * 1000 };
}

export default async function remote(o: BenchOptions): Promise<void> {
  const ms = o.quick ? 300 : 2000;
  const keys = 10_000;
  const value = 'value-0123456789';
  const conns = o.quick ? [1, 8] : [1, 8, 64];
  const window = 32;

  // The peer measured in the same run: the embedded store, in this process.
  const emb = await open();
  for (let k = 0; k < keys; k++) await emb.set(`/bench/k${k}`, value);
  const embGet = await pipelined([emb], 1, ms, (s, i) => s.get(`/bench/k${i % keys}`));
  const embSet = await pipelined([emb], 1, ms, (s, i) => s.set(`/bench/k${i % keys}`, value));
  await emb.close();

  const rows: (string | number)[][] = [['embedded (same process)', '-', embGet, embSet]];
  const lat: (string | number)[][] = [];
  for (const [label, extra] of [['in memory', ['--memory']], ['durable (fsync)', []]] as const) {
    const srv = await startServer([...extra]);
    try {
      for (const transport of ['unix', 'tcp'] as const) {
        const url = transport === 'unix' ? srv.unix : srv.tcp;
        const seed = await connect(url);
        await seed.multi(Array.from({ length: 1000 }, (_, k) => ({ op: 'set' as const, path: `/bench/k${k}`, value })));
        for (let k = 1000; k < keys; k += 1000) {
          await seed.multi(Array.from({ length: 1000 }, (_, j) => ({ op: 'set' as const, path: `/bench/k${k + j}`, value })));
        }
        // Warm up (JIT on both sides) before the first measured row of this server and transport.
        await pipelined([seed], window, ms / 2, (st, i) => st.get(`/bench/k${i % keys}`));
        await pipelined([seed], window, ms / 2, (st, i) => st.set(`/bench/k${i % keys}`, value));
        for (const n of conns) {
          const stores: RemoteStore[] = [];
          for (let c = 0; c < n; c++) stores.push(await connect(url));
          const w = Math.max(1, Math.floor(window * 8 / n)) ; // keep ~256 in flight overall for many connections
          const get = await pipelined(stores, n === 1 ? window : w, ms, (s, i) => s.get(`/bench/k${i % keys}`));
          const set = await pipelined(stores, n === 1 ? window : w, ms, (s, i) => s.set(`/bench/k${i % keys}`, value));
          rows.push([`${label}, ${transport}, ${n} conn`, n === 1 ? window : w, get, set]);
          await Promise.all(stores.map((s) => s.close()));
        }
        const g = await latency(seed, o.quick ? 2000 : 10_000, (i) => seed.get(`/bench/k${i % keys}`));
        const st = await latency(seed, o.quick ? 500 : 2000, (i) => seed.set(`/bench/k${i % keys}`, value));
        lat.push([`${label}, ${transport}`, g.p50, g.p99, st.p50, st.p99]);
        await seed.close();
      }
    } finally {
      await srv.stop();
    }
  }
  table('remote get/set (server in its own process; window = requests in flight per connection)', ['where', 'window', 'get ops/s', 'set ops/s'], rows);
  table('one request at a time (µs)', ['where', 'get p50', 'get p99', 'set p50', 'set p99'], lat);

  // The VM workload over the socket.
  const srv = await startServer(['--memory']);
  try {
    const vmRows: (string | number)[][] = [];
    for (let r = 0; r <= (o.quick ? 1 : 3); r++) {
      const s = await connect(srv.unix);
      await s.delete('/local', { recursive: true }).catch(() => {});
      const before = await s.fetchStats();
      const res = await vmWorkload(s, 300);
      const after = await s.fetchStats();
      vmRows.push([r === 0 ? 'cold' : `warm ${r}`, res.seconds.toFixed(3), res.transactions, after.validations - before.validations, after.replays - before.replays, after.conflicts - before.conflicts, res.retries]);
      await s.close();
    }
    table('300 parallel VM start/shutdowns over the Unix socket (in-memory server)', ['run', 'seconds', 'transactions', 'validations', 'replays', 'CONFLICTs returned', 'retries'], vmRows);

    const s = await connect(srv.unix);
    const rt = await latency(s, o.quick ? 500 : 5000, async () => (await s.lock('/lk/uncontended')).release());
    table('lock round trip, uncontended (acquire + release, one process, µs)', ['p50', 'p99'], [[rt.p50, rt.p99]]);
    await lockBenches(s, srv.unix, o.quick);
    await s.close();
  } finally {
    await srv.stop();
  }
}

/**
 * `npm run bench -- etcd`: latchkey on an etcd cluster (src/etcd) beside the
 * plain etcd3 client on the same three-member cluster in one run: the floor
 * (get, set, list of 20 children as plain etcd calls) and lock
 * acquire+release against etcd's Mutex recipe (bench/peers/etcd.ts). Rounds
 * alternate A B A B; the median of the rounds is printed with the load
 * average before and after.
 *
 * The cluster: LK_ETCD_ENDPOINTS=host:port,… when set; otherwise three
 * members started here on free loopback ports in a temp dir (needs the etcd
 * binary; `npm run bench:setup` installs it) and stopped after. With
 * --quick and no LK_ETCD_ENDPOINTS, prints "not available" at once (CI runs
 * --quick without a cluster).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import { connectEtcd } from '../../src/etcd/store.js';
import { EtcdSession, etcdLock } from '../peers/etcd.js';
import { findBinary, freePort } from '../peers/server.js';
import { type BenchOptions, note, now, peerInfo, ratio, table } from '../util.js';

interface Cluster {
  endpoints: string;
  stop(): Promise<void>;
}

async function healthy(endpoint: string): Promise<boolean> {
  try {
    const r = await fetch(`http://${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
    return ((await r.json()) as { health?: string }).health === 'true';
  } catch {
    return false;
  }
}

async function startCluster(): Promise<Cluster | string> {
  const bin = findBinary('etcd');
  if (bin === undefined) return 'not available: no etcd binary (npm run bench:setup installs etcd-server)';
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-bench-etcd-'));
  const client: number[] = [];
  const peer: number[] = [];
  for (let i = 0; i < 3; i++) {
    client.push(await freePort());
    peer.push(await freePort());
  }
  const cluster = peer.map((p, i) => `m${i}=http://127.0.0.1:${p}`).join(',');
  const token = `lk-bench-${process.pid}`;
  const kids: ChildProcess[] = [0, 1, 2].map((i) => spawn(bin, [
    '--name', `m${i}`, '--data-dir', path.join(dir, `m${i}`),
    '--listen-client-urls', `http://127.0.0.1:${client[i]}`, '--advertise-client-urls', `http://127.0.0.1:${client[i]}`,
    '--listen-peer-urls', `http://127.0.0.1:${peer[i]}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer[i]}`,
    '--initial-cluster', cluster, '--initial-cluster-state', 'new', '--initial-cluster-token', token,
    '--heartbeat-interval', '100', '--election-timeout', '1000', '--log-level', 'error', '--logger', 'zap',
  ], { stdio: 'ignore' }));
  const endpoints = client.map((p) => `127.0.0.1:${p}`).join(',');
  const stop = async (): Promise<void> => {
    await Promise.all(kids.map((k) => new Promise<void>((r) => {
      if (k.exitCode !== null || k.signalCode !== null) return r();
      k.once('exit', () => r());
      k.kill('SIGKILL');
    })));
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = now() + 20_000;
  while (!(await healthy(`127.0.0.1:${client[0]}`))) {
    if (now() > deadline) {
      await stop();
      return 'not available: the three etcd members did not become healthy in 20 s';
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { endpoints, stop };
}

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

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export default async function run(o: BenchOptions): Promise<void> {
  let cluster: Cluster | string;
  const given = process.env.LK_ETCD_ENDPOINTS;
  if (given !== undefined) {
    cluster = (await healthy(given.split(',')[0]!)) ? { endpoints: given, stop: async () => {} } : `not available: no etcd answers at ${given}`;
  } else if (o.quick) {
    cluster = 'not available (--quick starts no cluster; set LK_ETCD_ENDPOINTS to use one)';
  } else {
    cluster = await startCluster();
  }
  if (typeof cluster === 'string') {
    console.log(`etcd: ${cluster}`);
    note(`etcd: ${cluster}`);
    return;
  }
  const load0 = os.loadavg()[0]!;
  const ms = o.quick ? 300 : 2000;
  const rounds = o.quick ? 1 : 3;
  const prefix = `/lk-bench-${process.pid}`;
  const store = await connectEtcd(`etcd://${cluster.endpoints}/?prefix=${prefix}`);
  const raw = new Etcd3({ hosts: cluster.endpoints.split(',').map((h) => `http://${h}`) });
  const rawSession = await EtcdSession.open(raw, 10);
  try {
    for (let i = 0; i < 20; i++) {
      await store.set(`/dir/c${i}`, 'x');
      await raw.put(`${prefix}-raw/dir/c${i}`).value('x');
    }
    await store.set('/k', 'v');
    await raw.put(`${prefix}-raw/k`).value('v');
    const cases: Array<[string, () => Promise<unknown>, () => Promise<unknown>]> = [
      ['get', () => store.get('/k'), () => raw.get(`${prefix}-raw/k`).buffer()],
      ['set', () => store.set('/k', 'v'), () => raw.put(`${prefix}-raw/k`).value('v').exec()],
      ['list 20 children', () => store.list('/dir'), () => raw.getAll().prefix(`${prefix}-raw/dir/`).keys()],
      ['lock + release (uncontended)', async () => (await store.lock('/l')).release(), async () => (await etcdLock(rawSession, `${prefix}-raw/l`)).release()],
    ];
    const rows = [];
    for (const [name, lk, plain] of cases) {
      const a: number[] = [];
      const b: number[] = [];
      for (let r = 0; r < rounds; r++) {
        a.push(await perSec(lk, ms));
        b.push(await perSec(plain, ms));
      }
      const la = median(a);
      const lb = median(b);
      rows.push([name, la, lb, ratio(la, lb)]);
    }
    const load1 = os.loadavg()[0]!;
    peerInfo('etcd3 (plain calls, Mutex recipe)', undefined, ['the same three-member cluster on loopback, one client, sequential calls']);
    table(`latchkey on etcd vs plain etcd3, one client, ops/s (median of ${rounds} alternating rounds of ${ms} ms; load ${load0.toFixed(2)} → ${load1.toFixed(2)})`,
      ['operation', 'latchkey on etcd', 'plain etcd3', 'latchkey / etcd3'], rows);
    note('latchkey reads are linearizable: one range of the revision key, then the answer from the client\'s mirror; a write is one Txn with its compares plus that range first.');
  } finally {
    await rawSession.close();
    raw.close();
    await store.close();
    const c = new Etcd3({ hosts: cluster.endpoints.split(',').map((h) => `http://${h}`) });
    await c.delete().prefix(prefix).exec().catch(() => {});
    c.close();
    await cluster.stop();
  }
}

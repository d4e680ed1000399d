/**
 * `npm run bench -- compare-locks`: the lock service side by side —
 * latchkey (embedded, and over its Unix socket), etcd's
 * concurrency-recipe mutex, and the Redis SET NX PX lock with polling.
 *
 * - round trip: one client, acquire + release in a loop, nothing else.
 * - handoff: C contenders loop acquire → release on one lock. Handoff
 *   latency is from the holder's release call to the grant seen by a
 *   *different* contender (a re-grant to the releaser is not a handoff; with
 *   an unfair lock that is exactly what happens, and the count shows it).
 * - death-to-grant: a holder in another process is SIGKILLed; the time until
 *   a waiter here is granted. etcd and Redis free the lock only when its
 *   lease/TTL lapses, so the TTL is stated with the figure.
 * - herd: one holder of a global lock, 7,000 waiters each needing the global
 *   lock gone and then a lock of their own; time from release to the last grant.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Etcd3 } from 'etcd3';
import type { Redis } from 'ioredis';
import type { Session, Store } from '../../src/api.js';
import { open } from '../../src/index.js';
import { type EtcdPeer, EtcdSession, etcdLock, startEtcd, waitDeleted } from '../peers/etcd.js';
import { type LatchkeyServerPeer, startLatchkeyServer } from '../peers/latchkey.js';
import { isMissing, type Missing, sleep } from '../peers/peer.js';
import { REDIS_LOCK_POLL_MS, type RedisPeer, redisLock, startRedis } from '../peers/redis.js';
import { type BenchOptions, type Cell, note, peerInfo, percentile, progress, ratio, table } from '../util.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const HOLDER = path.join(here, '..', 'peers', 'holder.js');

/** etcd lease TTL for death-to-grant (etcd's minimum is about 2 s with default election timeouts). */
const ETCD_TTL_S = 3;
/** Redis lock TTL for death-to-grant: the holder refreshes it every TTL/3 while alive. */
const REDIS_TTL_MS = 3000;
const HERD = 7000;
/** The herd in a quick run: latchkey only, small. */
const QUICK_HERD = 700;

interface Held {
  release(): Promise<void>;
}
interface Contender {
  acquire(name: string): Promise<Held>;
  close(): Promise<void>;
}
interface System {
  name: string;
  contender(i: number): Promise<Contender>;
  /** Spawns a holder process of `name` (for death-to-grant); undefined when the system cannot. */
  holderArgs?(name: string): string[];
  deathTtl?: string;
  herd?(n: number, bar: { tick(n?: number): void }): Promise<number>;
}

function latchkeyContender(s: Session | Store, close: () => Promise<void>): Contender {
  return { acquire: (name) => s.lock(name), close };
}

function embeddedSystem(store: Store): System {
  return {
    name: 'latchkey (embedded)',
    contender: async () => {
      const s = store.session();
      return latchkeyContender(s, () => s.close());
    },
    herd: async (n, bar) => {
      const holder = store.session();
      const global = await holder.lock('/', { mode: 'exclusive' });
      const sessions = Array.from({ length: n }, () => store.session());
      let last = 0;
      const waits = sessions.map((s, i) => s.lock(`/herd/${i}`).then(() => {
        last = performance.now();
        bar.tick();
      }));
      while (store.lockTable().waiting.length < n) await sleep(1);
      const t0 = performance.now();
      await global.release();
      await Promise.all(waits);
      const ms = last - t0;
      for (const s of sessions) await s.close();
      await holder.close();
      return ms;
    },
  };
}

function remoteSystem(server: LatchkeyServerPeer): System {
  return {
    name: 'latchkey (remote)',
    contender: async () => {
      const c = await server.connect();
      return latchkeyContender(c, () => c.close());
    },
    holderArgs: (name) => ['latchkey', server.socketUrl, name],
    deathTtl: 'connection close (no lease wait)',
    herd: async (n, bar) => {
      // n sessions over 8 connections, each queued on /herd/i behind one holder's lock('/')
      const holder = await server.connect();
      const global = await holder.lock('/');
      const conns = await Promise.all(Array.from({ length: 8 }, () => server.connect()));
      const sessions = Array.from({ length: n }, (_, i) => conns[i % conns.length]!.session());
      let last = 0;
      const waits = sessions.map((s, i) => s.lock(`/herd/${i}`).then(() => {
        last = performance.now();
        bar.tick();
      }));
      // the remote lock table is fetched on request (RemoteStore.fetchLockTable); wait until every request is queued
      const fetchTable = (holder as unknown as { fetchLockTable?: () => Promise<{ waiting: readonly unknown[] }> }).fetchLockTable?.bind(holder);
      const deadline = performance.now() + 60_000;
      const queued = async (): Promise<boolean> => {
        if (!fetchTable) return false;
        try {
          while ((await fetchTable()).waiting.length < n) {
            if (performance.now() > deadline) return false;
            await sleep(5);
          }
          return true;
        } catch {
          return false; // an older server without the lock table: fall back to waiting
        }
      };
      if (!(await queued())) await sleep(3000);
      const t0 = performance.now();
      await global.release();
      await Promise.all(waits);
      const ms = last - t0;
      for (const s of sessions) await s.close();
      return ms;
    },
  };
}

function etcdSystem(etcd: EtcdPeer): System {
  const clients: Etcd3[] = Array.from({ length: 8 }, () => etcd.client());
  return {
    name: 'etcd',
    contender: async (i) => {
      const s = await EtcdSession.open(clients[i % clients.length]!, 10);
      return { acquire: (name) => etcdLock(s, name), close: () => s.close() };
    },
    holderArgs: (name) => ['etcd', etcd.url, name, String(ETCD_TTL_S)],
    deathTtl: `lease TTL ${ETCD_TTL_S} s`,
    herd: async (n, bar) => {
      const holder = await EtcdSession.open(clients[0]!, 10);
      const global = await etcdLock(holder, '/herd-global');
      const rev = (await clients[0]!.get(global.key).exec()).header.revision;
      const sessions = await Promise.all(clients.map((c) => EtcdSession.open(c, 10)));
      let watching = 0;
      let last = 0;
      let all: Promise<unknown> = Promise.resolve();
      const ready = new Promise<void>((resolve) => {
        const waits = Array.from({ length: n }, (_, i) => waitDeleted(clients[i % clients.length]!, global.key, rev, () => {
          if (++watching === n) resolve();
        }).then(() => etcdLock(sessions[i % sessions.length]!, `/herd/${i}`)).then(() => {
          last = performance.now();
          bar.tick();
        }));
        all = Promise.all(waits);
      });
      await ready;
      const t0 = performance.now();
      await global.release();
      await all;
      for (const s of [holder, ...sessions]) await s.close();
      return last - t0;
    },
  };
}

function redisSystem(redis: RedisPeer): System {
  return {
    name: 'redis',
    contender: async () => {
      const r = redis.client();
      return { acquire: (name) => redisLock(r, name, 10_000), close: async () => r.disconnect() };
    },
    holderArgs: (name) => ['redis', String(redis.port), name, String(REDIS_TTL_MS)],
    deathTtl: `key TTL ${REDIS_TTL_MS / 1000} s, polled every ${REDIS_LOCK_POLL_MS} ms`,
    herd: async (n, bar) => {
      const conns: Redis[] = Array.from({ length: 8 }, () => redis.client());
      await conns[0]!.set('herd-global', 'holder', 'PX', 60_000);
      let polled = 0;
      let last = 0;
      let released = false;
      const deadline = performance.now() + 60_000;
      const waits = Array.from({ length: n }, async (_, i) => {
        const r = conns[i % conns.length]!;
        let first = true;
        for (;;) {
          if (performance.now() > deadline) throw new Error('redis herd: not drained within 60 s');
          const free = (await r.exists('herd-global')) === 0 && released;
          if (first) {
            polled++;
            first = false;
          }
          if (free && (await r.set(`herd/${i}`, 'w', 'PX', 60_000, 'NX')) === 'OK') break;
          await sleep(REDIS_LOCK_POLL_MS);
        }
        last = performance.now();
        bar.tick();
      });
      while (polled < n) await sleep(5);
      const t0 = performance.now();
      released = true;
      await conns[0]!.del('herd-global');
      await Promise.all(waits);
      return last - t0;
    },
  };
}

async function roundTrip(sys: System, ms: number): Promise<number> {
  const c = await sys.contender(0);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    for (let i = 0; i < 50; i++) await (await c.acquire('/rt')).release();
    n += 50;
  }
  const perSec = n / ((performance.now() - t0) / 1000);
  await c.close();
  return perSec;
}

async function handoff(sys: System, contenders: number, ms: number, maxGrants: number): Promise<{ perSec: number; p50: number; p99: number; handoffs: number; grants: number }> {
  const cs = await Promise.all(Array.from({ length: contenders }, (_, i) => sys.contender(i)));
  const lat: number[] = [];
  let lastHolder = -1;
  let releasedAt = 0;
  let grants = 0;
  let stop = false;
  const t0 = performance.now();
  await Promise.all(cs.map(async (c, me) => {
    while (!stop) {
      const held = await c.acquire('/handoff');
      const t = performance.now();
      grants++;
      if (lastHolder !== -1 && lastHolder !== me) lat.push(t - releasedAt);
      lastHolder = me;
      if (t - t0 > ms || grants >= maxGrants) stop = true;
      releasedAt = performance.now();
      await held.release();
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  for (const c of cs) await c.close();
  lat.sort((a, b) => a - b);
  return { perSec: lat.length / secs, p50: percentile(lat, 50), p99: percentile(lat, 99), handoffs: lat.length, grants };
}

async function deathToGrant(sys: System): Promise<number> {
  const args = sys.holderArgs!('/death');
  const child: ChildProcess = spawn(process.execPath, [HOLDER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`holder did not take the lock: ${out}`)), 15_000);
      child.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('held')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.stderr!.on('data', (b: Buffer) => {
        out += b.toString();
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`holder exited (${String(code)}): ${out}`));
      });
    });
    const c = await sys.contender(0);
    let granted = 0;
    const wait = c.acquire('/death').then((h) => {
      granted = performance.now();
      return h;
    });
    await sleep(300); // the waiter is queued (or polling) before the holder dies
    const t0 = performance.now();
    child.kill('SIGKILL');
    const h = await wait;
    await h.release();
    await c.close();
    return granted - t0;
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

export default async function compareLocks(o: BenchOptions): Promise<void> {
  const ms = o.quick ? 150 : 2000;
  const levels = o.quick ? [2, 8] : [2, 8, 64];
  const maxGrants = o.quick ? 2000 : 50_000;
  const skipped: Missing = { missing: 'skipped (--quick)' };
  const columns: { name: string; sys: System | Missing }[] = [];

  const store = await open();
  columns.push({ name: 'latchkey (embedded)', sys: embeddedSystem(store) });
  const server = o.quick ? skipped : await startLatchkeyServer();
  columns.push({ name: 'latchkey (remote)', sys: isMissing(server) ? server : remoteSystem(server) });
  const etcd = o.quick ? skipped : await startEtcd();
  if (!isMissing(etcd)) peerInfo('etcd', etcd.version, [...etcd.settings, `locks: concurrency-recipe mutex, session lease TTL 10 s (death-to-grant: ${ETCD_TTL_S} s)`]);
  columns.push({ name: 'etcd', sys: isMissing(etcd) ? etcd : etcdSystem(etcd) });
  const redis = o.quick ? skipped : await startRedis(false);
  if (!isMissing(redis)) peerInfo('redis', redis.version, [...redis.settings, `locks: SET key token NX PX, polled every ${REDIS_LOCK_POLL_MS} ms; release by Lua compare-and-delete; death-to-grant TTL ${REDIS_TTL_MS} ms refreshed every ${REDIS_TTL_MS / 3} ms by the holder`]);
  columns.push({ name: 'redis', sys: isMissing(redis) ? redis : redisSystem(redis) });

  const steps = columns.length * (3 + levels.length);
  const bar = progress('compare-locks', steps);
  const rt = new Map<string, Cell>();
  const hand = new Map<string, Map<number, Awaited<ReturnType<typeof handoff>> | string>>();
  const death = new Map<string, Cell>();
  const herd = new Map<string, Cell>();
  for (const { name, sys } of columns) {
    const h = new Map<number, Awaited<ReturnType<typeof handoff>> | string>();
    hand.set(name, h);
    if (isMissing(sys)) {
      for (const m of [rt, death, herd]) m.set(name, sys.missing);
      for (const n of levels) h.set(n, sys.missing);
      bar.tick(3 + levels.length);
      continue;
    }
    rt.set(name, await roundTrip(sys, ms));
    bar.tick();
    for (const n of levels) {
      h.set(n, await handoff(sys, n, ms, maxGrants));
      bar.tick();
    }
    death.set(name, sys.holderArgs ? await deathToGrant(sys).catch((e: unknown) => `failed: ${e instanceof Error ? e.message.slice(0, 80) : String(e)}`) : 'n/a (needs a process of its own)');
    bar.tick();
    const herdSize = o.quick ? QUICK_HERD : HERD;
    const hb = progress(`  herd of ${herdSize.toLocaleString('en-US')} (${name})`, herdSize);
    herd.set(name, sys.herd ? await sys.herd(herdSize, hb) : 'n/a');
    hb.done();
    bar.tick();
  }
  bar.done();
  if (!isMissing(server)) await server.stop();

  const names = columns.map((c) => c.name);
  const header = ['measure', ...names, 'latchkey remote/etcd', 'latchkey remote/redis'];
  const rowOf = (label: string, get: (name: string) => Cell | undefined): Cell[] => {
    const cells = names.map((n) => get(n) ?? '');
    const remote = get('latchkey (remote)');
    return [label, ...cells, ratio(remote, get('etcd')), ratio(remote, get('redis'))];
  };
  const handCell = (name: string, n: number, f: (r: Awaited<ReturnType<typeof handoff>>) => number): Cell | undefined => {
    const r = hand.get(name)?.get(n);
    return r === undefined ? undefined : typeof r === 'string' ? r : r.handoffs === 0 ? 'no handoff' : f(r);
  };
  const tput: Cell[][] = [rowOf('uncontended acquire + release /s', (n) => rt.get(n))];
  for (const c of levels) tput.push(rowOf(`handoffs/s, ${c} contenders`, (n) => handCell(n, c, (r) => r.perSec)));
  table('locks: throughput (higher is better)', header, tput, { chart: { columns: names.map((_, i) => i + 1), unit: 'per second (higher is better)', log: true } });

  const lat: Cell[][] = [];
  for (const c of levels) {
    lat.push(rowOf(`handoff p50 ms, ${c} contenders`, (n) => handCell(n, c, (r) => r.p50)));
    lat.push(rowOf(`handoff p99 ms, ${c} contenders`, (n) => handCell(n, c, (r) => r.p99)));
  }
  lat.push(rowOf('death-to-grant ms (holder SIGKILLed)', (n) => death.get(n)));
  lat.push(rowOf(`herd of ${(o.quick ? QUICK_HERD : HERD).toLocaleString('en-US')}: release to last grant ms`, (n) => herd.get(n)));
  table('locks: latency (lower is better)', header, lat, { chart: { columns: names.map((_, i) => i + 1), unit: 'milliseconds (lower is better)', log: true } });

  const fairness: Cell[][] = levels.map((c) => ['grants / handoffs to another contender, ' + String(c) + ' contenders', ...names.map((n) => {
    const r = hand.get(n)?.get(c);
    return r === undefined ? '' : typeof r === 'string' ? r : `${r.grants.toLocaleString('en-US')} / ${r.handoffs.toLocaleString('en-US')}`;
  })]);
  table('locks: fairness (a grant back to the releaser is not a handoff)', ['measure', ...names], fairness, { chart: false });
  for (const { name, sys } of columns) if (!isMissing(sys) && sys.deathTtl) note(`death-to-grant, ${name}: ${sys.deathTtl}.`);
  note('Ratios compare latchkey over its socket (the like-for-like lock service) with each peer; the embedded column is for context.');
  note(`Herd: latchkey queues ${HERD.toLocaleString('en-US')} sessions on /herd/i behind lock('/') (remote: the sessions share 8 connections from this process); etcd: ${HERD.toLocaleString('en-US')} watches on the global lock key, then a recipe lock each (8 client connections, 8 sessions); Redis: ${HERD.toLocaleString('en-US')} pollers over 8 connections.`);
  await store.close();
}

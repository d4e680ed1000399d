/**
 * `npm run bench -- compare-locks`: the lock service side by side —
 * latchkey's server over TCP (like the peers) and over its Unix socket,
 * etcd's concurrency-recipe mutex, and the Redis SET NX PX lock with
 * polling; latchkey embedded for context. In death-to-grant the TCP lease of
 * latchkey's server is 3 s (a server of its own, --ttl-ms 3000), the same as
 * etcd's lease and Redis's key TTL there; elsewhere it runs with its default
 * 10 s lease (a 3 s lease under a loaded machine's herd gives sessions up).
 *
 * - round trip: one client, acquire + release in a loop, nothing else.
 * - handoff: C contenders loop acquire → release on one lock. "handoffs/s"
 *   counts only grants to a *different* contender than the last holder, per
 *   second of the run; handoff latency is from the holder's release call to
 *   that grant (a re-grant to the releaser is not a handoff; with an unfair
 *   lock that is exactly what happens, and the fairness table shows it).
 * - death-to-grant: a holder in another process is SIGKILLed; the time until
 *   a waiter here is granted. etcd and Redis free the lock only when its
 *   lease/TTL lapses, and so does latchkey over TCP (a close the client did
 *   not announce keeps its locks for the lease: docs/architecture.md,
 *   "Leases"); over the Unix socket a close ends the session at once.
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
import { type Contender, handoff, type HandoffResult } from '../lock-handoff.js';
import { type Alternated, alternate, type BenchOptions, type Cell, cellOf, median, note, peerInfo, progress, ratio, roundPlan, type Side, table } from '../util.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const HOLDER = path.join(here, '..', 'peers', 'holder.js');

/** etcd lease TTL for death-to-grant (etcd's minimum is about 2 s with default election timeouts). */
const ETCD_TTL_S = 3;
/** latchkey server's TCP lease (--ttl-ms), the same 3 s. */
const LATCHKEY_TTL_MS = 3000;
/** Redis lock TTL for death-to-grant: the holder refreshes it every TTL/3 while alive. */
const REDIS_TTL_MS = 3000;
const HERD = 7000;
/** The herd in a quick run: latchkey only, small. */
const QUICK_HERD = 700;

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

function remoteSystem(server: LatchkeyServerPeer, transport: 'unix' | 'tcp'): System {
  return {
    name: transport === 'tcp' ? 'latchkey (TCP)' : 'latchkey (Unix socket)',
    contender: async () => {
      const c = await server.connect(transport);
      return latchkeyContender(c, () => c.close());
    },
    holderArgs: (name) => ['latchkey', transport === 'tcp' ? server.tcpUrl : server.socketUrl, name],
    deathTtl: transport === 'tcp' ? `TCP lease ${LATCHKEY_TTL_MS / 1000} s (--ttl-ms ${LATCHKEY_TTL_MS}; the server keeps a dead client's locks until its lease runs out)` : 'Unix socket close (no lease: the session ends when the socket closes)',
    herd: async (n, bar) => {
      // n sessions over 8 connections, each queued on /herd/i behind one holder's lock('/')
      const holder = await server.connect(transport);
      const global = await holder.lock('/');
      const conns = await Promise.all(Array.from({ length: 8 }, () => server.connect(transport)));
      const sessions = Array.from({ length: n }, (_, i) => conns[i % conns.length]!.session());
      let last = 0;
      const waits = sessions.map((s, i) => s.lock(`/herd/${i}`).then(() => {
        last = performance.now();
        bar.tick();
      }));
      // a failure is seen by Promise.all below; until then it must not count as unhandled
      for (const w of waits) w.catch(() => {});
      // the remote lock table is fetched on request (RemoteStore.fetchLockTable); wait until every request is queued
      const fetchTable = (holder as unknown as { fetchLockTable?: () => Promise<{ waiting: readonly unknown[] }> }).fetchLockTable?.bind(holder);
      const deadline = performance.now() + 60_000;
      const queued = async (): Promise<boolean> => {
        if (!fetchTable) return false;
        try {
          // every 100 ms: a table of thousands of waiters is a large answer, and polling it hard would load the server it measures
          while ((await fetchTable()).waiting.length < n) {
            if (performance.now() > deadline) return false;
            await sleep(100);
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
      for (const c of [holder, ...conns]) await c.close();
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
      const ms = last - t0;
      // the next round starts clean
      for (let i = 0; i < n; i += 1000) await conns[0]!.del(...Array.from({ length: Math.min(1000, n - i) }, (_, j) => `herd/${i + j}`));
      for (const c of conns) c.disconnect();
      return ms;
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
  const ms = o.quick ? 100 : 500;
  const levels = o.quick ? [2, 8] : [2, 8, 64];
  const maxGrants = o.quick ? 2000 : 20_000;
  const plan = roundPlan(o);
  // death-to-grant and the herd are events, not rates: fewer rounds, no warm-up (the rate rounds warmed every side)
  const eventPlan = o.quick ? { rounds: 1, warmup: 0 } : { rounds: 3, warmup: 0 };
  const herdSize = o.quick ? QUICK_HERD : HERD;
  const skipped: Missing = { missing: 'skipped (--quick)' };

  const store = await open();
  const server = await startLatchkeyServer();
  const deathServer = await startLatchkeyServer({ ttlMs: LATCHKEY_TTL_MS });
  peerInfo('latchkey server', undefined, [server.settings, `death-to-grant over TCP: ${deathServer.settings}`]);
  const etcd = o.quick ? skipped : await startEtcd();
  if (!isMissing(etcd)) peerInfo('etcd', etcd.version, [...etcd.settings, `locks: concurrency-recipe mutex, session lease TTL 10 s (death-to-grant: ${ETCD_TTL_S} s)`]);
  const redis = o.quick ? skipped : await startRedis(false);
  if (!isMissing(redis)) peerInfo('redis (in memory)', redis.version, [...redis.settings, `locks: SET key token NX PX, polled every ${REDIS_LOCK_POLL_MS} ms; release by Lua compare-and-delete; death-to-grant TTL ${REDIS_TTL_MS} ms refreshed every ${REDIS_TTL_MS / 3} ms by the holder`]);
  const columns: { name: string; sys: System | Missing; death?: System }[] = [
    { name: 'latchkey (TCP)', sys: remoteSystem(server, 'tcp'), death: remoteSystem(deathServer, 'tcp') },
    { name: 'latchkey (Unix socket)', sys: remoteSystem(server, 'unix') },
    { name: 'etcd', sys: isMissing(etcd) ? etcd : etcdSystem(etcd) },
    { name: 'redis', sys: isMissing(redis) ? redis : redisSystem(redis) },
    { name: 'latchkey embedded (context)', sys: embeddedSystem(store) },
  ];
  const bar = progress('compare-locks', 3 + levels.length);
  const sides = (measure: (sys: System, round: number, name: string) => Promise<number>): Side[] => columns.map(({ name, sys }) => ({ name, run: isMissing(sys) ? sys : (round: number) => measure(sys, round, name) }));

  const rt = await alternate('acquire + release', sides((sys) => roundTrip(sys, ms)), plan);
  bar.tick();
  const hand = new Map<number, Map<string, Alternated>>();
  const handLast = new Map<string, HandoffResult[]>();
  for (const n of levels) {
    hand.set(n, await alternate(`handoff, ${n} contenders`, sides(async (sys, round, name) => {
      const r = await handoff((i) => sys.contender(i), n, ms, maxGrants);
      if (round >= 0) handLast.set(`${name}|${n}`, [...(handLast.get(`${name}|${n}`) ?? []), r]);
      return r.perSec;
    }), plan));
    bar.tick();
  }
  const death = await alternate('death-to-grant', columns.filter((c) => isMissing(c.sys) || c.sys.holderArgs).map(({ name, sys, death: d }) => ({ name, run: isMissing(sys) ? sys : () => deathToGrant(d ?? sys) })), eventPlan);
  bar.tick();
  const herd = await alternate(`herd of ${herdSize}`, sides(async (sys) => {
    const hb = progress(`  herd of ${herdSize.toLocaleString('en-US')} (${sys.name})`, herdSize);
    try {
      return await sys.herd!(herdSize, hb);
    } finally {
      hb.done();
    }
  }), eventPlan);
  bar.tick();
  bar.done();
  await Promise.all([server.stop(), deathServer.stop(), isMissing(etcd) ? undefined : etcd.stop(), isMissing(redis) ? undefined : redis.stop()]);
  await store.close();

  const names = columns.map((c) => c.name);
  const header = ['measure', ...names, 'latchkey TCP/etcd', 'latchkey TCP/redis'];
  const rowOf = (label: string, get: (name: string) => Cell | undefined): Cell[] => {
    const cells = names.map((n) => get(n) ?? '');
    const like = get('latchkey (TCP)');
    return [label, ...cells, ratio(like, get('etcd')), ratio(like, get('redis'))];
  };
  // per-round handoff details: median of each round's figure
  const handDetail = (name: string, n: number, f: (r: HandoffResult) => number): Cell | undefined => {
    const a = hand.get(n)?.get(name);
    if (a === undefined) return undefined;
    if (typeof a.median === 'string') return a.median;
    const rs = handLast.get(`${name}|${n}`) ?? [];
    if (rs.every((r) => r.handoffs === 0)) return 'no handoff';
    return median(rs.filter((r) => r.handoffs > 0).map(f));
  };
  const tput: Cell[][] = [rowOf('uncontended acquire + release /s', (n) => cellOf(rt.get(n)))];
  for (const c of levels) tput.push(rowOf(`handoffs/s to another contender, ${c} contenders`, (n) => handDetail(n, c, (r) => r.perSec)));
  table('locks: throughput (higher is better)', header, tput, { chart: { columns: names.map((_, i) => i + 1), unit: 'per second (higher is better)', log: true } });

  const lat: Cell[][] = [];
  for (const c of levels) {
    lat.push(rowOf(`handoff p50 ms, ${c} contenders`, (n) => handDetail(n, c, (r) => r.p50)));
    lat.push(rowOf(`handoff p99 ms, ${c} contenders`, (n) => handDetail(n, c, (r) => r.p99)));
  }
  lat.push(rowOf('death-to-grant ms (holder SIGKILLed)', (n) => (death.has(n) ? cellOf(death.get(n)) : 'n/a (needs a process of its own)')));
  lat.push(rowOf(`herd of ${herdSize.toLocaleString('en-US')}: release to last grant ms`, (n) => cellOf(herd.get(n))));
  table('locks: latency (lower is better)', header, lat, { chart: { columns: names.map((_, i) => i + 1), unit: 'milliseconds (lower is better)', log: true } });

  const fairness: Cell[][] = levels.map((c) => [`grants / handoffs to another contender, ${c} contenders (all measured rounds)`, ...names.map((n) => {
    const a = hand.get(c)?.get(n);
    if (a !== undefined && typeof a.median === 'string') return a.median;
    const rs = handLast.get(`${n}|${c}`) ?? [];
    const g = rs.reduce((x, r) => x + r.grants, 0);
    const h = rs.reduce((x, r) => x + r.handoffs, 0);
    return `${g.toLocaleString('en-US')} / ${h.toLocaleString('en-US')}`;
  })]);
  table('locks: fairness (a grant back to the releaser is not a handoff)', ['measure', ...names], fairness, { chart: false });
  for (const { name, sys, death: d } of columns) if (!isMissing(sys) && (d ?? sys).deathTtl) note(`death-to-grant, ${name}: ${(d ?? sys).deathTtl}.`);
  note('Ratios compare latchkey\'s server over TCP (the same transport as etcd and Redis; in death-to-grant a 3 s lease like theirs) with each peer; the Unix socket and embedded columns are for context.');
  note('Connections: each latchkey and Redis contender has a connection of its own; etcd contenders each have a session (lease) over 8 shared client connections, as the etcd3 client multiplexes them.');
  note(`"handoffs/s" counts grants that went to a different contender than the last holder, per second of the round (${ms} ms, or ${maxGrants.toLocaleString('en-US')} grants); a contender that re-acquires the lock it just released (Redis's poller usually does) is a grant, not a handoff. Handoff p50/p99 are medians over the rounds.`);
  note('Durability differs, in the peers\' usual deployments: latchkey\'s server (durable) logs each grant and release as events buffered into its next log write, without waiting for an fsync of their own (a grant is acknowledged before it is on disk; a write under the lock is logged after its grant); etcd writes every lock key through raft and fsyncs it before answering; the Redis lock runs on Redis without persistence (a restart forgets every lock).');
  note(`Herd: latchkey queues ${herdSize.toLocaleString('en-US')} sessions on /herd/i behind lock('/') (the sessions share 8 connections from this process); etcd: ${herdSize.toLocaleString('en-US')} watches on the global lock key, then a recipe lock each (8 client connections, 8 sessions); Redis: ${herdSize.toLocaleString('en-US')} pollers over 8 connections.`);
}

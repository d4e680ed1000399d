/**
 * `latchkey serve --backend etcd://…` front-ends as real child processes
 * (issue 18), run by test/integration/etcd.sh against the cluster it
 * started (LK_ETCD_ENDPOINTS):
 *
 *   node etcd-serve.js cli        the CLI (set, get, ls, lock -- CMD) unchanged against a front-end;
 *                                 a write through one front-end is read through the other
 *   node etcd-serve.js xenstore   the XenStore socket of two front-ends: write/read/directory/rm, transactions
 *                                 (one failing EAGAIN by the other's write), a watch across front-ends,
 *                                 a latchkey client reading a XenStore write, SET_PERMS through one read through the other,
 *                                 a guest (--xenstore-domain-dir) introduced through one served by the other
 *   node etcd-serve.js failover   a client given both front-ends (tcp://A,B) holds a lock, an ephemeral node
 *                                 and a watch; its front-end is SIGKILLed: it resumes its session on B (same
 *                                 id, B adopts the etcd lease): the lock stays held (signal not aborted) past
 *                                 the old lease, a waiter on a third connection does not get it until the
 *                                 release (then with ownerDied false); the ephemeral survives; the watch goes on
 *                                 with no gap and no duplicate
 *   node etcd-serve.js late       clients that cannot come back within the lease (a relay refuses them): the
 *                                 lock holder gives it up (SESSION_EXPIRED) and the waiter gets it with
 *                                 ownerDied after the lease; a client holding an ephemeral asks to resume
 *                                 afterwards and is answered SESSION_EXPIRED (new session, ephemeral gone)
 *   node etcd-serve.js sessions   a client with two extra sessions (tcp://A,B): one holds a lock and an ephemeral,
 *                                 one waits for another client's lock, a third client queued behind it; A is
 *                                 SIGKILLed: both sessions resume on B (same ids), past the old lease the lock is
 *                                 still held and the wait still queued; the other client's release grants the
 *                                 resumed wait (ownerDied false), then its release the third client (FIFO)
 *   node etcd-serve.js late-waits clients with extra sessions that come back after the lease: the one holding a lock
 *                                 gives it up (SESSION_EXPIRED) and its wait with it; the one only waiting is
 *                                 answered SESSION_EXPIRED on its return and its wait fails so; the next waiter
 *                                 gets the held lock with ownerDied; the expired waits took nothing
 *   node etcd-serve.js moved      a cut link with the front-end alive: the client resumes on B; A, once its TCP
 *                                 lease for the cut connection is over, does not end the session (no revoke);
 *                                 the client's wait in flight at the cut is carried over and granted on B
 *   node etcd-serve.js hung      a client's front-end is stopped (SIGSTOP, socket open): never two holders of its
 *                                 lock (the client resumes on B in time, or its lock aborts before the waiter's grant)
 *   node etcd-serve.js client-dies a client process holding a lock through front-end A, and A, are both
 *                                 SIGKILLed: a waiter on front-end B gets the lock with ownerDied and a
 *                                 higher fencing token, once the lease expired (not before)
 *
 * Exits non-zero on any violation.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '../../src/client/store.js';
import type { Lock, WatchEvent } from '../../src/api.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { XsClient, XsReplyError } from '../xenstore/client.js';
import { XsType, nulTerminated } from '../../src/xenstore/wire.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(here, '../../src/cli/main.js');
const INDEX = path.resolve(here, '../../src/index.js');
const endpoints = process.env.LK_ETCD_ENDPOINTS ?? '';
/** The etcd lease of the front-ends' sessions (seconds). */
const TTL_S = 4;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`VIOLATION: ${what}`);
  console.log(`ok: ${what}`);
}

interface FrontEnd {
  proc: ChildProcess;
  url: string;
  exited: Promise<unknown>;
  stderr: () => string;
}

async function frontEnd(prefix: string, extra: string[] = [], ttl = TTL_S): Promise<FrontEnd> {
  const proc = spawn(process.execPath, [CLI, 'serve', '--backend', `etcd://${endpoints}/?prefix=${prefix}&ttl=${ttl}`,
    '--listen', '127.0.0.1:0', '--insecure-loopback', '--log-level', 'warn', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const exited = new Promise((resolve) => proc.on('exit', (c, s) => resolve(c ?? s)));
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', () => { if (out.includes('ready\n')) resolve(); });
    void exited.then((c) => reject(new Error(`front-end exited (${String(c)}) before ready: ${err}`)));
    setTimeout(() => reject(new Error(`front-end not ready in 60 s: ${out} ${err}`)), 60_000).unref();
  });
  const url = /^(tcp:\/\/.*)$/m.exec(out)?.[1];
  if (url === undefined) throw new Error(`no tcp address in ${out}`);
  return { proc, url, exited, stderr: () => err };
}

async function stop(f: FrontEnd): Promise<void> {
  if (f.proc.exitCode === null && f.proc.signalCode === null) f.proc.kill('SIGTERM');
  await f.exited;
}

function cli(url: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, args[0]!, '--url', url, ...args.slice(1)], { timeout: 60_000 }, (e, out, err) => {
      resolve({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : 1, out, err });
    });
  });
}

const hostOf = (url: string): string => url.replace(/^tcp:\/\//, '');

async function cliTest(): Promise<void> {
  const prefix = `/lk-serve-cli-${randomBytes(4).toString('hex')}`;
  // The default lease (10 s), not TTL_S: with a 4 s lease a client gives its link up (CONNECTION_LOST) after
  // 364 ms without an answer (two thirds of its resume window, client/link.ts startLease), which a loaded
  // machine's scheduling alone can cause; this scenario is about the CLI, not the lease.
  const a = await frontEnd(prefix, [], 10);
  const b = await frontEnd(prefix, [], 10);
  try {
    const set = await cli(a.url, ['set', '/cli/greeting', 'hello']);
    check(set.code === 0, `latchkey set through front-end A exits 0 (exit ${set.code}, stderr ${JSON.stringify(set.err.trim())})`);
    const get = await cli(b.url, ['get', '/cli/greeting']);
    check(get.code === 0 && get.out.trim() === 'hello', `latchkey get through front-end B reads what A wrote (got ${JSON.stringify(get.out)}, exit ${get.code}, stderr ${JSON.stringify(get.err.trim())})`);
    const both = await cli(`tcp://${hostOf(a.url)},${hostOf(b.url)}`, ['ls', '/cli']);
    check(both.code === 0 && both.out.trim() === 'greeting', `latchkey ls with both front-ends (tcp://A,B) lists /cli (got ${JSON.stringify(both.out)}, exit ${both.code}, stderr ${JSON.stringify(both.err.trim())})`);
    const lock = await cli(b.url, ['lock', '/cli/lock', '--', process.execPath, '-e', 'process.stdout.write(process.env.LATCHKEY_FENCE ?? "")']);
    check(lock.code === 0 && /^\d+$/.test(lock.out.trim()) && Number(lock.out) > 0, `latchkey lock -- CMD runs CMD with a fencing token (got ${JSON.stringify(lock.out)}, exit ${lock.code}, stderr ${JSON.stringify(lock.err.trim())})`);
  } finally {
    await stop(a);
    await stop(b);
  }
}

/** The lease of the resume scenarios (seconds): the client's resume window is about 0.73 × (TTL/4 − 250 ms) ≈ 1.3 s. */
const RESUME_TTL_S = 8;

/**
 * A TCP relay in this process between the client and a front-end: it lets the
 * test choose where the client's next connection goes, and refuse it for a
 * while (a client that cannot come back within its lease).
 */
async function relay(): Promise<{ url: string; to(target: string | undefined): void; cut(): void; close(): void }> {
  let target: string | undefined;
  const socks = new Set<net.Socket>();
  const server = net.createServer((down) => {
    socks.add(down);
    down.on('close', () => socks.delete(down));
    if (target === undefined) {
      down.destroy();
      return;
    }
    const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
    const up = net.connect({ host, port });
    down.pipe(up);
    up.pipe(down);
    const end = (): void => {
      down.destroy();
      up.destroy();
    };
    up.on('error', end).on('close', end);
    down.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `tcp://127.0.0.1:${port}`,
    to: (t) => { target = t; },
    cut: () => {
      for (const x of socks) x.destroy();
    },
    close: () => {
      server.close();
      for (const x of socks) x.destroy();
    },
  };
}

/** The welcome of the client's current link (its resume outcome). */
const welcomeOf = (c: unknown): { session: string; resumed?: boolean; resumeError?: { code: string; message: string } } =>
  (c as { conn: { link: { welcome: { session: string; resumed?: boolean; resumeError?: { code: string; message: string } } } } }).conn.link.welcome;

async function failoverTest(): Promise<void> {
  const prefix = `/lk-serve-fo-${randomBytes(4).toString('hex')}`;
  const a = await frontEnd(prefix, [], RESUME_TTL_S);
  const b = await frontEnd(prefix, [], RESUME_TTL_S);
  const client = await connect(`tcp://${hostOf(a.url)},${hostOf(b.url)}`, { name: 'client', minBackoffMs: 20, maxBackoffMs: 200 });
  const writer = await connect(b.url, { name: 'writer' });
  const waiter = await connect(b.url, { name: 'waiter' });
  try {
    const rev0 = await writer.set('/data/0', 'before');
    // The revision a front-end reports moves with the cluster (a frozen copy of it broke watch resumption).
    await client.get('/data/0');
    check(client.revision >= rev0, `the client's revision (${client.revision}) reached the write's (${rev0}) through front-end A`);
    const id = client.id;
    const lock: Lock = await client.lock('/jobs/x');
    check(lock.token > 0 && !lock.ownerDied, `the client holds /jobs/x (token ${lock.token}) through front-end A`);
    const eph = await client.create('/eph/client', 'alive', { ephemeral: true });
    const seen: WatchEvent[] = [];
    const startRev = rev0 + 1;
    const watching = (async () => {
      for await (const e of client.watch('/data', { recursive: true, fromRevision: startRev })) {
        seen.push(e);
        if (e.path === '/data/final') return;
      }
    })();
    await writer.set('/data/1', 'one');
    while (!seen.some((e) => e.path === '/data/1')) await sleep(20);
    let waiterGot: Lock | undefined;
    const waiting = waiter.lock('/jobs/x').then((l) => { waiterGot = l; return l; });

    const killedAt = performance.now();
    a.proc.kill('SIGKILL');
    await a.exited;
    // Writes while the client is between front-ends: its watch must get them all after it resumes.
    for (let i = 2; i <= 6; i++) await writer.set(`/data/${i}`, String(i));
    await client.set('/data/7', 'seven');
    const resumedMs = performance.now() - killedAt;
    const w = welcomeOf(client);
    check(w.resumed === true && client.id === id, `the client resumed its session ${id} on front-end B ${Math.round(resumedMs)} ms after A died (welcome resumed: ${String(w.resumed)}${w.resumeError === undefined ? '' : `, ${w.resumeError.code}: ${w.resumeError.message}`})`);
    check(!lock.signal.aborted && lock.held, `its lock on /jobs/x is still held, its signal not aborted${lock.signal.aborted ? ` (${String(lock.signal.reason)})` : ''}`);
    const e = await writer.get(eph);
    check(e !== undefined && e.stat.ephemeralOwner === id, `its ephemeral node ${eph} survived, still owned by ${id}`);
    await writer.set('/data/final', 'end');
    await watching;
    const paths = seen.map((x) => x.path);
    const want = ['/data/1', '/data/2', '/data/3', '/data/4', '/data/5', '/data/6', '/data/7', '/data/final'];
    check(JSON.stringify(paths) === JSON.stringify(want), `the watch went on across the failover with no gap and no duplicate: ${paths.join(' ')}`);
    const revs = seen.map((x) => x.revision);
    check(revs.every((r, i) => i === 0 || r > revs[i - 1]!), 'the watch revisions increase');

    // Past the dead front-end's last keep-alive + TTL: B keeps the adopted lease alive, the waiter still waits.
    while (performance.now() - killedAt < (RESUME_TTL_S + 2) * 1000) await sleep(100);
    check(waiterGot === undefined && !lock.signal.aborted, `${RESUME_TTL_S + 2} s after the kill (past the lease A kept alive) the waiter on a third connection has not got /jobs/x; the client still holds it`);
    const busy = await writer.lock('/jobs/x', { wait: false }).then((l) => l, (x: unknown) => x);
    check(LatchkeyError.is(busy, 'LOCKED'), 'a lock with wait: false is refused LOCKED');
    await client.set('/jobs/x/done', 'y', { fence: lock });
    check(true, 'a fenced write with the resumed lock goes through');
    await lock.release();
    const got = await waiting;
    check(!got.ownerDied && got.token > lock.token, `the release handed the lock to the waiter with ownerDied false and a higher token (${got.token} > ${lock.token})`);
    await got.release();
  } finally {
    await client.close();
    await writer.close();
    await waiter.close();
    await stop(b);
    a.proc.kill('SIGKILL');
  }
}

/**
 * Clients that come back only after the lease: one holding a lock gives it
 * up (SESSION_EXPIRED, before etcd could expire the lease) and the waiter gets
 * it with ownerDied once etcd expired the lease; one holding only an
 * ephemeral node asks to resume and is answered SESSION_EXPIRED: a new
 * session, the ephemeral gone.
 */
async function lateTest(): Promise<void> {
  const prefix = `/lk-serve-late-${randomBytes(4).toString('hex')}`;
  const a = await frontEnd(prefix, [], RESUME_TTL_S);
  const b = await frontEnd(prefix, [], RESUME_TTL_S);
  const r = await relay();
  r.to(hostOf(a.url));
  const holder = await connect(r.url, { name: 'holder', minBackoffMs: 50, maxBackoffMs: 500 });
  const eph = await connect(r.url, { name: 'eph', minBackoffMs: 50, maxBackoffMs: 500 });
  const waiter = await connect(b.url, { name: 'waiter' });
  try {
    const lock = await holder.lock('/jobs/z');
    const ephId = eph.id;
    const node = await eph.create('/eph/late', 'x', { ephemeral: true });
    const lost = new Promise<unknown>((resolve) => lock.signal.addEventListener('abort', () => resolve(lock.signal.reason), { once: true }));
    const waiting = waiter.lock('/jobs/z');
    r.to(undefined); // nowhere to reconnect to for now
    const killedAt = performance.now();
    a.proc.kill('SIGKILL');
    await a.exited;
    const reason = await lost;
    const lostMs = performance.now() - killedAt;
    check(LatchkeyError.is(reason, 'SESSION_EXPIRED'), `the holder, unable to resume, gave its lock up with SESSION_EXPIRED ${Math.round(lostMs)} ms after the kill (${(reason as Error).message})`);
    const got = await waiting;
    const gotMs = performance.now() - killedAt;
    check(got.ownerDied && got.token > lock.token, `the waiter got /jobs/z with ownerDied and a higher token (${got.token} > ${lock.token})`);
    check(gotMs > lostMs, `…after the holder had given it up (${Math.round(gotMs)} ms > ${Math.round(lostMs)} ms after the kill)`);
    // Its own lease: A renewed it at another moment than the holder's, so etcd may expire it up to a keep-alive period later.
    check(await eventually(async () => (await waiter.get(node)) === undefined), 'the expired session\'s ephemeral node is gone');
    r.to(hostOf(b.url)); // now they come back, too late
    await eph.set('/late/after', 'x');
    const w = welcomeOf(eph);
    check(w.resumeError?.code === 'SESSION_EXPIRED' && eph.id !== ephId, `coming back after the lease, the resume is answered SESSION_EXPIRED (${w.resumeError?.message ?? 'none'}); a new session ${eph.id}`);
    await holder.set('/late/holder', 'x');
    check(welcomeOf(holder).resumed !== true, 'the holder, having given its lock up, started a new session');
    await got.markConsistent();
    await got.release();
  } finally {
    await holder.close();
    await eph.close();
    await waiter.close();
    r.close();
    await stop(b);
    a.proc.kill('SIGKILL');
  }
}

/** Settles with 'pending' while `p` has not settled after `ms`, else with its value or error. */
const within = (p: Promise<unknown>, ms: number): Promise<unknown> => Promise.race([p.then((v) => v, (e: unknown) => e), sleep(ms).then(() => 'pending')]);

/**
 * Extra sessions and a wait across a SIGKILLed front-end: every session of
 * the connection resumes on B, the held lock stays held past the old lease,
 * the wait keeps its FIFO place (its queue entry, on the session's lease, is
 * adopted by B) and is granted there.
 */
async function sessionsTest(): Promise<void> {
  const prefix = `/lk-serve-ss-${randomBytes(4).toString('hex')}`;
  const a = await frontEnd(prefix, [], RESUME_TTL_S);
  const b = await frontEnd(prefix, [], RESUME_TTL_S);
  const client = await connect(`tcp://${hostOf(a.url)},${hostOf(b.url)}`, { name: 'sessions', minBackoffMs: 20, maxBackoffMs: 200 });
  const other = await connect(b.url, { name: 'other' });
  const third = await connect(b.url, { name: 'third' });
  try {
    const s1 = client.session({ name: 'holder' });
    const s2 = client.session({ name: 'waiter' });
    const held = await s1.lock('/jobs/held');
    const eph = await s1.create('/eph/s1', 'x', { ephemeral: true });
    const [id1, id2] = [s1.id, s2.id];
    const theirs = await other.lock('/jobs/w');
    const waiting = s2.lock('/jobs/w');
    while (!(await other.fetchLockTable()).waiting.some((w) => w.session === id2)) await sleep(50);
    const behind = third.lock('/jobs/w');
    while ((await other.fetchLockTable()).waiting.filter((w) => w.path === '/jobs/w').length < 2) await sleep(50);
    check(true, `session ${id1} holds /jobs/held (token ${held.token}); session ${id2} waits for /jobs/w, a third client queued behind it`);

    const killedAt = performance.now();
    a.proc.kill('SIGKILL');
    await a.exited;
    check(s1.locks().some((l) => l.path === '/jobs/held'), 'while its front-end is gone the session still lists its lock (locks())');
    await s1.get('/jobs');
    await s2.get('/jobs');
    const w = welcomeOf(client);
    check(w.resumed === true && s1.id === id1 && s2.id === id2, `both extra sessions resumed on B ${Math.round(performance.now() - killedAt)} ms after A died (same ids ${s1.id}, ${s2.id})`);
    check(!held.signal.aborted && held.held, `the lock on /jobs/held is still held${held.signal.aborted ? ` (${String(held.signal.reason)})` : ''}`);
    const e = await other.get(eph);
    check(e !== undefined && e.stat.ephemeralOwner === id1, `its ephemeral node ${eph} survived, owned by ${id1}`);

    while (performance.now() - killedAt < (RESUME_TTL_S + 2) * 1000) await sleep(100);
    check(!held.signal.aborted && await within(waiting, 0) === 'pending' && await within(behind, 0) === 'pending', `${RESUME_TTL_S + 2} s after the kill (past the lease A kept alive) the lock is still held and both waits still wait`);
    const busy = await other.lock('/jobs/held', { wait: false }).then((l) => l, (x: unknown) => x);
    check(LatchkeyError.is(busy, 'LOCKED'), 'another session is refused /jobs/held (LOCKED)');
    await theirs.release();
    const got = await waiting;
    check(!got.ownerDied && got.token > theirs.token, `the release granted the resumed wait, ownerDied false, higher token (${got.token} > ${theirs.token})`);
    check(await within(behind, 300) === 'pending', 'the third client, queued behind the resumed wait, still waits (FIFO)');
    await s2.set('/jobs/w/done', 'y', { fence: got });
    await got.release();
    const next = await behind;
    check(!next.ownerDied && next.token > got.token, `then the third client got it, ownerDied false (${next.token} > ${got.token})`);
    await next.release();
    await held.release();
    const free = await other.lock('/jobs/held', { wait: false });
    check(!free.ownerDied, 'the resumed holder\'s release freed /jobs/held (ownerDied false)');
    await free.release();
  } finally {
    await client.close();
    await other.close();
    await third.close();
    await stop(b);
    a.proc.kill('SIGKILL');
  }
}

/**
 * Extra sessions that come back after the lease: a client holding a lock
 * in one session and waiting in another gives both up at the end of its
 * resume window (SESSION_EXPIRED); a client only waiting keeps its claim and
 * is answered SESSION_EXPIRED when it comes back, its wait failing so. The
 * next waiter of the held lock gets it with ownerDied; the expired waits
 * took nothing.
 */
async function lateWaitsTest(): Promise<void> {
  const prefix = `/lk-serve-lw-${randomBytes(4).toString('hex')}`;
  const a = await frontEnd(prefix, [], RESUME_TTL_S);
  const b = await frontEnd(prefix, [], RESUME_TTL_S);
  const r = await relay();
  r.to(hostOf(a.url));
  const holder = await connect(r.url, { name: 'holder', minBackoffMs: 50, maxBackoffMs: 500 });
  const waitOnly = await connect(r.url, { name: 'wait-only', minBackoffMs: 50, maxBackoffMs: 500 });
  const other = await connect(b.url, { name: 'other' });
  try {
    const h1 = holder.session({ name: 'h1' });
    const h2 = holder.session({ name: 'h2' });
    const w1 = waitOnly.session({ name: 'w1' });
    const lock = await h1.lock('/jobs/lh');
    const theirs = await other.lock('/jobs/lw');
    const wait1 = h2.lock('/jobs/lw').then(() => 'granted', (e: unknown) => e);
    const wait2 = w1.lock('/jobs/lw').then(() => 'granted', (e: unknown) => e);
    const nextWaiter = other.session({ name: 'next' });
    while ((await other.fetchLockTable()).waiting.filter((w) => w.path === '/jobs/lw').length < 2) await sleep(50);
    const waiting = nextWaiter.lock('/jobs/lh');
    r.to(undefined); // nowhere to reconnect to for now
    const killedAt = performance.now();
    a.proc.kill('SIGKILL');
    await a.exited;
    const lost = await new Promise<unknown>((resolve) => lock.signal.addEventListener('abort', () => resolve(lock.signal.reason), { once: true }));
    check(LatchkeyError.is(lost, 'SESSION_EXPIRED'), `the holder gave its lock up with SESSION_EXPIRED ${Math.round(performance.now() - killedAt)} ms after the kill (${(lost as Error).message})`);
    const e1 = await wait1;
    check(LatchkeyError.is(e1, 'SESSION_EXPIRED'), `…and its other session's wait failed SESSION_EXPIRED (${String(e1)})`);
    const got = await waiting;
    check(got.ownerDied && got.token > lock.token, `the next waiter got /jobs/lh with ownerDied after the lease, ${Math.round(performance.now() - killedAt)} ms after the kill (${got.token} > ${lock.token})`);
    check(await within(wait2, 0) === 'pending', 'the client only waiting still waits for a server to answer its claim');
    while (performance.now() - killedAt < (RESUME_TTL_S + 2) * 1000) await sleep(100);
    r.to(hostOf(b.url)); // it comes back, too late
    const e2 = await wait2;
    check(LatchkeyError.is(e2, 'SESSION_EXPIRED'), `coming back after the lease its wait failed SESSION_EXPIRED (${String(e2)})`);
    check(welcomeOf(waitOnly).resumeError?.code === 'SESSION_EXPIRED', 'its connection\'s resume was answered SESSION_EXPIRED');
    const after = await w1.get('/jobs').then(() => 'ok', (x: unknown) => x);
    check(LatchkeyError.is(after, 'SESSION_EXPIRED'), 'its extra session has ended (SESSION_EXPIRED)');
    await theirs.release();
    const free = await other.lock('/jobs/lw', { wait: false });
    check(!free.ownerDied, 'the expired waits took nothing: /jobs/lw is free, ownerDied false');
    await free.release();
    await got.markConsistent();
    await got.release();
  } finally {
    await holder.close();
    await waitOnly.close();
    await other.close();
    r.close();
    await stop(b);
    a.proc.kill('SIGKILL');
  }
}

/**
 * A cut link, the front-end alive: the client resumes on B; A, whose TCP
 * lease for the cut connection runs out 3 s later, must not end the session
 * (revoking the lease would take the lock and the ephemeral): it saw its
 * session record taken over and let the session go.
 */
async function movedTest(): Promise<void> {
  const prefix = `/lk-serve-mv-${randomBytes(4).toString('hex')}`;
  const a = await frontEnd(prefix, ['--ttl-ms', '3000'], RESUME_TTL_S);
  const b = await frontEnd(prefix, [], RESUME_TTL_S);
  const r = await relay();
  r.to(hostOf(a.url));
  const client = await connect(`${r.url},${hostOf(b.url)}`, { name: 'mover', minBackoffMs: 20, maxBackoffMs: 200 });
  const other = await connect(b.url, { name: 'other' });
  try {
    const id = client.id;
    const lock = await client.lock('/jobs/m');
    const node = await client.create('/eph/mover', 'x', { ephemeral: true });
    const theirs = await other.lock('/jobs/mw');
    const waiting = client.lock('/jobs/mw');
    while (!(await other.fetchLockTable()).waiting.some((w) => w.path === '/jobs/mw')) await sleep(50);
    r.to(undefined);
    r.cut();
    const cutAt = performance.now();
    await sleep(100); // the client sees its link closed (a request sent before that fails CONNECTION_LOST)
    await client.ready();
    await client.set('/moved/1', 'x');
    check(welcomeOf(client).resumed === true && client.id === id, `after a cut link (A alive) the client resumed session ${id} on B`);
    while (performance.now() - cutAt < 6000) await sleep(100);
    check(!lock.signal.aborted && lock.held, `6 s later (A's 3 s TCP lease for the cut connection over) the lock is still held${lock.signal.aborted ? ` (${String(lock.signal.reason)})` : ''}`);
    const busy = await other.lock('/jobs/m', { wait: false }).then((l) => l, (x: unknown) => x);
    check(LatchkeyError.is(busy, 'LOCKED'), 'another session is refused the lock (LOCKED)');
    check((await other.get(node)) !== undefined, 'the ephemeral node is still there: A did not revoke the lease');
    check(await within(waiting, 0) === 'pending', 'the wait in flight at the cut still waits (A, alive, did not withdraw it; B carried it over)');
    await theirs.release();
    const got = await waiting;
    check(!got.ownerDied && got.token > theirs.token, `the other client's release granted it, ownerDied false (${got.token} > ${theirs.token})`);
    await got.release();
    await lock.release();
  } finally {
    await client.close();
    await other.close();
    r.close();
    await stop(a);
    await stop(b);
  }
}

/**
 * A hung front-end: A is stopped (SIGSTOP), its socket open, so nothing
 * closes the client's link and A no longer keeps the session's etcd lease
 * alive. The lock must never have two holders: either the client resumes on
 * B in time (B keeps the lease; the waiter gets the lock only at the
 * release) or its lock's signal aborts before the waiter's grant. Before
 * the client bounded a resumable link's silence by its resume window, it
 * trusted the lock for its whole TCP lease (0.73 x 10 s), past the 4 s etcd
 * lease: the waiter got the lock while the client still held it.
 */
async function hungTest(): Promise<void> {
  const prefix = `/lk-serve-hg-${randomBytes(4).toString('hex')}`;
  // The short lease (4 s) is the case: the client's TCP lease (0.73 x 10 s) outlasts it.
  const a = await frontEnd(prefix, [], TTL_S);
  const b = await frontEnd(prefix, [], TTL_S);
  const client = await connect(`tcp://${hostOf(a.url)},${hostOf(b.url)}`, { name: 'hung-client', minBackoffMs: 20, maxBackoffMs: 200 });
  const waiter = await connect(b.url, { name: 'waiter' });
  try {
    const id = client.id;
    const lock = await client.lock('/jobs/h');
    let abortedAt: number | undefined;
    lock.signal.addEventListener('abort', () => { abortedAt = performance.now(); });
    let grantedAt: number | undefined;
    const waiting = waiter.lock('/jobs/h').then((l) => { grantedAt = performance.now(); return l; });
    const stoppedAt = performance.now();
    a.proc.kill('SIGSTOP');
    // Past the etcd lease A stopped keeping alive, plus slack for the election of a new holder.
    while (performance.now() - stoppedAt < (TTL_S + 3) * 1000 && grantedAt === undefined) await sleep(100);
    const resumed = welcomeOf(client).resumed === true && client.id === id;
    if (grantedAt === undefined) {
      check(resumed && !lock.signal.aborted, `${TTL_S + 3} s after A was stopped the client resumed session ${id} on B and still holds /jobs/h; the waiter waits`);
      await lock.release();
      const got = await waiting;
      check(!got.ownerDied && grantedAt !== undefined, 'the release handed the lock to the waiter, ownerDied false');
      await got.release();
    } else {
      check(abortedAt !== undefined && abortedAt < grantedAt, `the waiter got /jobs/h ${Math.round(grantedAt - stoppedAt)} ms after A was stopped, and the client's lock had aborted before (${abortedAt === undefined ? 'never' : `${Math.round(abortedAt - stoppedAt)} ms`}): never two holders`);
      await (await waiting).release();
    }
  } finally {
    a.proc.kill('SIGCONT');
    await client.close();
    await waiter.close();
    a.proc.kill('SIGKILL');
    await stop(b);
  }
}

/** A client process: connects to URL, takes the lock, prints `locked TOKEN`, then waits to be killed. */
const HOLDER = `
const { connect } = await import(process.argv[1]);
const s = await connect(process.argv[2], { name: 'holder' });
const l = await s.lock('/jobs/y');
process.stdout.write('locked ' + l.token + '\\n');
setInterval(() => {}, 1 << 30);
`;

async function clientDiesTest(): Promise<void> {
  const prefix = `/lk-serve-cd-${randomBytes(4).toString('hex')}`;
  const a = await frontEnd(prefix);
  const b = await frontEnd(prefix);
  const holder = spawn(process.execPath, ['--input-type=module', '-e', HOLDER, INDEX, a.url], { stdio: ['ignore', 'pipe', 'inherit'] });
  const waiter = await connect(b.url, { name: 'waiter' });
  try {
    let out = '';
    holder.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    const deadline = Date.now() + 60_000;
    while (!/locked \d+/.test(out)) {
      if (Date.now() > deadline || holder.exitCode !== null) throw new Error(`the holder did not take the lock: ${out}`);
      await sleep(20);
    }
    const token = Number(/locked (\d+)/.exec(out)![1]);
    check(token > 0, `a client process holds /jobs/y through front-end A (token ${token})`);
    const busy = await waiter.lock('/jobs/y', { wait: false }).then((l) => l, (e: unknown) => e);
    check(LatchkeyError.is(busy, 'LOCKED'), `through front-end B the lock is held (LOCKED with wait: false: ${(busy as Error).message})`);
    const waiting = waiter.lock('/jobs/y');
    await sleep(300);
    const killedAt = performance.now();
    holder.kill('SIGKILL');
    a.proc.kill('SIGKILL');
    const l = await waiting;
    const ms = performance.now() - killedAt;
    check(l.ownerDied, 'the waiter on front-end B got the lock with ownerDied');
    check(l.token > token, `with a higher fencing token (${l.token} > ${token})`);
    check(ms >= TTL_S * 1000 / 2, `not before the lease ran out (${Math.round(ms)} ms after the kills; lease ${TTL_S} s, keep-alives every TTL/3)`);
    check(ms < TTL_S * 1000 + 20_000, `and soon after it (${Math.round(ms)} ms)`);
    await l.markConsistent();
    await l.release();
  } finally {
    holder.kill('SIGKILL');
    await waiter.close();
    a.proc.kill('SIGKILL');
    await stop(b);
  }
}

/** Waits (up to 10 s) for `f` to hold: a front-end reads from its mirror, which another front-end's write reaches by etcd's watch. */
async function eventually(f: () => Promise<boolean>): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (await f().catch(() => false)) return true;
    await sleep(100);
  }
  return false;
}

/**
 * The XenStore socket of two front-ends on one prefix: write, read,
 * directory, rm, transactions (committed, and one failed EAGAIN by the other
 * front-end's write), a watch on B firing for a write through A, a latchkey
 * client reading what a XenStore client wrote, permissions set through A
 * read through B, xenstore-utils, and a guest domain introduced through A
 * whose socket B serves (the domain table is in etcd).
 */
async function xenstoreTest(): Promise<void> {
  const prefix = `/lk-serve-xs-${randomBytes(4).toString('hex')}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-etcd-xs-'));
  const fa = await frontEnd(prefix, ['--xenstore-socket', path.join(dir, 'xa'), '--xenstore-domain-dir', path.join(dir, 'da')]);
  const fb = await frontEnd(prefix, ['--xenstore-socket', path.join(dir, 'xb'), '--xenstore-domain-dir', path.join(dir, 'db')]);
  const a = await XsClient.connect(path.join(dir, 'xa'));
  const b = await XsClient.connect(path.join(dir, 'xb'));
  try {
    await a.write('/vm/1/name', 'one');
    check(await a.read('/vm/1/name') === 'one', 'XenStore write then read through front-end A');
    check((await a.directory('/vm/1')).includes('name'), 'XenStore directory lists the new node');
    check(await eventually(async () => (await b.read('/vm/1/name')) === 'one'), 'front-end B reads what A wrote');
    const native = await cli(fa.url, ['get', '/vm/1/name']);
    check(native.code === 0 && native.out.trim() === 'one', `latchkey get reads what a XenStore client wrote (got ${JSON.stringify(native.out)})`);
    await b.watch('/vm', 'tok');
    const first = await b.nextEvent();
    check(first.path === '/vm' && first.token === 'tok', `a XenStore watch fires once when set (${JSON.stringify(first)})`);
    await a.write('/vm/2/name', 'two');
    const seen: string[] = [];
    const fired = await Promise.race([(async () => {
      for (;;) {
        const e = await b.nextEvent();
        seen.push(e.path);
        if (e.path === '/vm/2/name') return true;
      }
    })(), sleep(10_000).then(() => false)]);
    check(fired, `a watch on front-end B fires for a write through A (events ${JSON.stringify(seen)})`);
    const t = await a.start();
    check(await a.read('/vm/1/name', t) === 'one', 'a read in a transaction');
    await a.write('/vm/1/name', 'uno', t);
    await a.end(t, true);
    check(await eventually(async () => (await b.read('/vm/1/name')) === 'uno'), 'a committed transaction is seen through front-end B');
    const t2 = await a.start();
    await a.read('/vm/1/name', t2);
    await b.write('/vm/1/name', 'changed by B');
    await a.write('/vm/1/name', 'x', t2);
    const end = await a.end(t2, true).then(() => 'committed', (e: unknown) => (e instanceof XsReplyError ? e.errno : String(e)));
    check(end === 'EAGAIN', `a transaction whose read another front-end changed fails EAGAIN (got ${end})`);
    check(await a.read('/vm/1/name') === 'changed by B', 'the failed transaction wrote nothing');
    check((await b.getPerms('/vm/1')).join(',') === 'n0', 'a node without explicit permissions reads as n0');
    await a.setPerms('/vm/1', ['n0', 'r1']);
    check(await eventually(async () => (await b.getPerms('/vm/1')).join(',') === 'n0,r1'), 'SET_PERMS through A is read through B (permissions are stored in etcd)');
    await a.write('/vm/1', 'its own value');
    await a.write('/vm/1/name', 'after perms');
    check(await eventually(async () => (await b.read('/vm/1/name')) === 'after perms' && (await b.read('/vm/1')) === 'its own value'), 'writes after SET_PERMS reach B');
    check((await b.getPerms('/vm/1')).join(',') === 'n0,r1', 'a write of the node\'s value keeps its permissions');
    await a.write('/vm/1/fresh', 'x');
    const inherited = await a.getPerms('/vm/1/fresh');
    check(await eventually(async () => (await b.getPerms('/vm/1/fresh')).join(',') === inherited.join(',')), `a node created under it has the same permissions through B as through A (${inherited.join(',')})`);
    const perms = await cli(fa.url, ['get', '/vm/1/name']);
    check(perms.code === 0 && perms.out.trim() === 'after perms', `latchkey get reads it (got ${JSON.stringify(perms.out)})`);
    await a.rm('/vm/2');
    check(await eventually(async () => !(await b.directory('/vm')).includes('2')), 'rm through A is seen in B\'s directory');
    // Xen's own tools (xenstore-utils, libxenstore) unchanged (etcd.sh installs xenstore-utils when missing).
    const tool = (name: string, sock: string, args: string[]): Promise<{ code: number; out: string }> => new Promise((resolve) => {
      execFile(name, args, { timeout: 30_000, env: { ...process.env, XENSTORED_PATH: sock } }, (e, out) => resolve({ code: e === null ? 0 : 1, out }));
    });
    const r = await tool('xenstore-read', path.join(dir, 'xa'), ['/vm/1/name']);
    check(r.code === 0 && r.out.trim() === 'after perms', `xenstore-read through A (got ${JSON.stringify(r.out)})`);
    const w = await tool('xenstore-write', path.join(dir, 'xb'), ['/tools/a', '1', '/tools/b/c', 'two']);
    check(w.code === 0, 'xenstore-write through B');
    check(await eventually(async () => (await tool('xenstore-read', path.join(dir, 'xa'), ['/tools/b/c'])).out.trim() === 'two'), 'xenstore-read through A reads what xenstore-write wrote through B');
    const ls = await tool('xenstore-ls', path.join(dir, 'xa'), ['/tools']);
    check(ls.code === 0 && /a = "1"/.test(ls.out) && /c = "two"/.test(ls.out), `xenstore-ls through A (got ${JSON.stringify(ls.out)})`);
    // A guest introduced through A is served by B (its socket in B's domain directory), and released through B.
    await a.mkdir('/local/domain/3');
    await a.setPerms('/local/domain/3', ['n3']);
    await a.request(XsType.INTRODUCE, nulTerminated(['3', '1003', '1']));
    check(await eventually(async () => existsSync(path.join(dir, 'db', '3'))), 'B opens a socket for the guest A introduced');
    const guest = await XsClient.connect(path.join(dir, 'db', '3'));
    await guest.write('name', 'guest three');
    check(await a.read('/local/domain/3/name') === 'guest three', 'the guest\'s write through B is read through A');
    await b.request(XsType.RELEASE, nulTerminated(['3']));
    await guest.whenClosed();
    check(await eventually(async () => !existsSync(path.join(dir, 'da', '3')) && !existsSync(path.join(dir, 'db', '3'))), 'released through B: both front-ends close the guest\'s socket');
  } finally {
    await a.close();
    await b.close();
    await stop(fa);
    await stop(fb);
    rmSync(dir, { recursive: true, force: true });
  }
}

const scenarios: Record<string, () => Promise<void>> = { cli: cliTest, failover: failoverTest, late: lateTest, sessions: sessionsTest, 'late-waits': lateWaitsTest, moved: movedTest, hung: hungTest, 'client-dies': clientDiesTest, xenstore: xenstoreTest };
const which = process.argv[2] ?? '';
const run = scenarios[which];
if (run === undefined || endpoints === '') {
  console.error(`usage: LK_ETCD_ENDPOINTS=h:p,… node etcd-serve.js ${Object.keys(scenarios).join('|')}`);
  process.exit(2);
}
run().then(() => {
  console.log(`PASS etcd-serve ${which}`);
  process.exit(0);
}, (e: unknown) => {
  console.error(`FAIL etcd-serve ${which}: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  process.exit(1);
});

/**
 * `latchkey serve --backend etcd://…` front-ends as real child processes
 * (issue 18), run by test/integration/etcd.sh against the cluster it
 * started (LK_ETCD_ENDPOINTS):
 *
 *   node etcd-serve.js cli        the CLI (set, get, ls, lock -- CMD) unchanged against a front-end;
 *                                 a write through one front-end is read through the other; --xenstore-domain-dir refused
 *   node etcd-serve.js xenstore   the XenStore socket of two front-ends: write/read/directory/rm, transactions
 *                                 (one failing EAGAIN by the other's write), a watch across front-ends,
 *                                 a latchkey client reading a XenStore write, SET_PERMS through one read through the other
 *   node etcd-serve.js failover   a client given both front-ends (tcp://A,B) holds a lock and a watch;
 *                                 its front-end is SIGKILLed: it reconnects to the other and its watch goes on
 *                                 with no gap and no duplicate; its lock is reported lost to it (the session
 *                                 does not move between front-ends: docs/etcd.md) and nobody gets it before
 *                                 the dead front-end's lease ran out; it then gets it again with ownerDied
 *   node etcd-serve.js client-dies a client process holding a lock through front-end A, and A, are both
 *                                 SIGKILLed: a waiter on front-end B gets the lock with ownerDied and a
 *                                 higher fencing token, once the lease expired (not before)
 *
 * Exits non-zero on any violation.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '../../src/client/store.js';
import type { Lock, WatchEvent } from '../../src/api.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { XsClient, XsReplyError } from '../xenstore/client.js';

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

async function frontEnd(prefix: string, extra: string[] = []): Promise<FrontEnd> {
  const proc = spawn(process.execPath, [CLI, 'serve', '--backend', `etcd://${endpoints}/?prefix=${prefix}&ttl=${TTL_S}`,
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
  const a = await frontEnd(prefix);
  const b = await frontEnd(prefix);
  try {
    const set = await cli(a.url, ['set', '/cli/greeting', 'hello']);
    check(set.code === 0, `latchkey set through front-end A exits 0 (${set.err.trim()})`);
    const get = await cli(b.url, ['get', '/cli/greeting']);
    check(get.code === 0 && get.out.trim() === 'hello', `latchkey get through front-end B reads what A wrote (got ${JSON.stringify(get.out)})`);
    const both = await cli(`tcp://${hostOf(a.url)},${hostOf(b.url)}`, ['ls', '/cli']);
    check(both.code === 0 && both.out.trim() === 'greeting', `latchkey ls with both front-ends (tcp://A,B) lists /cli (got ${JSON.stringify(both.out)})`);
    const lock = await cli(b.url, ['lock', '/cli/lock', '--', process.execPath, '-e', 'process.stdout.write(process.env.LATCHKEY_FENCE ?? "")']);
    check(lock.code === 0 && /^\d+$/.test(lock.out.trim()) && Number(lock.out) > 0, `latchkey lock -- CMD runs CMD with a fencing token (got ${JSON.stringify(lock.out)})`);
    // Guests' XenStore sockets are refused with a clear error, before connecting anything (the domain table is per front-end).
    const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-etcd-serve-'));
    try {
      const xs = await new Promise<{ code: number; err: string }>((resolve) => {
        execFile(process.execPath, [CLI, 'serve', '--backend', `etcd://${endpoints}/?prefix=${prefix}`, '--socket', path.join(dir, 's'), '--xenstore-socket', path.join(dir, 'xs'), '--xenstore-domain-dir', path.join(dir, 'dom')],
          { timeout: 60_000 }, (e, _out, err) => resolve({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : 1, err }));
      });
      check(xs.code !== 0 && /INVALID_ARGUMENT/.test(xs.err) && /--xenstore-domain-dir is not available with --backend etcd/.test(xs.err), `serve --backend etcd --xenstore-domain-dir is refused (INVALID_ARGUMENT): ${xs.err.trim()}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    await stop(a);
    await stop(b);
  }
}

async function failoverTest(): Promise<void> {
  const prefix = `/lk-serve-fo-${randomBytes(4).toString('hex')}`;
  const a = await frontEnd(prefix);
  const b = await frontEnd(prefix);
  const client = await connect(`tcp://${hostOf(a.url)},${hostOf(b.url)}`, { name: 'client', minBackoffMs: 20, maxBackoffMs: 200 });
  const writer = await connect(b.url, { name: 'writer' });
  try {
    const rev0 = await writer.set('/data/0', 'before');
    // The revision a front-end reports moves with the cluster (a frozen copy of it broke watch resumption).
    await client.get('/data/0');
    check(client.revision >= rev0, `the client's revision (${client.revision}) reached the write's (${rev0}) through front-end A`);
    const lock: Lock = await client.lock('/jobs/x');
    check(lock.token > 0 && !lock.ownerDied, `the client holds /jobs/x (token ${lock.token}) through front-end A`);
    const lost = new Promise<unknown>((resolve) => lock.signal.addEventListener('abort', () => resolve(lock.signal.reason), { once: true }));
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

    const killedAt = performance.now();
    a.proc.kill('SIGKILL');
    await a.exited;
    // Writes while the client is between front-ends: its watch must get them all after it reconnects.
    for (let i = 2; i <= 6; i++) await writer.set(`/data/${i}`, String(i));
    const reason = await lost;
    check(LatchkeyError.is(reason), `the client is told its lock is lost (${(reason as Error).message})`);
    // The client is reconnected to B: a request through it succeeds.
    await client.set('/data/7', 'seven');
    const reconnectMs = performance.now() - killedAt;
    check(reconnectMs < TTL_S * 1000, `the client reconnected to front-end B and wrote through it ${Math.round(reconnectMs)} ms after A died (within the ${TTL_S} s lease)`);
    await writer.set('/data/final', 'end');
    await watching;
    const paths = seen.map((e) => e.path);
    const want = ['/data/1', '/data/2', '/data/3', '/data/4', '/data/5', '/data/6', '/data/7', '/data/final'];
    check(JSON.stringify(paths) === JSON.stringify(want), `the watch went on across the failover with no gap and no duplicate: ${paths.join(' ')}`);
    const revs = seen.map((e) => e.revision);
    check(revs.every((r, i) => i === 0 || r > revs[i - 1]!), 'the watch revisions increase');

    // Nobody may hold /jobs/x while the dead front-end's lease can still be alive.
    const relock = await client.lock('/jobs/x');
    const heldAfterMs = performance.now() - killedAt;
    check(relock.ownerDied && relock.token > lock.token, `the lock came back with ownerDied and a higher token (${relock.token} > ${lock.token})`);
    // The lease ends TTL after its last keep-alive, and keep-alives go every TTL/3: at least 2/3 TTL after the kill.
    check(heldAfterMs >= TTL_S * 1000 / 2, `…only once the dead front-end's lease ran out (${Math.round(heldAfterMs)} ms after the kill; lease ${TTL_S} s)`);
    await relock.release();
  } finally {
    await client.close();
    await writer.close();
    await stop(b);
    a.proc.kill('SIGKILL');
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
 * read through B, and xenstore-utils.
 */
async function xenstoreTest(): Promise<void> {
  const prefix = `/lk-serve-xs-${randomBytes(4).toString('hex')}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-etcd-xs-'));
  const fa = await frontEnd(prefix, ['--xenstore-socket', path.join(dir, 'xa')]);
  const fb = await frontEnd(prefix, ['--xenstore-socket', path.join(dir, 'xb')]);
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
  } finally {
    await a.close();
    await b.close();
    await stop(fa);
    await stop(fb);
    rmSync(dir, { recursive: true, force: true });
  }
}

const scenarios: Record<string, () => Promise<void>> = { cli: cliTest, failover: failoverTest, 'client-dies': clientDiesTest, xenstore: xenstoreTest };
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

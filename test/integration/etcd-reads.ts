/**
 * Read-after-write across front-ends of a store on etcd (`latchkey serve
 * --backend etcd`): a read through any front-end sees every write
 * acknowledged before it began, whichever front-end took the write and
 * however fresh the reading one is.
 *
 *   node etcd-reads.js    (LK_ETCD_ENDPOINTS=h:p,…)
 *
 * 1. Two front-ends A and B on a fresh prefix: a write through A with a
 *    fresh client (a connection and a session each, as the CLI makes),
 *    acknowledged, then at once a read through B with a fresh client.
 * 2. The same with one client per front-end kept open, many rounds, a
 *    get, an exists and a list each time.
 * 3. A front-end B started anew each round, read at once after its `ready`
 *    (its mirror just loaded, its watch just created), write through A made
 *    right after B's start so it lands while B loads.
 * 4. The CLI itself (set through A, get through B), a few rounds.
 *
 * Every failure prints what the read answered: the value, or its error code
 * and message (for the CLI: stdout, exit code, stderr). A read that fails
 * CONNECTION_LOST (the client gives a link up after a silence of two thirds
 * of its resume window, which a loaded machine can cause: client/link.ts
 * startLease) is read again on a new connection, still after the write's
 * acknowledgement, and counted; any other error, and any read that misses
 * the write, is a violation. Front-ends keep the default lease (10 s): the
 * 4 s of etcd-serve.ts's resume scenarios leaves a silence of 364 ms.
 * Exits non-zero on any violation.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '../../src/client/store.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(here, '../../src/cli/main.js');
const endpoints = process.env.LK_ETCD_ENDPOINTS ?? '';
const ROUNDS = Number(process.env.LK_READS_ROUNDS ?? '1');

interface FrontEnd {
  proc: ChildProcess;
  url: string;
  exited: Promise<unknown>;
}

/** A front-end; `ready`: resolve at its "ready" line (else as soon as it is spawned, the URL a promise). */
async function frontEnd(prefix: string): Promise<FrontEnd> {
  const proc = spawn(process.execPath, [CLI, 'serve', '--backend', `etcd://${endpoints}/?prefix=${prefix}`,
    '--listen', '127.0.0.1:0', '--insecure-loopback', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; process.stderr.write(`[front-end ${proc.pid}] ${d}`); });
  const exited = new Promise((resolve) => proc.on('exit', (c, s) => resolve(c ?? s)));
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', () => { if (out.includes('ready\n')) resolve(); });
    void exited.then((c) => reject(new Error(`front-end exited (${String(c)}) before ready: ${err}`)));
    setTimeout(() => reject(new Error(`front-end not ready in 60 s: ${out} ${err}`)), 60_000).unref();
  });
  const url = /^(tcp:\/\/.*)$/m.exec(out)?.[1];
  if (url === undefined) throw new Error(`no tcp address in ${out}`);
  return { proc, url, exited };
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

const violations: string[] = [];
function check(ok: boolean, what: string): void {
  if (!ok) {
    violations.push(what);
    console.log(`VIOLATION: ${what}`);
  }
}

const describe = (e: unknown): string => (e instanceof Error ? `${(e as { code?: string }).code ?? e.name}: ${e.message}` : String(e));

let relinked = 0;

/** What a get through a fresh client answers, as text: the value, "absent", or the error; read again once after CONNECTION_LOST. */
async function readThrough(url: string, p: string): Promise<string> {
  const got = await readOnce(url, p);
  if (!got.includes('CONNECTION_LOST')) return got;
  relinked++;
  console.log(`note: a read of ${p} through ${url} failed (${got}); read again`);
  return readOnce(url, p);
}

async function readOnce(url: string, p: string): Promise<string> {
  let c;
  try {
    c = await connect(url, { name: 'reader' });
  } catch (e) {
    return `connect failed ${describe(e)}`;
  }
  try {
    const e = await c.get(p);
    return e === undefined ? 'absent' : `value ${Buffer.from(e.value).toString()}`;
  } catch (e) {
    return `error ${describe(e)}`;
  } finally {
    await c.close().catch(() => {});
  }
}

async function writeThrough(url: string, p: string, v: string): Promise<void> {
  const c = await connect(url, { name: 'writer' });
  try {
    await c.set(p, v);
  } finally {
    await c.close();
  }
}

async function main(): Promise<void> {
  const prefix = `/lk-reads-${randomBytes(4).toString('hex')}`;
  const a = await frontEnd(prefix);
  const b = await frontEnd(prefix);
  let fresh: FrontEnd | undefined;
  try {
    // 1. Fresh clients each side.
    const n1 = 15 * ROUNDS;
    for (let i = 0; i < n1; i++) {
      await writeThrough(a.url, `/one/${i}`, `v${i}`);
      const got = await readThrough(b.url, `/one/${i}`);
      check(got === `value v${i}`, `1. round ${i}: a get through B with a fresh client after a set through A (fresh client) acknowledged: ${got}`);
    }
    console.log(`ok: 1. ${n1} rounds of set through A then get through B, fresh clients`);

    // 2. Kept clients, many rounds.
    const ca = await connect(a.url, { name: 'a' });
    const cb = await connect(b.url, { name: 'b' });
    const n2 = 150 * ROUNDS;
    try {
      for (let i = 0; i < n2; i++) {
        await ca.set('/two/k', `v${i}`);
        await ca.set(`/two/d/${i}`, 'x');
        const reads = (): Promise<string[]> => Promise.all([
          cb.get('/two/k').then((x) => (x === undefined ? 'absent' : Buffer.from(x.value).toString()), (x: unknown) => `error ${describe(x)}`),
          cb.exists(`/two/d/${i}`).then(String, (x: unknown) => `error ${describe(x)}`),
          cb.list('/two/d').then((l) => String(l.length), (x: unknown) => `error ${describe(x)}`),
        ]);
        let [e, ex, ls] = await reads();
        if ([e, ex, ls].some((x) => x!.includes('CONNECTION_LOST'))) {
          relinked++;
          console.log(`note: round ${i}: reads through B failed (${e}; ${ex}; ${ls}); read again`);
          await cb.ready();
          [e, ex, ls] = await reads();
        }
        check(e === `v${i}` && ex === 'true' && ls === String(i + 1), `2. round ${i}: after set /two/k=v${i} and create /two/d/${i} through A, B reads ${e}, exists ${ex}, ${ls} children`);
      }
    } finally {
      await ca.close();
      await cb.close();
    }
    console.log(`ok: 2. ${n2} rounds of set through A then get, exists, list through B, kept clients`);

    // 3. A front-end started anew each round; the write lands while it loads; the read comes at once after ready.
    await stop(b);
    const n3 = 6 * ROUNDS;
    for (let i = 0; i < n3; i++) {
      const starting = frontEnd(prefix);
      const written = writeThrough(a.url, `/three/${i}`, `v${i}`);
      fresh = await starting;
      await written;
      const got = await readThrough(fresh.url, `/three/${i}`);
      check(got === `value v${i}`, `3. round ${i}: a get through a front-end just started (write through A during its start): ${got}`);
      await writeThrough(a.url, `/three/${i}`, `w${i}`);
      const again = await readThrough(fresh.url, `/three/${i}`);
      check(again === `value w${i}`, `3. round ${i}: then a set through A after its ready, a get through it: ${again}`);
      await stop(fresh);
      fresh = undefined;
    }
    console.log(`ok: 3. ${n3} front-ends started anew, read at once`);

    // 4. The CLI itself.
    fresh = await frontEnd(prefix);
    const n4 = 4 * ROUNDS;
    for (let i = 0; i < n4; i++) {
      const set = await cli(a.url, ['set', `/cli/greeting${i}`, `hello${i}`]);
      check(set.code === 0, `4. round ${i}: latchkey set through A (exit ${set.code}, stderr ${JSON.stringify(set.err.trim())})`);
      let get = await cli(fresh.url, ['get', `/cli/greeting${i}`]);
      if (get.code !== 0 && get.err.includes('CONNECTION_LOST')) {
        relinked++;
        console.log(`note: round ${i}: latchkey get through B failed (exit ${get.code}, ${get.err.trim()}); read again`);
        get = await cli(fresh.url, ['get', `/cli/greeting${i}`]);
      }
      check(get.code === 0 && get.out.trim() === `hello${i}`, `4. round ${i}: latchkey get through B (got ${JSON.stringify(get.out)}, exit ${get.code}, stderr ${JSON.stringify(get.err.trim())})`);
    }
    console.log(`ok: 4. ${n4} rounds of the CLI's set through A, get through B`);
  } finally {
    if (fresh !== undefined) await stop(fresh);
    await stop(a);
    await stop(b);
  }
}

if (endpoints === '') {
  console.error('usage: LK_ETCD_ENDPOINTS=h:p,… node etcd-reads.js');
  process.exit(2);
}
main().then(() => {
  if (violations.length > 0) {
    console.error(`FAIL etcd-reads: ${violations.length} violations`);
    process.exit(1);
  }
  console.log(`PASS etcd-reads (${relinked} reads read again after CONNECTION_LOST)`);
  process.exit(0);
}, (e: unknown) => {
  console.error(`FAIL etcd-reads: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  process.exit(1);
});

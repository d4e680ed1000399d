/**
 * A private micro-benchmark for profiling the remote request path (not a
 * workload: `npm run bench` does not run it). It starts `latchkey serve` in a
 * child process, optionally under `--cpu-prof`, and drives it from this
 * process (run this one under `--cpu-prof` too to profile the client), next
 * to Redis and a raw Node echo server over the same socket kinds, in
 * alternating rounds:
 *
 *     npx tsc -p tsconfig.test.json
 *     LK_SERVER_PROF=/tmp/prof node --cpu-prof --cpu-prof-dir=/tmp/prof build/bench/micro-remote.js [seq|get|get1|get8|set|set8|set64|lock|all, or several joined by commas] [ms]
 *
 * Prints ops/s per round and the median per row, with the load average
 * before and after.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Store } from '../src/api.js';
import { connect } from '../src/index.js';
import { isMissing } from './peers/peer.js';
import { startRedis } from './peers/redis.js';
import { freePort, HOST, tempDir } from './peers/server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.resolve(here, '..', 'src', 'cli', 'main.js');
const mode = process.argv[2] ?? 'all';
let ms = Number(process.argv[3] ?? 1000);
const rounds = Number(process.env.LK_ROUNDS ?? 3);

function sleep(t: number): Promise<void> {
  return new Promise((r) => setTimeout(r, t));
}

async function startLatchkey(): Promise<{ socket: string; port: number; child: ChildProcess }> {
  const dir = tempDir('micro');
  const socket = path.join(dir, 'lk.sock');
  const port = await freePort();
  const prof = process.env.LK_SERVER_PROF;
  const flags = prof !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [];
  // LK_SERVER_FLAGS: more node flags for the server (e.g. --max-semi-space-size=32)
  if (process.env.LK_SERVER_FLAGS !== undefined) flags.push(...process.env.LK_SERVER_FLAGS.split(' ').filter((f) => f !== ''));
  const child = spawn(process.execPath, [...flags, cli, 'serve', '--data', path.join(dir, 'data'), '--socket', socket, '--listen', `${HOST}:${port}`, '--insecure-loopback'], { stdio: 'ignore' });
  for (let i = 0; i < 200 && !existsSync(socket); i++) await sleep(50);
  await sleep(200);
  return { socket, port, child };
}

/** A raw echo server in a child process (the floor: one write, one read per round trip). */
function startEcho(socket: string, port: number): ChildProcess {
  const src = `const net=require('net');const h=(c)=>c.on('data',(d)=>c.write(d));net.createServer(h).listen(${JSON.stringify(socket)});net.createServer({noDelay:true},h).listen(${port},'127.0.0.1');`;
  return spawn(process.execPath, ['-e', src], { stdio: 'ignore' });
}

function echoClient(addr: { path: string } | { host: string; port: number }): Promise<(b: Buffer) => Promise<void>> {
  return new Promise((resolve) => {
    const s = net.connect(addr as net.NetConnectOpts, () => {
      s.setNoDelay(true);
      let want: (() => void) | undefined;
      s.on('data', () => {
        const w = want;
        want = undefined;
        w?.();
      });
      resolve((b) => new Promise<void>((r) => {
        want = r;
        s.write(b);
      }));
    });
  });
}

/** CPU seconds a process used so far (user + system, or user only: from /proc). */
function cpuOf(pid: number | undefined, userOnly = false): number {
  if (pid === undefined) return 0;
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const parts = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(parts[11]) + (userOnly ? 0 : Number(parts[12]))) / 100;
  } catch {
    return 0;
  }
}

let serverPid: number | undefined;
/**
 * CPU µs per op of the last drive(): [client, server, server user-mode only].
 * User-mode time leaves out the system calls and the kernel's socket work,
 * which contention on a loaded machine inflates most: it moves least between
 * runs when only the JavaScript of the request path changed.
 */
let lastCpu: [number, number, number] = [0, 0, 0];

async function drive(n: number, depth: number, ms: number, op: (c: number, i: number) => Promise<unknown>): Promise<number> {
  const c0 = process.cpuUsage();
  const s0 = cpuOf(serverPid);
  const u0 = cpuOf(serverPid, true);
  let stop = false;
  let count = 0;
  const t0 = performance.now();
  const timer = setTimeout(() => { stop = true; }, ms);
  await Promise.all(Array.from({ length: n * depth }, async (_, j) => {
    for (let i = j; !stop; i += 7919) {
      await op(j % n, i);
      count++;
    }
  }));
  clearTimeout(timer);
  const c1 = process.cpuUsage(c0);
  lastCpu = [(c1.user + c1.system) / count, ((cpuOf(serverPid) - s0) * 1e6) / count, ((cpuOf(serverPid, true) - u0) * 1e6) / count];
  return count / ((performance.now() - t0) / 1000);
}

/** Runs a row once, unmeasured, for a fifth of the round time. */
async function warm(f: () => Promise<number>): Promise<void> {
  const full = ms;
  ms = Math.max(100, Math.floor(full / 5));
  try {
    await f();
  } finally {
    ms = full;
  }
}

const key = (i: number): string => `/r/k${i % 1000}`;
const VALUE = 'v'.repeat(100);

async function main(): Promise<void> {
  const load0 = os.loadavg()[0]!;
  const lk = await startLatchkey();
  const echoDir = tempDir('echo');
  const echoSock = path.join(echoDir, 'e.sock');
  const echoPort = await freePort();
  const echo = startEcho(echoSock, echoPort);
  const redis = await startRedis(true);
  await sleep(300);
  const stores: Record<string, Store[]> = {};
  for (const t of ['unix', 'tcp'] as const) {
    const url = t === 'unix' ? `unix://${lk.socket}` : `tcp://${HOST}:${lk.port}`;
    stores[t] = await Promise.all(Array.from({ length: 64 }, () => connect(url)));
  }
  const s0 = stores.tcp![0]!;
  for (let i = 0; i < 1000; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => s0.set(key(i + j), VALUE)));
  const rc = isMissing(redis) ? [] : Array.from({ length: 64 }, () => redis.client());
  if (rc.length > 0) for (let i = 0; i < 1000; i++) await rc[0]!.set(key(i), VALUE);
  const echoU = await echoClient({ path: echoSock });
  const echoT = await echoClient({ host: HOST, port: echoPort });
  const payload = Buffer.alloc(40, 1);

  const rows: Array<[string, number | undefined, () => Promise<number>]> = [];
  const lkPid = lk.child.pid;
  const echoPid = echo.pid;
  const redisPid = isMissing(redis) ? undefined : redis.pid;
  const want = (m: string): boolean => mode === 'all' || mode.split(',').includes(m);
  if (want('seq')) {
    rows.push(['echo unix seq', echoPid, () => drive(1, 1, ms, () => echoU(payload))]);
    rows.push(['lk unix seq get', lkPid, () => drive(1, 1, ms, (_, i) => stores.unix![0]!.get(key(i)))]);
    rows.push(['echo tcp seq', echoPid, () => drive(1, 1, ms, () => echoT(payload))]);
    rows.push(['lk tcp seq get', lkPid, () => drive(1, 1, ms, (_, i) => s0.get(key(i)))]);
    if (rc.length > 0) rows.push(['redis seq get', redisPid, () => drive(1, 1, ms, (_, i) => rc[0]!.get(key(i)))]);
  }
  for (const c of [1, 8]) {
    if (!want('get') && !want(`get${c}`)) continue;
    rows.push([`lk tcp get ${c}`, lkPid, () => drive(c, 16, ms, (x, i) => stores.tcp![x]!.get(key(i)))]);
    rows.push([`lk unix get ${c}`, lkPid, () => drive(c, 16, ms, (x, i) => stores.unix![x]!.get(key(i)))]);
    if (rc.length > 0) rows.push([`redis get ${c}`, redisPid, () => drive(c, 16, ms, (x, i) => rc[x]!.get(key(i)))]);
  }
  for (const c of [8, 64]) {
    if (!want('set') && !want(`set${c}`)) continue;
    rows.push([`lk tcp set ${c}`, lkPid, () => drive(c, 16, ms, (x, i) => stores.tcp![x]!.set(key(i), VALUE))]);
    if (rc.length > 0) rows.push([`redis set ${c}`, redisPid, () => drive(c, 16, ms, (x, i) => rc[x]!.set(key(i), VALUE))]);
  }
  if (want('lock')) {
    rows.push(['lk tcp lock+release', lkPid, () => drive(1, 1, ms, async (_, i) => {
      const l = await s0.lock(`/locks/l${i % 100}`);
      await l.release();
    })]);
    if (rc.length > 0) {
      rows.push(['redis setnx+release', redisPid, () => drive(1, 1, ms, async (_, i) => {
        const k = `lock:l${i % 100}`;
        await rc[0]!.set(k, 'tok', 'PX', 30000, 'NX');
        await rc[0]!.eval("if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end", 1, k, 'tok');
      })]);
    }
  }
  // Warm every row the same way (JIT, connections) before any round is measured.
  for (const [, , f] of rows) await warm(f);
  const results = new Map<string, number[]>();
  const cpus = new Map<string, Array<[number, number, number]>>();
  for (let r = 0; r < rounds; r++) {
    for (const [name, pid, f] of rows) {
      serverPid = pid;
      const v = await f();
      const a = results.get(name) ?? [];
      a.push(v);
      results.set(name, a);
      if (process.env.LK_STATS !== undefined && name.startsWith('lk')) {
        const st = (await s0.stats()) as unknown as Record<string, unknown>;
        console.log(name, JSON.stringify(Object.fromEntries(Object.entries(st).filter(([k]) => /ync|ommit/.test(k)))));
      }
      const cc = cpus.get(name) ?? [];
      cc.push(lastCpu);
      cpus.set(name, cc);
    }
  }
  const load1 = os.loadavg()[0]!;
  for (const [name, v] of results) {
    const sorted = [...v].sort((a, b) => a - b);
    const med = sorted[Math.floor(sorted.length / 2)]!;
    const cc = cpus.get(name)!;
    const mc = [...cc.map((x) => x[0])].sort((a, b) => a - b)[Math.floor(cc.length / 2)]!;
    const ms_ = [...cc.map((x) => x[1])].sort((a, b) => a - b)[Math.floor(cc.length / 2)]!;
    const mu = [...cc.map((x) => x[2])].sort((a, b) => a - b)[Math.floor(cc.length / 2)]!;
    console.log(`${name.padEnd(24)} median ${Math.round(med).toString().padStart(8)}/s  ${(1e6 / med).toFixed(1).padStart(7)} µs  cpu/op client ${mc.toFixed(1).padStart(6)} µs server ${ms_.toFixed(1).padStart(6)} µs (user ${mu.toFixed(1).padStart(5)})  rounds ${v.map((x) => Math.round(x)).join(' ')}`);
  }
  console.log(`load average ${load0.toFixed(2)} → ${load1.toFixed(2)}`);
  for (const t of Object.values(stores)) for (const s of t) await s.close();
  for (const c of rc) c.disconnect();
  if (!isMissing(redis)) await redis.stop();
  echo.kill('SIGKILL');
  lk.child.kill('SIGTERM');
  await new Promise((r) => lk.child.once('exit', r));
}

await main();

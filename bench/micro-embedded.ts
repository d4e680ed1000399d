/**
 * A private micro-benchmark for profiling the embedded store's hot paths (not
 * a workload: `npm run bench` does not run it). Figures per operation: CPU
 * time of this process (`process.cpuUsage`, user + system, which load on
 * the other core changes little) and wall-clock ops/s, for latchkey on disk
 * (durability 'none'), latchkey in memory and lmdb-js (noSync), in
 * alternating rounds:
 *
 *     npx tsc -p tsconfig.test.json
 *     node [--cpu-prof --cpu-prof-dir=/tmp/prof] build/bench/micro-embedded.js [get|view|set1|setN|txn|all] [ms] [sides]
 *
 * `sides` is a comma list of `disk`, `nob` (disk with bursts off:
 * `open(dir, { bursts: false })`, docs/architecture.md "Bursts"), `mem`,
 * `lmdb` (default disk, mem, lmdb);
 * LK_ROUNDS sets the number of rounds (default 3). Prints each round and the
 * median per row, with the load average before and after.
 */
import os from 'node:os';
import type { Store } from '../src/api.js';
import { open } from '../src/index.js';
import { openDurable } from './peers/latchkey.js';
import { openLmdb } from './peers/lmdb.js';
import { isMissing } from './peers/peer.js';
import { tempDir } from './peers/server.js';

const VALUE = 'value-0123456789';
const KEYS = 10_000;
const mode = process.argv[2] ?? 'all';
const ms = Number(process.argv[3] ?? 1000);
const wanted = new Set((process.argv[4] ?? 'disk,mem,lmdb').split(','));
const rounds = Number(process.env.LK_ROUNDS ?? 3);

interface Side {
  get(k: string): unknown;
  view?(k: string): unknown;
  set(k: string): Promise<unknown>;
  setMany(ks: readonly string[]): Promise<unknown>;
  txn(a: string, b: string): Promise<unknown> | unknown;
}

function latchkey(s: Store & { view(): { get(p: string): unknown; close(): void } }): Side {
  const v = s.view();
  return {
    get: (k) => s.get(k),
    view: (k) => v.get(k),
    set: (k) => s.set(k, VALUE),
    setMany: (ks) => Promise.all(ks.map((k) => s.set(k, VALUE))),
    txn: async (a, b) => {
      const t = s.begin();
      const e = await t.get(a);
      await t.set(b, e!.value);
      await t.commit();
    },
  };
}

const k = (i: number): string => `/bench/k${i % KEYS}`;

/** Runs `fn` `batch` times per turn (awaiting each) for about `ms`; returns [ops/s, CPU µs per op]. */
async function measure(fn: (i: number) => unknown, batch: number, perCall: number): Promise<[number, number]> {
  let i = 0;
  let ops = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    for (let j = 0; j < batch; j++) await fn(i++);
    ops += batch * perCall;
  }
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return [ops / (wall / 1000), (c.user + c.system) / ops];
}

const WINDOW = 1000;
const ops: Record<string, (s: Side) => Promise<[number, number]>> = {
  get: (s) => measure((i) => s.get(k(i)), 1000, 1),
  view: (s) => measure((i) => (s.view === undefined ? s.get(k(i)) : s.view(k(i))), 1000, 1),
  set1: (s) => measure((i) => s.set(k(i)), 100, 1),
  setN: (s) => measure((i) => s.setMany(Array.from({ length: WINDOW }, (_, j) => k(i * WINDOW + j))), 1, WINDOW),
  txn: (s) => measure((i) => s.txn(k(i), k(i + 7)), 100, 1),
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

async function main(): Promise<void> {
  const sides: [string, Side, () => Promise<void>][] = [];
  if (wanted.has('disk')) {
    const s = await openDurable(tempDir('micro-embedded'), { durability: 'none' });
    sides.push(["latchkey disk 'none'", latchkey(s as never), () => s.close()]);
  }
  if (wanted.has('nob')) {
    const s = await openDurable(tempDir('micro-embedded'), { durability: 'none', bursts: false });
    sides.push(["latchkey disk, no bursts", latchkey(s as never), () => s.close()]);
  }
  if (wanted.has('mem')) {
    const s = await open();
    sides.push(['latchkey memory', latchkey(s as never), () => s.close()]);
  }
  if (wanted.has('lmdb')) {
    const l = await openLmdb({ noSync: true });
    if (!isMissing(l)) {
      const db = l.db;
      sides.push(['lmdb-js noSync', {
        get: (key) => db.get(key),
        set: (key) => db.put(key, VALUE),
        setMany: (ks) => Promise.all(ks.map((key) => db.put(key, VALUE))),
        txn: (a, b) => db.transactionSync(() => { void db.put(b, db.get(a) ?? VALUE); }),
      }, () => l.close()]);
    }
  }
  for (const [, s] of sides) for (let i = 0; i < KEYS; i += WINDOW) await s.setMany(Array.from({ length: WINDOW }, (_, j) => k(i + j)));
  const which = mode === 'all' ? Object.keys(ops) : mode.split(',');
  for (const op of which) {
    const run = ops[op];
    if (run === undefined) throw new Error(`unknown mode ${op}`);
    const load0 = os.loadavg()[0]!;
    const got = new Map<string, [number[], number[]]>(sides.map(([n]) => [n, [[], []]]));
    for (let r = -1; r < rounds; r++) {
      for (const [name, s] of sides) {
        const [rate, cpu] = await run(s);
        if (r < 0) continue;
        got.get(name)![0].push(rate);
        got.get(name)![1].push(cpu);
      }
    }
    const load1 = os.loadavg()[0]!;
    console.log(`\n${op} (load ${load0.toFixed(1)} → ${load1.toFixed(1)})`);
    for (const [name, [rates, cpus]] of got) {
      console.log(`  ${name.padEnd(22)} ${Math.round(median(rates)).toLocaleString('en-US').padStart(10)} ops/s  ${median(cpus).toFixed(2).padStart(7)} µs CPU/op   rounds: ${rates.map((x) => Math.round(x)).join(' ')}`);
    }
  }
  for (const [, , close] of sides) await close();
}

await main();

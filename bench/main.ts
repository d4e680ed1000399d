/**
 * `npm run bench [-- WORKLOAD…] [--quick]`: runs named workloads (files in
 * bench/workloads/), each printing its own tables. With no names, runs all;
 * a name ending in `*` runs every workload it begins (`'compare-*'`).
 * `npm run bench:compare` runs the comparisons with peers (compare-*,
 * xenstore and counter) and regenerates their sections of docs/benchmarks.md.
 *
 * Every run records what the workloads print (see util.ts) into
 * bench/results/<date>-<workload>.json, with the machine's facts and its raw
 * fsync latency measured now, then rebuilds docs/benchmarks.md. A workload
 * that throws is recorded with its error and the run goes on; the exit code
 * says something failed. Peer servers are stopped whatever happens.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { measureFsync } from './fsync.js';
import { stopAll } from './peers/server.js';
import { describeWorkload, type ResultFile, writeReport, writeResult } from './report.js';
import { beginRecord, endRecord, machine, note, noteRounds } from './util.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// compiled to build/bench/main.js; the repository root is two levels up
const root = path.resolve(here, '..', '..');
const available = readdirSync(path.join(here, 'workloads')).filter((f) => f.endsWith('.js')).map((f) => f.slice(0, -3)).sort();

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const noRecord = argv.includes('--no-record');
// A workload that hangs must not hang the run (CI runs --quick): past this it is
// recorded as failed and the run moves on. `--timeout=SECONDS` overrides.
const timeoutArg = argv.find((a) => a.startsWith('--timeout='));
const timeoutSec = timeoutArg !== undefined ? Number(timeoutArg.slice('--timeout='.length)) : quick ? 180 : 1800;
// A name ending in * stands for every workload it begins (`'compare-*'`: the comparisons, new ones included).
const names = [...new Set(argv.filter((a) => !a.startsWith('--')).flatMap((n) => (n.endsWith('*') ? available.filter((w) => w.startsWith(n.slice(0, -1))) : [n])))];
const unknown = names.filter((n) => !available.includes(n));
if (unknown.length > 0) {
  console.error(`unknown workload(s): ${unknown.join(', ')}; available: ${available.join(', ')}`);
  process.exit(2);
}

// `--report`: rebuild docs/benchmarks.md from bench/results/ alone (no workload runs).
if (argv.includes('--report')) {
  console.log(`(report: ${path.relative(root, writeReport(root, available))})`);
  process.exit(0);
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: stopping peer servers`);
    void stopAll().finally(() => process.exit(130));
  });
}

const fsync = measureFsync(quick ? 20 : 300);
const fdatasync = measureFsync(quick ? 20 : 300, 3000, 'fdatasync');
const facts = { ...machine(), fsync, fdatasync };
console.log(`latchkey bench ${quick ? '(quick) ' : ''}on ${JSON.stringify(machine())}`);
for (const [call, f] of [['fsync', fsync], ['fdatasync', fdatasync]] as const) {
  console.log(`raw ${call} (4 KiB append) in ${f.dir}: p50 ${f.p50Ms.toFixed(3)} ms, p99 ${f.p99Ms.toFixed(3)} ms, ${Math.round(f.perSec)}/s sequential`);
}

// A client a workload left behind may reject after the workload ended (a lease
// given up under load, a reconnect): record it with the workload, do not end the run.
const strays = new Map<string, number>();
process.on('unhandledRejection', (e) => {
  const text = `unhandled rejection during the run: ${e instanceof Error ? e.message : String(e)}`;
  const seen = strays.get(text) ?? 0;
  strays.set(text, seen + 1);
  if (seen === 0) {
    console.error(text);
    note(text);
  }
});

let failed = 0;
try {
  for (const name of names.length > 0 ? names : available) {
    const date = new Date().toISOString();
    const t0 = performance.now();
    const loadBefore = os.loadavg()[0]!;
    const record = beginRecord();
    let error: string | undefined;
    try {
      const mod = (await import(`./workloads/${name}.js`)) as { default: (o: { quick: boolean; args: readonly string[] }) => Promise<void> };
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeoutSec} s (--timeout=SECONDS to change)`)), timeoutSec * 1000);
      });
      try {
        await Promise.race([mod.default({ quick, args: argv }), limit]);
      } finally {
        clearTimeout(timer);
      }
    } catch (e) {
      failed++;
      error = e instanceof Error ? (e.stack ?? e.message) : String(e);
      console.error(`\nworkload ${name} failed: ${error}`);
    } finally {
      noteRounds();
      endRecord();
      await stopAll();
    }
    if (!noRecord) {
      // `--NAME-only=PART` runs some parts of a long workload: the result goes
      // beside the whole run's, and the report takes each part from the newest run of it
      const only = argv.find((a) => a.startsWith(`--${name}-only=`))?.slice(`--${name}-only=`.length);
      const result: ResultFile = {
        format: 1, workload: name, date, quick, ...(only !== undefined ? { only } : {}),
        command: `npm run bench -- ${name}${only !== undefined ? ` --${name}-only=${only}` : ''}${quick ? ' --quick' : ''}`,
        description: describeWorkload(readFileSync(path.join(here, 'workloads', `${name}.js`), 'utf8')),
        seconds: (performance.now() - t0) / 1000, machine: facts, load1m: [loadBefore, os.loadavg()[0]!], ...record, ...(error !== undefined ? { error: error.split('\n')[0]! } : {}),
      };
      console.log(`(recorded in ${path.relative(root, writeResult(root, result))})`);
    }
  }
  if (!noRecord) console.log(`(report: ${path.relative(root, writeReport(root, available))})`);
} finally {
  await stopAll();
}
// Exit explicitly: a peer client left behind by a failed workload (a lease
// keep-alive timer, a reconnecting socket) must not keep the run alive.
process.exit(failed > 0 ? 1 : 0);

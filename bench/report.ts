/**
 * Results on disk and the report built from them.
 *
 * Each workload run is written to bench/results/<date>-<workload>.json (a
 * quick run to bench/results/quick/, which git ignores: quick figures are
 * for catching rot, not for reading). docs/benchmarks.md and its charts are
 * rebuilt from the newest full result of every workload, so a run of one
 * workload refreshes its section and keeps the others. A long workload
 * marks its parts (bench/util.ts, `part()`); a run of some of them
 * (`--NAME-only=PART`) is written beside the whole run as
 * <date>-<workload>-<PART>.json, and its section shows each part from the
 * newest run that ran it.
 */
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { chartable, renderChart } from './chart.js';
import type { FsyncFacts } from './fsync.js';
import { type Cell, formatCell, fmt, type WorkloadRecord } from './util.js';

export interface ResultFile extends WorkloadRecord {
  format: 1;
  workload: string;
  /** ISO time the workload started. */
  date: string;
  quick: boolean;
  /** Set when the run was limited to some parts (`--NAME-only=PART`): it names the file. */
  only?: string;
  /** The command that reproduces this result. */
  command: string;
  /** What the workload measures: the first paragraph of its file's doc comment. */
  description?: string;
  seconds: number;
  /** 1-minute load average before and after the workload: other work on the machine shows here. */
  load1m?: [number, number];
  machine: Record<string, unknown> & { fsync: FsyncFacts; fdatasync?: FsyncFacts };
  /** Set when the workload threw: what it printed before is kept. */
  error?: string;
}

export function resultPath(root: string, r: Pick<ResultFile, 'date' | 'workload' | 'quick' | 'only'>): string {
  const only = r.only !== undefined ? `-${r.only.replace(/[^A-Za-z0-9_-]/g, '_')}` : '';
  return path.join(root, 'bench', 'results', ...(r.quick ? ['quick'] : []), `${r.date.slice(0, 10)}-${r.workload}${only}.json`);
}

export function writeResult(root: string, r: ResultFile): string {
  const file = resultPath(root, r);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(r, null, 2)}\n`);
  return file;
}

/**
 * The first paragraph of a workload file's leading doc comment, after its
 * "`npm run bench -- NAME`:" lead-in (the convention every workload follows).
 */
export function describeWorkload(source: string): string | undefined {
  const m = /^\s*\/\*\*([\s\S]*?)\*\//.exec(source);
  if (!m) return undefined;
  const lines = m[1]!.split('\n').map((l) => l.replace(/^\s*\*\s?/, '').trimEnd());
  const para: string[] = [];
  for (const l of lines) {
    if (l.trim() === '') {
      if (para.length > 0) break;
      continue;
    }
    para.push(l.trim());
  }
  const text = para.join(' ').replace(/^`[^`]*`:\s*/, '').trim();
  return text === '' ? undefined : text;
}

/** Every full (not quick) result, by workload, newest first; workloads in name order. */
export function resultsByWorkload(root: string): Map<string, ResultFile[]> {
  const dir = path.join(root, 'bench', 'results');
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    return new Map();
  }
  const all = new Map<string, ResultFile[]>();
  for (const f of files) {
    const r = JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as ResultFile;
    if (r.format !== 1 || r.quick) continue;
    const list = all.get(r.workload) ?? [];
    list.push(r);
    all.set(r.workload, list);
  }
  for (const list of all.values()) list.sort((a, b) => b.date.localeCompare(a.date));
  return new Map([...all].sort(([a], [b]) => a.localeCompare(b)));
}

/** The newest full (not quick) result of each workload. */
export function latestResults(root: string): ResultFile[] {
  return [...resultsByWorkload(root).values()].map((list) => list[0]!);
}

/** What one workload's section shows: a run, and the tables and notes taken from it. */
export interface SectionPiece {
  from: ResultFile;
  part?: string;
  tables: ResultFile['tables'];
  notes: string[];
}

/**
 * A workload's section from its runs (newest first): the tables and notes
 * outside any part from the newest run of the whole workload, then each part (in the order the run
 * with the most parts ran them) from the newest run that ran it.
 */
export function sectionPieces(runs: readonly ResultFile[]): SectionPiece[] {
  const newest = runs[0];
  if (newest === undefined) return [];
  const partsOf = (r: ResultFile): string[] => {
    const seen = new Set<string>();
    for (const t of r.tables) if (t.part !== undefined) seen.add(t.part);
    for (const p of Object.keys(r.partNotes ?? {})) seen.add(p);
    return [...seen];
  };
  // one order for parts run at different times: a part first seen in a
  // smaller run goes before the part that followed it there
  const order: string[] = [];
  for (const r of [...runs].sort((a, b) => partsOf(b).length - partsOf(a).length)) {
    const ps = partsOf(r);
    ps.forEach((p, i) => {
      if (order.includes(p)) return;
      const next = ps.slice(i + 1).find((q) => order.includes(q));
      order.splice(next !== undefined ? order.indexOf(next) : order.length, 0, p);
    });
  }
  const pieces: SectionPiece[] = [];
  // outside any part: the newest run of the whole workload (a run of some
  // parts prints nothing of the rest), else the newest run
  const base = runs.find((r) => r.only === undefined) ?? newest;
  const whole = base.tables.filter((t) => t.part === undefined);
  if (whole.length > 0 || base.notes.length > 0) pieces.push({ from: base, tables: whole, notes: base.notes });
  for (const p of order) {
    const from = runs.find((r) => partsOf(r).includes(p))!;
    pieces.push({ from, part: p, tables: from.tables.filter((t) => t.part === p), notes: from.partNotes?.[p] ?? [] });
  }
  return pieces;
}

function mdCell(c: Cell | undefined): string {
  return (c === undefined || c === null ? '' : formatCell(c)).replace(/\|/g, '\\|');
}

function machineLine(m: ResultFile['machine']): string {
  const sync = (call: string, f: FsyncFacts): string => `${call} p50 ${fmt(f.p50Ms, 2)} ms, p99 ${fmt(f.p99Ms, 2)} ms (${fmt(f.perSec)}/s sequential, ${f.samples} samples)`;
  return `${String(m['cores'])} cores (${String(m['cpu'])}), ${String(m['memGiB'])} GiB, ${String(m['platform'])}, Node ${String(m['node'])}; ` +
    `raw sync of a 4 KiB append in ${m.fsync.dir}: ${sync('fsync', m.fsync)}${m.fdatasync ? `; ${sync('fdatasync', m.fdatasync)}` : ''}`;
}

/** Rebuilds docs/benchmarks.md and docs/benchmarks/*.svg; `available` lists every workload that exists. */
export function writeReport(root: string, available: readonly string[]): string {
  const byWorkload = resultsByWorkload(root);
  const results = [...byWorkload.values()].map((list) => list[0]!);
  const chartDir = path.join(root, 'docs', 'benchmarks');
  rmSync(chartDir, { recursive: true, force: true });
  mkdirSync(chartDir, { recursive: true });
  const out: string[] = [];
  out.push('# Benchmarks', '');
  out.push('<!-- Generated by `npm run bench` (bench/report.ts) from bench/results/*.json. Do not edit by hand: rerun the benchmark. -->', '');
  out.push('Every figure below was printed by `npm run bench` and recorded in `bench/results/<date>-<workload>.json` with the machine it ran on.',
    'Peers (etcd, Redis, lmdb-js, oxenstored) are measured in the same run, on the same machine, against the same loopback address, and each',
    'comparison prints the ratio **latchkey / peer** beside the figure: above 1× means latchkey is higher (better for throughput,',
    'worse for latency and time). A peer that is not installed is shown as "not installed" (or "not available" and why), never left out.', '');
  out.push('## How to reproduce', '');
  out.push('```sh', 'npm install', 'sudo npm run bench:setup        # Debian: apt-get install etcd-server redis-server (and xen-utils-4.17 for oxenstored)',
    'npm run bench:compare            # every comparison with peers (compare-*, xenstore, counter), full sizes; rewrites their sections of this page',
    'npm run bench                    # every workload, full sizes, with peers; rewrites this page',
    'npm run bench -- compare-durable # one workload (names below); a name ending in * runs every workload it begins',
    'npm run bench -- bigdata --bigdata-only=big  # one part of a long workload; its section keeps the other parts from their own runs',
    'npm run bench -- --quick         # small sizes, latchkey only (what CI runs)',
    'node dist/cli/main.js bench compare-vm   # the same through the CLI: latchkey bench [WORKLOAD…] [--quick]', '```', '');
  out.push('Run it on a quiet machine: each section states the load average (1 minute) before and after its workload, and each comparison the load',
    'around it; on a 2-core machine a load above 2 means the figures are a lower bound, but the ratios (measured side by side) suffer less.', '');
  out.push('Temporary data directories (latchkey, etcd, Redis, lmdb) go to `$LATCHKEY_BENCH_TMP` (default: the OS temp dir); the fsync',
    'figure in each section is measured in that same directory during the run. Servers listen on 127.0.0.1 only and are stopped when the run ends.', '');
  out.push('## Method: like with like', '');
  out.push('- **Alternating rounds.** Every comparison (bench/util.ts, `alternate`) gives every side the same warm-up round(s), then runs the measured',
    '  rounds in turn — latchkey, peer, latchkey, peer… (ABAB) — so a change in the machine\'s load falls on all sides alike; each figure is the',
    '  median of its side\'s rounds. The rounds, the warm-up and the load average around each comparison are noted under its table.',
    '- **Same transport.** Ratios against etcd and Redis use latchkey\'s server over loopback TCP, as the peers are reached; latchkey over its',
    '  Unix socket (its default) and embedded latchkey are shown beside them as context, never in a ratio against a networked peer.',
    '- **Same durability.** A durable row is durable on every side (latchkey fdatasync, etcd WAL fsync, Redis appendfsync always, lmdb-js synced',
    '  commits); an in-memory row runs latchkey `--memory` against Redis without persistence; embedded latchkey with durability \'none\' (written,',
    '  not synced) against lmdb-js noSync. Where the peers\' usual deployments differ (the lock recipes), the notes say how.',
    '- **Same load on the wire.** The same number of client connections and requests in flight per connection on every side, unless a peer',
    '  cannot (Redis WATCH needs a connection per open transaction); the connection counts are stated with each table.',
    '- **Same start.** Reopen times run from spawning the serving process to the first read answered, for every system, probed every 5 ms with',
    '  a fresh connection, so no client\'s reconnect backoff is timed.',
    '- **The floor.** Sequential remote round trips are measured against a raw Node echo server over the same socket kind in the same run.', '');
  // every setting any workload ran a peer with, per peer (e.g. lmdb-js synced and noSync)
  const peers = new Map<string, { version?: string; settings: string[] }>();
  for (const r of results) {
    for (const [name, p] of Object.entries(r.peers)) {
      const seen = peers.get(name) ?? { settings: [] };
      peers.set(name, { version: p.version ?? seen.version, settings: [...new Set([...seen.settings, ...p.settings])] });
    }
  }
  if (peers.size > 0) {
    out.push('## Peer settings', '');
    for (const [name, p] of [...peers].sort(([a], [b]) => a.localeCompare(b))) {
      out.push(`- **${name}**${p.version !== undefined ? ` ${p.version}` : ''}`);
      for (const s of p.settings) out.push(`  - ${s}`);
    }
    out.push('');
  }
  const measured = new Set(results.map((r) => r.workload));
  const missing = available.filter((w) => !measured.has(w));
  out.push('## Workloads', '');
  for (const r of results) out.push(`- [${r.workload}](#${r.workload}) — ${r.date.slice(0, 10)}`);
  for (const w of missing) out.push(`- ${w} — not measured yet (run \`npm run bench -- ${w}\`)`);
  out.push('');
  for (const r of results) {
    out.push(`## ${r.workload}`, '');
    const pieces = sectionPieces(byWorkload.get(r.workload) ?? [r]);
    const runsShown = [...new Set(pieces.map((p) => p.from))];
    const when = (x: ResultFile): string => {
      const load = x.load1m ? ` Load average (1 min) ${fmt(x.load1m[0], 2)} before, ${fmt(x.load1m[1], 2)} after.` : '';
      return `${x.date.replace('T', ' ').slice(0, 16)} UTC in ${fmt(x.seconds, 1)} s on ${machineLine(x.machine)}.${load}`;
    };
    if (runsShown.length > 1) out.push('Its parts were measured in separate runs; each part says when.', '');
    else out.push(`Measured ${when(r)}`, '');
    if (r.description) out.push(r.description, '');
    out.push(`Reproduce: \`${runsShown.length > 1 ? `npm run bench -- ${r.workload}` : r.command}\``, '');
    if (r.error) out.push(`**The run failed:** ${r.error}`, '');
    let tableNo = 0; // charts are named by the table's place in the section
    for (const piece of pieces) {
      if (piece.part !== undefined && runsShown.length > 1) {
        const x = piece.from;
        out.push(`**Part \`${piece.part}\`** (\`${x.command}\`), measured ${when(x)}${x.error && x !== r ? ` **That run failed:** ${x.error}` : ''}`, '');
      }
      for (const t of piece.tables) {
        tableNo++;
        out.push(`### ${t.title}`, '');
        out.push(`| ${t.header.map(mdCell).join(' | ')} |`);
        out.push(`| ${t.header.map((_, c) => (c === 0 ? '---' : '---:')).join(' | ')} |`);
        for (const row of t.rows) out.push(`| ${t.header.map((_, c) => mdCell(row[c])).join(' | ')} |`);
        out.push('');
        if (chartable(t)) {
          const name = `${r.workload}-${tableNo}.svg`;
          writeFileSync(path.join(chartDir, name), renderChart(t));
          out.push(`![${t.title.replace(/[[\]]/g, '')}](benchmarks/${name})`, '');
        }
      }
      if (piece.notes.length > 0) {
        for (const n of piece.notes) out.push(`- ${n}`);
        out.push('');
      }
    }
  }
  const file = path.join(root, 'docs', 'benchmarks.md');
  writeFileSync(file, `${out.join('\n')}\n`);
  return file;
}

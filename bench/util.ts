/**
 * Small helpers for benchmarks: timing, percentiles, tables, progress.
 * Benchmarks print figures; they assert nothing.
 *
 * Recording: while bench/main.ts runs a workload, every `table()` and `note()`
 * is also kept in the current record (raw numbers, not the printed strings),
 * which main.ts writes to bench/results/ and turns into docs/benchmarks.md.
 * Workloads need not know about it: printing a table is recording it.
 */
import os from 'node:os';

export interface BenchOptions {
  quick: boolean;
  args: readonly string[];
}

export function now(): number {
  return performance.now();
}

/** Runs `fn` repeatedly for about `ms` milliseconds (in batches); returns ops/s. */
export async function rate(fn: () => Promise<unknown> | unknown, ms: number, batch = 1000): Promise<{ ops: number; perSec: number }> {
  const start = now();
  let ops = 0;
  while (now() - start < ms) {
    for (let i = 0; i < batch; i++) await fn();
    ops += batch;
  }
  const secs = (now() - start) / 1000;
  return { ops, perSec: ops / secs };
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return String(n);
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** How a table becomes a chart in docs/benchmarks.md. */
export interface ChartSpec {
  /** Columns plotted as bar series, by header index (default: the first numeric column). */
  columns?: readonly number[];
  /** Axis label, e.g. "ops/s" or "ms". */
  unit?: string;
  /** Log scale, for figures spanning orders of magnitude (latchkey vs a network peer). */
  log?: boolean;
}

export interface TableOptions {
  /** `false`: never chart this table. */
  chart?: ChartSpec | false;
}

export type Cell = string | number;

export interface RecordedTable {
  title: string;
  header: string[];
  rows: Cell[][];
  chart?: ChartSpec | false;
  /** The part of its workload that printed it (see `part()`). */
  part?: string;
}

export interface WorkloadRecord {
  tables: RecordedTable[];
  /** Notes printed outside any part. */
  notes: string[];
  /** Notes printed during a part, by part name. */
  partNotes?: Record<string, string[]>;
  /** Peer name → its version and the settings it ran with (fsync, lease TTLs…). */
  peers: Record<string, { version?: string; settings: string[] }>;
}

let current: WorkloadRecord | undefined;
let currentPart: string | undefined;

/**
 * Marks what follows as one part of a long workload (bigdata's `big`,
 * `small`, `overwrite`…), until the next call; `undefined` ends the part.
 * The report shows each part from the newest run that ran it, so a run of
 * one part (`--bigdata-only=big`) refreshes that part's tables and notes
 * and keeps the others.
 */
export function part(name: string | undefined): void {
  currentPart = name;
}

/** Starts collecting what a workload prints (called by main.ts). */
export function beginRecord(): WorkloadRecord {
  current = { tables: [], notes: [], peers: {} };
  currentPart = undefined;
  rounds.length = 0;
  return current;
}

export function endRecord(): WorkloadRecord | undefined {
  const r = current;
  current = undefined;
  currentPart = undefined;
  return r;
}

export function formatCell(c: Cell): string {
  if (typeof c !== 'number') return c;
  // three significant digits below 1 (a 4 µs handoff is 0.00400 ms, not 0.00)
  if (c !== 0 && Math.abs(c) < 1) return String(Number(c.toPrecision(3)));
  return fmt(c, Math.abs(c) < 10 && c % 1 !== 0 ? 2 : 0);
}

export function table(title: string, header: readonly string[], rows: readonly (readonly Cell[])[], options: TableOptions = {}): void {
  current?.tables.push({
    title, header: [...header], rows: rows.map((r) => [...r]),
    ...(options.chart !== undefined ? { chart: options.chart } : {}),
    ...(currentPart !== undefined ? { part: currentPart } : {}),
  });
  const cells = [header, ...rows.map((r) => r.map(formatCell))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? '').length)));
  const line = (r: readonly Cell[]): string => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]!) : String(c).padStart(widths[i]!))).join('  ');
  console.log(`\n## ${title}\n`);
  console.log(line(cells[0]!));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells.slice(1)) console.log(line(r));
}

/** A line of context printed after the tables and kept with the record. */
export function note(text: string): void {
  if (current !== undefined) {
    if (currentPart === undefined) current.notes.push(text);
    else ((current.partNotes ??= {})[currentPart] ??= []).push(text);
  }
  console.log(text);
}

/** States a peer's version and settings, so the comparison can be checked. */
export function peerInfo(name: string, version: string | undefined, settings: readonly string[]): void {
  if (current) current.peers[name] = { ...(version !== undefined ? { version } : {}), settings: [...settings] };
}

/** latchkey/peer as printed beside a figure: "2.50×", or "—" when either side is missing. */
export function ratio(latchkey: Cell | undefined, peer: Cell | undefined): string {
  if (typeof latchkey !== 'number' || typeof peer !== 'number' || !Number.isFinite(latchkey) || !Number.isFinite(peer) || peer === 0) return '—';
  const r = latchkey / peer;
  // small ratios keep two significant digits (a 7 ms vs 2,750 ms death-to-grant is 0.0026×, not 0.00×)
  return `${r >= 100 ? fmt(r, 0) : r >= 10 ? fmt(r, 1) : r >= 0.01 ? fmt(r, 2) : String(Number(r.toPrecision(2)))}×`;
}

/**
 * A progress bar on stderr for long workloads, drawn only when stderr is a
 * terminal (CI logs and redirected output stay clean). Redraws at most ~10×/s
 * so drawing never costs what it measures.
 */
export function progress(label: string, total: number): { tick(n?: number): void; done(): void } {
  const tty = process.stderr.isTTY === true;
  let count = 0;
  let last = 0;
  const draw = (): void => {
    const width = 30;
    const f = total > 0 ? Math.min(1, count / total) : 1;
    const full = Math.round(f * width);
    process.stderr.write(`\r${label} [${'#'.repeat(full)}${'.'.repeat(width - full)}] ${Math.round(f * 100)}%`);
  };
  return {
    tick(n = 1) {
      count += n;
      if (!tty) return;
      const t = performance.now();
      if (t - last >= 100 || count >= total) {
        last = t;
        draw();
      }
    },
    done() {
      if (tty) process.stderr.write(`\r${' '.repeat(label.length + 40)}\r`);
    },
  };
}

export function machine(): Record<string, unknown> {
  return { cores: os.availableParallelism(), cpu: os.cpus()[0]?.model, node: process.version, platform: `${os.platform()} ${os.release()}`, memGiB: Math.round(os.totalmem() / 2 ** 30) };
}

/** The median of a list (NaN when empty). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** How many alternating rounds a comparison runs, and how many warm-up rounds come first. */
export interface RoundPlan {
  rounds: number;
  warmup: number;
}

/** Full run: 1 warm-up round then 5 measured rounds per side; quick: 1 + 1 (the same shape, small). */
export function roundPlan(o: Pick<BenchOptions, 'quick'>, full: Partial<RoundPlan> = {}): RoundPlan {
  return o.quick ? { rounds: 1, warmup: 1 } : { rounds: full.rounds ?? 5, warmup: full.warmup ?? 1 };
}

/** One side of a comparison: a measurement that returns one figure per call, or why it cannot run. */
export interface Side {
  readonly name: string;
  /** One round's figure (ops/s, ms…); `round` < 0 is a warm-up round (its figure is dropped). */
  readonly run: ((round: number) => Promise<number>) | { readonly missing: string };
}

/** The figures of one side after alternating rounds. */
export interface Alternated {
  /** The median of the measured rounds, or the reason there is none ("not installed", "failed: …"). */
  readonly median: number | string;
  readonly values: readonly number[];
}

/**
 * The one mechanism every compare-* workload uses to measure latchkey and its
 * peers side by side: every side runs the same number of warm-up rounds
 * (interleaved, figures dropped), then the measured rounds alternate A B C,
 * A B C, … (ABAB…), so a change in the machine's load during the run falls
 * on every side alike; the median of each side's rounds is its figure. The
 * 1-minute load average before and after is printed and recorded with `what`.
 * A side whose round throws is reported "failed: …" and takes no further rounds.
 */
export async function alternate(what: string, sides: readonly Side[], plan: RoundPlan): Promise<Map<string, Alternated>> {
  const values = new Map<string, number[]>(sides.map((s) => [s.name, []]));
  const failed = new Map<string, string>();
  const load0 = os.loadavg()[0]!;
  for (let r = -plan.warmup; r < plan.rounds; r++) {
    for (const s of sides) {
      if (typeof s.run !== 'function' || failed.has(s.name)) continue;
      try {
        const v = await s.run(r);
        if (r >= 0) values.get(s.name)!.push(v);
      } catch (e) {
        failed.set(s.name, `failed: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]!.slice(0, 100)}`);
      }
    }
  }
  const load1 = os.loadavg()[0]!;
  rounds.push({ what, ...plan, load1m: [load0, load1] });
  const out = new Map<string, Alternated>();
  for (const s of sides) {
    const vs = values.get(s.name)!;
    const why = typeof s.run === 'function' ? failed.get(s.name) : s.run.missing;
    out.set(s.name, { median: why ?? median(vs), values: vs });
  }
  return out;
}

/** What alternate() ran in the current workload, noted once at its end (see noteRounds). */
const rounds: { what: string; rounds: number; warmup: number; load1m: [number, number] }[] = [];

/**
 * Notes how the workload's comparisons were measured: rounds, warm-up, and
 * the load average around each. main.ts calls it when a workload ends.
 */
export function noteRounds(): void {
  if (rounds.length === 0) return;
  const plans = new Set(rounds.map((r) => `${r.warmup} warm-up round${r.warmup === 1 ? '' : 's'} then ${r.rounds} measured round${r.rounds === 1 ? '' : 's'}`));
  note(`Method: every side runs ${[...plans].join(' / ')}, alternating between the sides (ABAB…); each figure is the median of its side's measured rounds.`);
  note(`Load average (1 min) around each comparison: ${rounds.map((r) => `${r.what} ${r.load1m[0].toFixed(2)} → ${r.load1m[1].toFixed(2)}`).join('; ')} (${os.availableParallelism()} cores).`);
  rounds.length = 0;
}

/** A table cell of an alternated figure: its median, or the reason it has none. */
export function cellOf(a: Alternated | undefined): Cell {
  return a === undefined ? '' : a.median;
}

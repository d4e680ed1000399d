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
}

export interface WorkloadRecord {
  tables: RecordedTable[];
  notes: string[];
  /** Peer name → its version and the settings it ran with (fsync, lease TTLs…). */
  peers: Record<string, { version?: string; settings: string[] }>;
}

let current: WorkloadRecord | undefined;

/** Starts collecting what a workload prints (called by main.ts). */
export function beginRecord(): WorkloadRecord {
  current = { tables: [], notes: [], peers: {} };
  return current;
}

export function endRecord(): WorkloadRecord | undefined {
  const r = current;
  current = undefined;
  return r;
}

export function formatCell(c: Cell): string {
  if (typeof c !== 'number') return c;
  // three significant digits below 1 (a 4 µs handoff is 0.00400 ms, not 0.00)
  if (c !== 0 && Math.abs(c) < 1) return String(Number(c.toPrecision(3)));
  return fmt(c, Math.abs(c) < 10 && c % 1 !== 0 ? 2 : 0);
}

export function table(title: string, header: readonly string[], rows: readonly (readonly Cell[])[], options: TableOptions = {}): void {
  current?.tables.push({ title, header: [...header], rows: rows.map((r) => [...r]), ...(options.chart !== undefined ? { chart: options.chart } : {}) });
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
  current?.notes.push(text);
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

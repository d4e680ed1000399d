/** Small helpers for benchmarks: timing, percentiles, tables. Benchmarks print figures; they assert nothing. */
import os from 'node:os';

export interface BenchOptions {
  quick: boolean;
  args: readonly string[];
}

export function now(): number {
  return performance.now();
}

/** Runs `fn` repeatedly for about `ms` milliseconds (at least `minOps` calls); returns ops/s. */
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

export function table(title: string, header: readonly string[], rows: readonly (readonly (string | number)[])[]): void {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? fmt(c, c < 10 && c % 1 !== 0 ? 2 : 0) : c)))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? '').length)));
  const line = (r: readonly (string | number)[]): string => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]!) : String(c).padStart(widths[i]!))).join('  ');
  console.log(`\n## ${title}\n`);
  console.log(line(cells[0]!));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells.slice(1)) console.log(line(r));
}

export function machine(): Record<string, unknown> {
  return { cores: os.availableParallelism(), cpu: os.cpus()[0]?.model, node: process.version, platform: `${os.platform()} ${os.release()}`, memGiB: Math.round(os.totalmem() / 2 ** 30) };
}

/**
 * What bench/workloads/bigdata.ts and its reader process (bench/bigdata-child.ts)
 * share: the RSS watch, the keys and the values.
 */
import { writeFileSync } from 'node:fs';

export const MiB = 1024 * 1024;

/** Peak RSS over a phase, sampled every 100 ms, with where it was at the peak (heap, external buffers). */
export class RssWatch {
  peak = 0;
  at: NodeJS.MemoryUsage | undefined;
  private readonly t: ReturnType<typeof setInterval>;
  constructor() {
    this.sample();
    this.t = setInterval(() => this.sample(), 100);
  }
  sample(): void {
    const m = process.memoryUsage();
    if (m.rss > this.peak) {
      this.peak = m.rss;
      this.at = m;
    }
  }
  stop(): number {
    clearInterval(this.t);
    this.sample();
    return this.peak / MiB;
  }
  /** "heap H, external E (array buffers A), other O MiB" at the peak. */
  breakdown(): string {
    const m = this.at!;
    const f = (x: number): string => (x / MiB).toFixed(0);
    return `heap ${f(m.heapTotal)} (used ${f(m.heapUsed)}), external ${f(m.external)} (array buffers ${f(m.arrayBuffers)}), rest ${f(m.rss - m.heapTotal - m.external)}`;
  }
}

export function dropCaches(): boolean {
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '1');
    return true;
  } catch {
    return false;
  }
}

/** Value `i` (`size` bytes), written into `into` when given (a buffer the caller reuses: set copies it at once). */
export function block(i: number, size: number, into?: Uint8Array): Uint8Array {
  const b = into ?? new Uint8Array(size);
  const dv = new DataView(b.buffer, b.byteOffset, size);
  for (let o = 0; o + 4 <= size; o += 4096) dv.setUint32(o, i * 2654435761 >>> 0, true);
  return b;
}

export const keyOf = (i: number, perDir: number): string => `/d${String(Math.floor(i / perDir)).padStart(15, '0')}/v${String(i % perDir).padStart(15, '0')}`;

/** Runs `fn(i, worker)` for i in [0, n) with `width` in flight (`worker` in [0, width): which of them runs it). */
export async function pool(n: number, width: number, fn: (i: number, worker: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async (_, w) => {
    for (let i = next++; i < n; i = next++) await fn(i, w);
  }));
}

export function shuffled(n: number, count: number): number[] {
  const out: number[] = [];
  let x = 12345;
  for (let i = 0; i < count; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    out.push(x % n);
  }
  return out;
}

/**
 * This machine's raw fsync latency, measured in every run: the floor under
 * any durable commit (latchkey's, etcd's, Redis's appendfsync always), so
 * the durable figures can be read against it.
 */
import { closeSync, fdatasyncSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { percentile } from './util.js';

export interface FsyncFacts {
  /** Directory measured: where the benchmarks keep their data directories. */
  dir: string;
  samples: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  /** 1 / mean: the rate one sequential writer that fsyncs every write could reach. */
  perSec: number;
}

/** Where workloads and peers put their temporary data directories. */
export function benchTmpDir(): string {
  return process.env['LATCHKEY_BENCH_TMP'] ?? os.tmpdir();
}

/** Appends 4 KiB and fsyncs (or fdatasyncs), `samples` times (bounded by `maxMs`). */
export function measureFsync(samples: number, maxMs = 3000, call: 'fsync' | 'fdatasync' = 'fsync'): FsyncFacts {
  const sync = call === 'fsync' ? fsyncSync : fdatasyncSync;
  const dir = mkdtempSync(path.join(benchTmpDir(), 'latchkey-fsync-'));
  const fd = openSync(path.join(dir, 'probe'), 'w');
  const block = Buffer.alloc(4096, 0x61);
  const times: number[] = [];
  const start = performance.now();
  try {
    while (times.length < samples && performance.now() - start < maxMs) {
      writeSync(fd, block);
      const t0 = performance.now();
      sync(fd);
      times.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
  times.sort((a, b) => a - b);
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  return { dir: benchTmpDir(), samples: times.length, p50Ms: percentile(times, 50), p99Ms: percentile(times, 99), meanMs: mean, perSec: 1000 / mean };
}

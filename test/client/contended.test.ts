/**
 * Contention across processes: N real processes share one data directory
 * (open(dir, { shared: true })) and each increments counters M times, by
 * read-modify-write transactions under transaction()'s default retry policy,
 * by store.add, and by transactions that add. Every process must finish
 * without an error and every increment must land. (The issues this answers:
 * with a retry count as the bound, two of three such processes died with
 * CONFLICT within a second; with a 5 s deadline and backoff alone, one of
 * 16 processes on a loaded CI machine gave up after 15 attempts: no turns,
 * so nothing stopped it starving — util/retry.ts note 5.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { open } from '../../src/index.js';

const WORKER = fileURLToPath(new URL('../fixtures/counter-worker.js', import.meta.url));

interface Figures { runs: number; attempts: number; retries: number; gaveUp: number; turns: number; addRetries: number }

async function run(n: number, m: number, diagnostic: (s: string) => void): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-contended-'));
  try {
    const children = Array.from({ length: n }, () => spawn(process.execPath, [WORKER, dir, String(m)], { stdio: ['pipe', 'pipe', 'inherit'] }));
    const outputs = children.map((c) => {
      let out = '';
      c.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
      const ready = new Promise<void>((resolve, reject) => {
        const check = (): void => { if (out.startsWith('ready\n')) resolve(); };
        c.stdout.on('data', check);
        c.once('exit', (code) => reject(new Error(`worker exited ${code} before ready: ${out}`)));
      });
      const exit = new Promise<{ code: number | null; out: () => string }>((resolve) => c.once('exit', (code) => resolve({ code, out: () => out })));
      return { ready, exit };
    });
    await Promise.all(outputs.map((o) => o.ready));
    for (const c of children) c.stdin.end('go\n'); // all at once: the contention starts together
    const results = await Promise.all(outputs.map((o) => o.exit));
    const figures: Figures[] = [];
    for (const r of results) {
      assert.equal(r.code, 0, `a worker failed: ${r.out()}`);
      figures.push(JSON.parse(r.out().split('\n')[1]!) as Figures);
    }
    const store = await open(dir, { shared: true, idleExitMs: 500 });
    try {
      for (const p of ['/rmw', '/add', '/txadd']) assert.equal((await store.get(p))?.text(), String(n * m), p);
    } finally {
      await store.close();
    }
    for (const f of figures) {
      assert.equal(f.gaveUp, 0);
      assert.equal(f.addRetries, 0, 'transactions that only add never conflict');
      assert.equal(f.runs, 2 * m);
      assert.equal(f.attempts, f.runs + f.retries);
    }
    const sum = (k: keyof Figures): number => figures.reduce((a, f) => a + f[k], 0);
    diagnostic(`${n} processes: ${sum('runs')} transaction() calls, ${sum('retries')} re-runs, max ${Math.max(...figures.map((f) => f.retries))} in one process, ${sum('turns')} turns taken`);
    if (n > 1) assert.ok(figures.some((f) => f.retries > 0), 'the read-modify-write transactions contended');
  } finally {
    await new Promise((r) => setTimeout(r, 1000)); // the on-demand server exits once idle
    rmSync(dir, { recursive: true, force: true });
  }
}

test('contended: 3 processes × 40 increments each way on a shared directory, no error, exact totals', async (t) => {
  await run(3, 40, (s) => t.diagnostic(s));
});

test('contended: 16 processes × 15 increments each way on a shared directory, no error, exact totals', async (t) => {
  await run(16, 15, (s) => t.diagnostic(s));
});

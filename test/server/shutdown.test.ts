/**
 * Graceful shutdown: SIGTERM while a client streams writes. Every write the
 * server read is answered before its `bye`; the ones it never read fail
 * CLOSED (never executed), none fail as a lost connection; the process exits
 * 0; and a restart on the same directory holds every acknowledged write.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '../../src/client/store.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { CLI } from './helpers.js';

function serveIn(dir: string): Promise<{ proc: ReturnType<typeof spawn>; out: string; exited: Promise<number | string> }> {
  const proc = spawn(process.execPath, [CLI, 'serve', '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | string>((resolve) => proc.on('exit', (c, s) => resolve(c ?? s ?? -1)));
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('ready\n')) resolve({ proc, out, exited });
    });
    void exited.then((c) => reject(new Error(`server exited ${c}`)));
  });
}

test('shutdown: SIGTERM answers what was read, refuses the rest cleanly, exits 0, keeps what was acknowledged', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-shutdown-'));
  try {
    const s1 = await serveIn(dir);
    const store = await connect(`unix://${path.join(dir, 'latchkey.sock')}`, { reconnect: false });
    const acked: string[] = [];
    const outcomes = new Map<string, number>();
    const n = 20_000;
    const all: Promise<void>[] = [];
    let signalled = false;
    for (let i = 0; i < n; i++) {
      const key = `/g/${i}`;
      all.push(store.set(key, String(i)).then(() => {
        acked.push(key);
        outcomes.set('ok', (outcomes.get('ok') ?? 0) + 1);
        if (acked.length === 200 && !signalled) {
          signalled = true;
          s1.proc.kill('SIGTERM');
        }
      }, (e: unknown) => {
        const code = LatchkeyError.is(e) ? e.code : String(e);
        outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
      }));
      // A well-behaved pipeliner: at most 1,000 unanswered (the server's in-flight limit is 4,096).
      if (i % 100 === 99) {
        while (i + 1 - acked.length - [...outcomes].reduce((n, [k, v]) => n + (k === 'ok' ? 0 : v), 0) > 1000) await new Promise((r) => setTimeout(r, 1));
      }
    }
    await Promise.all(all);
    if (!signalled) s1.proc.kill('SIGTERM');
    assert.equal(await s1.exited, 0);
    t.diagnostic(`outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`);
    assert.ok(acked.length >= 200);
    for (const k of outcomes.keys()) assert.ok(k === 'ok' || k === 'CLOSED', `unexpected outcome ${k}`);
    await store.close();
    const s2 = await serveIn(dir);
    const again = await connect(`unix://${path.join(dir, 'latchkey.sock')}`);
    for (const k of acked) assert.ok(await again.exists(k), `${k} was acknowledged and must survive`);
    await again.close();
    s2.proc.kill('SIGTERM');
    assert.equal(await s2.exited, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

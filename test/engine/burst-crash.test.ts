/**
 * Bursts under SIGKILL: a real child (test/fixtures/burst-writer.ts) writes
 * waves of plain sets that join bursts and is killed mid-wave. After each
 * kill the directory must hold every acknowledged set, and exactly the
 * commits 1..revision, each one set of its own key at its own revision.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { open } from '../../src/engine/open.js';
import { tempDir } from '../storage/helpers.js';

const writer = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'burst-writer.js');

/** Runs the writer until `lifeMs` after its first acknowledgement, then SIGKILLs it; returns what it printed. */
function life(dir: string, durability: string, lifeMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [writer, dir, durability], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    let armed = false;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      text += d;
      if (!armed && text.includes('\nA ')) {
        armed = true;
        setTimeout(() => child.kill('SIGKILL'), lifeMs);
      }
    });
    // A writer that never acknowledges is a failure, not a hang.
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearTimeout(guard);
      if (signal !== 'SIGKILL' || !armed) reject(new Error(`writer ended by ${signal ?? 'exit'} before acknowledging`));
      else resolve(text.split('\n'));
    });
  });
}

async function check(dir: string, lines: string[]): Promise<{ acked: number; revision: number; bursts: number }> {
  const store = await open(dir);
  try {
    const revision = store.stats().revision as number;
    const names = revision === 0 ? [] : await store.list('/b');
    assert.equal(names.length, revision, 'one key per commit: revisions are contiguous');
    for (let i = 0; i < revision; i++) {
      const e = await store.get(`/b/k${i}`);
      assert.ok(e !== undefined, `k${i} of revision ${i + 1} is present`);
      assert.equal(e.text(), String(i));
      assert.equal(e.stat.modRev, i + 1, `k${i} was written at revision ${i + 1}`);
    }
    let acked = 0;
    let bursts = 0;
    for (const l of lines) {
      const [kind, a, b] = l.split(' ');
      if (kind === 'B') bursts = Math.max(bursts, Number(a));
      if (kind !== 'A') continue;
      acked++;
      assert.equal(Number(a), Number(b) + 1, 'acknowledged at its own revision');
      assert.ok(Number(a) <= revision, `acknowledged revision ${a} survived the kill (store at ${revision})`);
    }
    return { acked, revision, bursts };
  } finally {
    await store.close();
  }
}

for (const durability of ['fsync', 'none']) {
  test(`bursts: SIGKILL mid-burst (durability '${durability}') loses no acknowledged set; revisions stay contiguous`, { timeout: 240_000 }, async () => {
    await using tmp = await tempDir('latchkey-burst-crash-');
    let acked = 0;
    let bursts = 0;
    let last = 0;
    for (let k = 0; k < 6; k++) {
      const lines = await life(tmp.path, durability, 30 + k * 60);
      const r = await check(tmp.path, lines);
      acked += r.acked;
      bursts = Math.max(bursts, r.bursts);
      assert.ok(r.revision >= last, 'the store never went back');
      last = r.revision;
    }
    assert.ok(acked > 0, 'sets were acknowledged');
    assert.ok(bursts > 0, 'sets joined bursts');
  });
}

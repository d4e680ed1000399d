import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { open } from '../../src/engine/open.js';
import { verify } from '../../src/storage/index.js';
import { KEYS, STORE_OPTIONS, decode } from '../fixtures/compaction-writer.js';
import { tempDir } from '../storage/helpers.js';

const writer = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'compaction-writer.js');

interface Run { lines: string[]; }

/** Runs the writer until it has acknowledged `acks` writes past a random number of compaction runs, then SIGKILLs it. */
function runOnce(dir: string, killAfterLines: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [writer, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let buf = '';
    let err = '';
    let killed = false;
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop()!;
      for (const l of parts) {
        if (!killed) lines.push(l);
        if (!killed && lines.length >= killAfterLines) {
          killed = true;
          child.kill('SIGKILL');
        }
      }
    });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve({ lines });
      else reject(new Error(`writer exited ${code}: ${err}`));
    });
  });
}

test('compaction: SIGKILLs during writes and compaction runs lose no acknowledged value and leave every value readable', async () => {
  await using tmp = await tempDir('latchkey-compaction-crash-');
  const latest = new Map<number, number>();
  let duringCompaction = 0;
  let deleted = 0;
  const kills = 10;
  for (let i = 0; i < kills; i++) {
    // Kill points spread over a few hundred lines of output: inside writes, moves and deletions.
    const run = await runOnce(tmp.path, 60 + ((i * 97) % 400));
    for (const l of run.lines) {
      const m = /^A (\d+) (\d+)$/.exec(l);
      if (m) latest.set(Number(m[1]), Math.max(latest.get(Number(m[1])) ?? 0, Number(m[2])));
      const r = /^R end (\d+)$/.exec(l);
      if (r) deleted = Math.max(deleted, Number(r[1]));
    }
    const lastR = run.lines.filter((l) => l.startsWith('R ')).at(-1);
    if (lastR === 'R start') duringCompaction++;
    // Reopen (no compaction) and check every key: an acknowledged value or a later one, intact.
    const store = await open(tmp.path, { ...STORE_OPTIONS, compaction: false });
    for (let k = 0; k < KEYS; k++) {
      const want = latest.get(k);
      const e = await store.get(`/d/${k}`);
      if (want === undefined) continue;
      assert.ok(e !== undefined, `key ${k} (acknowledged seq ${want}) is missing after kill ${i + 1}`);
      const got = decode(e.value);
      assert.ok(got !== undefined && got.key === k, `key ${k} holds damaged bytes after kill ${i + 1}`);
      assert.ok(got.seq >= want, `key ${k} went back from ${want} to ${got.seq} after kill ${i + 1}`);
      latest.set(k, got.seq);
    }
    await store.close();
    const report = await verify(tmp.path);
    assert.equal(report.ok, true, JSON.stringify(report.problems));
  }
  assert.ok(duringCompaction > 0, 'some kills landed inside a compaction run');
  assert.ok(deleted > 0, 'compaction deleted files between kills');
});

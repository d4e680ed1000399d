import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { run, startServer } from './helpers.js';

test('cli: check finds damage offline without changing anything; repair fixes it', async () => {
  const server = await startServer([]);
  const url = `unix://${server.unix}`;
  for (let i = 0; i < 12; i++) await run(['set', `/k/${i}`, `value ${i}`], { env: { LATCHKEY_URL: url } });
  assert.equal(await new Promise((r) => { server.proc.kill('SIGTERM'); void server.exited.then(r); }), 0);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-check-'));
  try {
    cpSync(server.dir, dir, { recursive: true });
    const clean = await run(['check', dir]);
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    assert.match(clean.stdout, /ok: recovers to revision 12/);

    const seg = readdirSync(dir).find((n) => n.startsWith('wal-'))!;
    const file = path.join(dir, seg);
    const bytes = readFileSync(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    writeFileSync(file, bytes);
    const before = readdirSync(dir).sort();

    const bad = await run(['check', dir]);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /DAMAGE .*wal-.* at offset \d+/);
    assert.match(bad.stderr, /CORRUPT/);
    const j = JSON.parse((await run(['check', dir, '--json'])).stdout) as { ok: boolean; problems: unknown[] };
    assert.equal(j.ok, false);
    assert.equal(j.problems.length, 1);
    assert.deepEqual(readdirSync(dir).sort(), before, 'check changes nothing');
    assert.deepEqual(readFileSync(file), bytes);

    const rep = await run(['repair', dir]);
    assert.equal(rep.code, 0, rep.stderr);
    assert.match(rep.stdout, /lost revisions \d+\.\.12/);
    assert.match(rep.stdout, /moved aside/);
    const after = await run(['check', dir]);
    assert.equal(after.code, 0, after.stdout);
    const again = await run(['repair', dir]);
    assert.match(again.stdout, /nothing to repair/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(server.dir, { recursive: true, force: true });
  }
});

test('cli: check of a missing directory exits 3', async () => {
  const r = await run(['check', '/nonexistent/latchkey-data']);
  assert.equal(r.code, 3);
});

test('cli: check reads and checks every referenced value in the value files, naming a damaged one\'s file and offset', async () => {
  const { open } = await import('../../src/index.js');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-check-values-'));
  try {
    const s = await open(dir, { inlineValueBytes: 100 });
    await s.set('/small', 'inline');
    await s.set('/big/a', new Uint8Array(10_000).fill(1));
    await s.set('/big/b', new Uint8Array(20_000).fill(2));
    await s.close();
    const clean = await run(['check', dir]);
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    assert.match(clean.stdout, /1 value file\(s\), \d+ bytes; 2 value\(s\), 30000 bytes read and checked/);
    const val = readdirSync(dir).find((n) => n.endsWith('.val'))!;
    const file = path.join(dir, val);
    const bytes = readFileSync(file);
    // The first value's bytes start after the file header (32) and its entry header (16).
    bytes[48 + 5000]! ^= 0x10;
    writeFileSync(file, bytes);
    const bad = await run(['check', dir]);
    assert.equal(bad.code, 1, bad.stdout);
    assert.match(bad.stdout, new RegExp(`DAMAGE .*${val.replace('.', '\\.')} at offset 48\\b`));
    assert.match(bad.stderr, /CORRUPT/);
    assert.deepEqual(readFileSync(file), bytes, 'check changes nothing');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect } from '../../src/client/store.js';
import { cliServer } from './helpers.js';

describe('cli: file put/get and ls -l of big files', () => {
  let t: Awaited<ReturnType<typeof cliServer>>;
  let dir: string;
  before(async () => {
    t = await cliServer();
    dir = mkdtempSync(path.join(os.tmpdir(), 'lk-cli-bigfile-'));
  });
  after(async () => {
    await t.server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('cli: file put then file get gives the same bytes; no progress when stderr is not a terminal', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 12345);
    const src = path.join(dir, 'in.bin');
    writeFileSync(src, data);
    const put = await t.lk(['file', 'put', '/data/sig', src, '--block-size', '65536']);
    assert.equal(put.code, 0, put.stderr);
    assert.equal(put.stderr, '');
    const got = await t.lk(['file', 'get', '/data/sig']);
    assert.equal(got.code, 0, got.stderr);
    assert.equal(got.stderr, '');
    assert.ok(got.stdoutBytes.equals(data));
    // A smaller file put over it truncates (its blocks are freed).
    const small = randomBytes(70000);
    writeFileSync(src, small);
    assert.equal((await t.lk(['file', 'put', '/data/sig', src])).code, 0);
    assert.ok((await t.lk(['file', 'get', '/data/sig'])).stdoutBytes.equals(small));
    assert.deepEqual((await t.lk(['ls', '/data/sig/b'])).stdout, '0\n1\n');
  });

  test('cli: ls -l shows big files and arrays with size, dtype and shape', async () => {
    const s = await connect(t.url);
    try {
      const a = await s.bigArray('/data/arr', { dtype: 'float32', shape: [0, 4], blockSize: 4096 });
      await a.append(new Float32Array(4 * 10));
      await a.commit();
      await a.close();
    } finally {
      await s.close();
    }
    const long = (await t.lk(['ls', '-l', '/data'])).stdout;
    assert.match(long, /bigarray 160 float32 \[10, 4\]\s+arr\n/);
    assert.match(long, /bigfile 70000\s+sig\n/);
    const j = JSON.parse((await t.lk(['ls', '-l', '/data', '--json'])).stdout) as Array<{ name: string; big?: { kind: string; size: number; dtype?: string; shape?: number[] } }>;
    assert.deepEqual(j.find((e) => e.name === 'arr')!.big, { kind: 'bigarray', size: 160, blockSize: 4096, dtype: 'float32', shape: [10, 4] });
    // file get copies an array's bytes too.
    const got = await t.lk(['file', 'get', '/data/arr']);
    assert.equal(got.stdoutBytes.length, 160);
  });

  test('cli: file errors: a missing big file exits 3, a plain node exits 2, bad usage exits 2', async () => {
    assert.equal((await t.lk(['file', 'get', '/nope'])).code, 3);
    await t.lk(['set', '/plain', 'x']);
    const r = await t.lk(['file', 'get', '/plain']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /INVALID_ARGUMENT/);
    assert.equal((await t.lk(['file', 'put', '/x'])).code, 2);
    assert.equal((await t.lk(['file', 'frob'])).code, 2);
    const missing = await t.lk(['file', 'put', '/x', path.join(dir, 'does-not-exist')]);
    assert.notEqual(missing.code, 0);
    assert.equal((await t.lk(['get', '/plain'])).stdout, 'x');
  });
});

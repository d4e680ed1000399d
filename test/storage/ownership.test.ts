import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { symlink } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LatchkeyError } from '../../src/core/errors.js';
import { openStorage } from '../../src/storage/index.js';
import { removeDir, tempDir } from './helpers.js';

const holderScript = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'storage-holder.js');

function startHolder(dir: string): Promise<{ child: ChildProcess; pid: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [holderScript, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      out += d;
      const m = /ready (\d+)\n/.exec(out);
      if (m) resolve({ child, pid: Number(m[1]) });
    });
    child.on('exit', (code) => reject(new Error(`holder exited early (${code})`)));
  });
}

function lockedBy(pid: number) {
  return (e: unknown): boolean => {
    assert.ok(LatchkeyError.is(e, 'LOCKED'), String(e));
    assert.equal(e.info?.['pid'], pid);
    assert.match(e.message, new RegExp(`process ${pid}\\b`));
    return true;
  };
}

test('ownership: a second open in the same process fails LOCKED naming this pid, and succeeds after close', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const a = await openStorage(dir);
  await assert.rejects(openStorage(dir), lockedBy(process.pid));
  // Another path to the same directory is the same directory.
  const link = dir + '-link';
  await symlink(dir, link);
  await assert.rejects(openStorage(link), lockedBy(process.pid));
  await removeDir(link);
  await a.close();
  const b = await openStorage(dir);
  await b.close();
});

test('ownership: another process holding the directory is named by pid; SIGKILL releases it at once', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const { child, pid } = await startHolder(dir);
  assert.notEqual(pid, process.pid);
  await assert.rejects(openStorage(dir), lockedBy(pid));
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  const s = await openStorage(dir);
  await s.close();
});

test('ownership: this process holding it makes another process fail (exit code, message names our pid)', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir);
  const res = await new Promise<{ code: number | null; err: string }>((resolve) => {
    const child = spawn(process.execPath, [holderScript, dir], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => { err += d; });
    child.on('exit', (code) => resolve({ code, err }));
  });
  assert.notEqual(res.code, 0);
  assert.match(res.err, new RegExp(`already open by process ${process.pid}`));
  await s.close();
});

test('ownership: different directories do not interfere', async () => {
  await using d1 = await tempDir();
  await using d2 = await tempDir();
  const a = await openStorage(d1.path);
  const b = await openStorage(d2.path);
  await a.close();
  await b.close();
});

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

test('ownership: the lock is a file inside the directory, mode 0600, naming the holder; a crash leaves it unlocked (not stale)', async () => {
  const { readFile, stat } = await import('node:fs/promises');
  const dir = (await tempDir()).path;
  try {
    const { child, pid } = await startHolder(dir);
    const lockFile = path.join(dir, 'owner.lock');
    assert.equal((await stat(lockFile)).mode & 0o777, 0o600);
    assert.deepEqual(JSON.parse(await readFile(lockFile, 'utf8')), { pid });
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    // The file is still there, with the dead pid in it: it is the flock, not the file, that says who owns.
    assert.deepEqual(JSON.parse(await readFile(lockFile, 'utf8')), { pid });
    const s = await openStorage(dir);
    assert.deepEqual(JSON.parse(await readFile(lockFile, 'utf8')), { pid: process.pid });
    await s.close();
  } finally {
    await removeDir(dir);
  }
});

test('ownership: a user without write access to the directory cannot hold it (nor block the owner)', async (t) => {
  if (process.getuid?.() !== 0) {
    t.diagnostic('needs root to run a process as another user: checked by mode only');
    return;
  }
  const { chmod } = await import('node:fs/promises');
  const dir = (await tempDir()).path;
  try {
    await chmod(path.dirname(dir), 0o755).catch(() => {});
    await chmod(dir, 0o755); // others may read and search, not write
    const s = await openStorage(dir);
    await s.close();
    // As nobody: the lock file (0600, root's) cannot be opened, so it cannot be locked; nor can the directory take a new one.
    const r = await new Promise<{ code: number | null; err: string }>((resolve) => {
      const child = spawn('flock', ['--exclusive', '--nonblock', path.join(dir, 'owner.lock'), 'sleep', '5'], { uid: 65534, gid: 65534, stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
      child.on('exit', (code) => resolve({ code, err }));
    });
    assert.notEqual(r.code, 0);
    assert.match(r.err, /Permission denied/);
    const again = await openStorage(dir);
    await again.close();
  } finally {
    await removeDir(dir);
  }
});

/**
 * Ownership of a data directory: one engine per directory, across processes.
 *
 * The owner holds an exclusive flock(2) on `DIR/owner.lock`, a file created
 * mode 0600 inside the directory. Why this mechanism (docs/format.md,
 * "Data-directory ownership", has the failure modes):
 *  - Only someone who can open that file can hold the lock: the directory's
 *    owner (write access to create it, the file's owner to open it). The
 *    earlier abstract-namespace socket could be bound first by any local
 *    user in the same network namespace, who then blocked the owner.
 *  - The kernel releases a flock when the last descriptor of its open file
 *    description closes, so when the owner dies, however it dies. Nothing
 *    stale is left to clean up (the file stays; its lock does not).
 *  - flock locks conflict between open file descriptions, so a second open
 *    in the same process fails too.
 *
 * Node has no flock call. The lock is taken by `flock(1)` (util-linux,
 * present on every Linux system that has a shell) run as a child with our
 * descriptor as its fd 3: the lock belongs to the open file description the
 * child shares with us, so it stays held after the child exits, for as long
 * as our descriptor is open. The child costs one process start at open.
 *
 * The holder writes `{"pid":…}` into the file once it holds the lock; a
 * second opener that fails to lock reads it and fails with LOCKED naming
 * that pid.
 */
import { spawn } from 'node:child_process';
import { constants as fsc } from 'node:fs';
import { type FileHandle, open as openFile } from 'node:fs/promises';
import path from 'node:path';
import { LatchkeyError } from '../core/errors.js';
import { ioError } from './format.js';
import type { Fs } from './fs.js';

export const OWNER_FILE = 'owner.lock';
/** flock's exit status when the lock is held elsewhere (its -E option). */
const BUSY = 75;

export interface Ownership {
  /** The lock file. */
  readonly file: string;
  release(): Promise<void>;
}

/** Takes the lock on `fh` without waiting: true when held, false when someone else holds it. */
function tryFlock(fh: FileHandle, file: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    let err = '';
    const child = spawn('flock', ['--exclusive', '--nonblock', '--conflict-exit-code', String(BUSY), '3'], {
      stdio: ['ignore', 'ignore', 'pipe', fh.fd],
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
    child.on('error', (e) => reject(ioError(`running flock(1) to lock ${file} (is util-linux installed?)`, file, e)));
    child.on('exit', (code, signal) => {
      if (code === 0) resolve(true);
      else if (code === BUSY) resolve(false);
      else reject(new LatchkeyError('IO', `flock(1) failed on ${file} (${signal ?? `exit ${code}`}): ${err.trim()}`, { info: { file } }));
    });
  });
}

async function holderPid(fh: FileHandle): Promise<number> {
  // The holder writes its pid right after locking: give it a moment if the file is still empty.
  for (let i = 0; i < 20; i++) {
    const { buffer, bytesRead } = await fh.read(Buffer.alloc(256), 0, 256, 0);
    const text = buffer.subarray(0, bytesRead).toString('utf8');
    const nl = text.indexOf('\n');
    if (nl >= 0) {
      try {
        const v = JSON.parse(text.slice(0, nl)) as { pid?: unknown };
        if (typeof v.pid === 'number') return v.pid;
      } catch {
        return -1;
      }
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  return -1;
}

export async function acquireOwnership(fs: Fs, dir: string): Promise<Ownership> {
  let st;
  try {
    st = await fs.stat(dir);
  } catch (e) {
    throw ioError('opening the data directory', dir, e);
  }
  if (!st.isDirectory()) throw new LatchkeyError('INVALID_ARGUMENT', `${dir} is not a directory`);
  const file = path.join(dir, OWNER_FILE);
  let fh: FileHandle;
  try {
    // O_NOFOLLOW: a symlink planted in the directory must not redirect the lock elsewhere.
    fh = await openFile(file, fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
  } catch (e) {
    throw ioError('opening the data directory\'s lock file', file, e);
  }
  try {
    if (!(await tryFlock(fh, file))) {
      const pid = await holderPid(fh);
      const who = pid >= 0 ? `process ${pid}${pid === process.pid ? ' (this process)' : ''}` : 'another process (it did not say its pid)';
      throw new LatchkeyError('LOCKED', `data directory ${dir} is already open by ${who}`, { info: { dir, pid } });
    }
    await fh.truncate(0);
    await fh.write(JSON.stringify({ pid: process.pid }) + '\n', 0);
  } catch (e) {
    await fh.close();
    throw e;
  }
  let released = false;
  return {
    file,
    release: async () => {
      if (released) return;
      released = true;
      // Closing the last descriptor of the open file description releases the lock.
      await fh.close();
    },
  };
}

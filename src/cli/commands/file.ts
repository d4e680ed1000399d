/**
 * `latchkey file put PATH FILE` and `latchkey file get PATH`: copy a local
 * file into a big file and back (docs/bigfile.md). Progress goes to stderr
 * when it is a terminal, never otherwise.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { BigFileHandle } from '../../api.js';
import { LatchkeyError } from '../../core/errors.js';
import { CLIENT_OPTIONS, CLIENT_OPTIONS_HELP, type Command, EXIT, UsageError, connectFrom, parse, parseCount } from '../command.js';

/** Bytes written between commits: within a handle's default dirty bound (32 MiB). */
const COMMIT_EVERY = 16 * 1024 * 1024;
const READ_CHUNK = 8 * 1024 * 1024;

function human(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  let v = n;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

/** A progress bar on stderr, drawn only when stderr is a terminal. */
function progress(label: string, total: number): { update(done: number): void; end(): void } {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  const draw = (done: number): void => {
    const width = 30;
    const frac = total === 0 ? 1 : done / total;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    process.stderr.write(`\r${label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${human(done)} / ${human(total)}`);
  };
  return {
    update(done) {
      if (!tty) return;
      const now = Date.now();
      if (now - last < 100) return;
      last = now;
      draw(done);
    },
    end() {
      if (!tty) return;
      draw(total);
      process.stderr.write('\n');
    },
  };
}

async function put(flags: { url?: string | undefined; token?: string | undefined }, path: string, file: string, blockSize: number | undefined): Promise<void> {
  const fd = openSync(file, 'r');
  const store = await connectFrom(flags);
  let h: BigFileHandle | undefined;
  try {
    const total = fstatSync(fd).size;
    const f = await store.bigFile(path, blockSize === undefined ? {} : { blockSize });
    h = await f.open({ cacheBytes: 4 * COMMIT_EVERY, maxDirtyBytes: 2 * COMMIT_EVERY });
    const bar = progress(`put ${path}`, total);
    const buf = Buffer.alloc(Math.min(COMMIT_EVERY, Math.max(1, total)));
    let at = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, at);
      if (n === 0) break;
      h.write(at, buf.subarray(0, n));
      at += n;
      await h.commit();
      bar.update(at);
    }
    if (h.size !== at) await h.truncate(at);
    await h.commit();
    bar.end();
  } finally {
    closeSync(fd);
    await h?.close();
    await store.close();
  }
}

async function get(flags: { url?: string | undefined; token?: string | undefined }, path: string): Promise<void> {
  const store = await connectFrom(flags);
  let h: BigFileHandle | undefined;
  try {
    const f = await store.bigFile(path, { create: false }).catch(async (e: unknown) => {
      // A big array's bytes are as good to copy out.
      if (!LatchkeyError.is(e, 'INVALID_ARGUMENT') || !/big array/.test(e.message)) throw e;
      return undefined;
    });
    h = f !== undefined ? await f.open({ cacheBytes: 4 * READ_CHUNK }) : (await store.bigArray(path, { create: false, cacheBytes: 4 * READ_CHUNK })).handle;
    const bar = progress(`get ${path}`, h.size);
    for (let at = 0; at < h.size; at += READ_CHUNK) {
      const chunk = await h.read(at, READ_CHUNK);
      if (!process.stdout.write(chunk)) await new Promise<void>((r) => process.stdout.once('drain', r));
      bar.update(at + chunk.length);
    }
    bar.end();
  } finally {
    await h?.close();
    await store.close();
  }
}

export const fileCmd: Command = {
  help: `usage: latchkey file put PATH FILE [--block-size N]
       latchkey file get PATH > FILE

put: copies a local FILE into the big file at PATH (created when missing,
     truncated to FILE's size), 16 MiB per commit: a reader may see a file
     partly copied until put ends.
get: writes the big file's (or big array's) bytes to stdout, read from one
     snapshot.
A progress bar goes to stderr when stderr is a terminal.
  --block-size N   bytes per block when put creates the file (default 1 MiB)

${CLIENT_OPTIONS_HELP}

examples:
  latchkey file put /datasets/signal ./signal.bin
  latchkey file get /datasets/signal > signal.bin`,
  async run(argv) {
    const { values, positionals } = parse(argv, { ...CLIENT_OPTIONS, 'block-size': { type: 'string' } });
    const [sub, path, file, extra] = positionals;
    if (sub === 'put') {
      if (path === undefined || file === undefined) throw new UsageError('file put needs PATH and FILE');
      if (extra !== undefined) throw new UsageError(`unexpected argument ${extra}`);
      await put(values, path, file, parseCount(values['block-size'], '--block-size'));
      return EXIT.OK;
    }
    if (sub === 'get') {
      if (path === undefined) throw new UsageError('file get needs PATH');
      if (file !== undefined) throw new UsageError(`unexpected argument ${file} (file get writes to stdout)`);
      await get(values, path);
      return EXIT.OK;
    }
    throw new UsageError(sub === undefined ? 'file needs put or get' : `unknown file command ${sub} (put, get)`);
  },
};

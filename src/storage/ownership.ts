/**
 * Ownership of a data directory: one engine per directory, across processes.
 *
 * The owner listens on a Linux abstract-namespace Unix socket named after
 * the directory's identity, `\0latchkey/<st_dev>/<st_ino>` (so every path
 * to the same directory — symlinks, bind mounts, relative paths — maps to
 * the same name). Binding is the lock: the kernel lets one socket hold a
 * name, and frees it the moment the holder's process dies, however it dies.
 * There is no lock file to clean up after a crash.
 *
 * A second opener's bind fails with EADDRINUSE; it then connects to the
 * holder, which answers with a line of JSON `{"pid":…}`, and fails with
 * LatchkeyError LOCKED naming that pid. If the connect is refused the holder
 * died in between: the bind is retried.
 *
 * Limits (docs/format.md): Linux only (abstract sockets); processes in
 * different network namespaces (e.g. two containers sharing a volume) do
 * not see each other's abstract sockets; a directory on a network file
 * system shared by two machines is not protected.
 *
 * This file is the one place the storage layer touches node:net, for a
 * local IPC socket only (eslint.config.js allows it here and nowhere else).
 */
import net from 'node:net';
import { LatchkeyError } from '../core/errors.js';
import { errnoOf, ioError } from './format.js';
import type { Fs } from './fs.js';

export interface Ownership {
  /** The abstract socket name (with its leading NUL). */
  readonly name: string;
  release(): Promise<void>;
}

export function ownershipName(dev: bigint, ino: bigint): string {
  return `\0latchkey/${dev.toString(16)}/${ino.toString(16)}`;
}

function listen(name: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.end(JSON.stringify({ pid: process.pid }) + '\n');
    });
    server.once('error', reject);
    server.listen({ path: name, exclusive: true }, () => {
      server.off('error', reject);
      server.on('error', () => undefined);
      // The socket must not keep a process alive on its own: ownership
      // lasts as long as the store is open or the process lives.
      server.unref();
      resolve(server);
    });
  });
}

/** Asks the current holder who it is. undefined when nobody answers (the holder died meanwhile). */
function askHolder(name: string): Promise<{ pid: number } | undefined> {
  return new Promise((resolve) => {
    const sock = net.connect({ path: name });
    let data = '';
    const done = (v: { pid: number } | undefined): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done({ pid: -1 }), 2000);
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      data += d;
      const nl = data.indexOf('\n');
      if (nl < 0) return;
      try {
        const v = JSON.parse(data.slice(0, nl)) as { pid?: unknown };
        done({ pid: typeof v.pid === 'number' ? v.pid : -1 });
      } catch {
        done({ pid: -1 });
      }
    });
    sock.on('error', (e) => done(errnoOf(e) === 'ECONNREFUSED' ? undefined : { pid: -1 }));
    sock.on('end', () => done(data === '' ? undefined : { pid: -1 }));
  });
}

export async function acquireOwnership(fs: Fs, dir: string): Promise<Ownership> {
  if (process.platform !== 'linux') {
    throw new LatchkeyError('INVALID_ARGUMENT', `data directory ownership needs Linux abstract sockets (platform is ${process.platform})`);
  }
  let st;
  try {
    st = await fs.stat(dir);
  } catch (e) {
    throw ioError('opening the data directory', dir, e);
  }
  if (!st.isDirectory()) throw new LatchkeyError('INVALID_ARGUMENT', `${dir} is not a directory`);
  const name = ownershipName(st.dev, st.ino);
  for (let attempt = 0; ; attempt++) {
    try {
      const server = await listen(name);
      let released = false;
      return {
        name,
        release: async () => {
          if (released) return;
          released = true;
          await new Promise<void>((resolve) => server.close(() => resolve()));
        },
      };
    } catch (e) {
      if (errnoOf(e) !== 'EADDRINUSE') throw ioError('claiming the data directory', dir, e);
    }
    const holder = await askHolder(name);
    if (holder !== undefined) {
      const who = holder.pid >= 0 ? `process ${holder.pid}${holder.pid === process.pid ? ' (this process)' : ''}` : 'another process (it did not say its pid)';
      throw new LatchkeyError('LOCKED', `data directory ${dir} is already open by ${who}`, { info: { dir, pid: holder.pid } });
    }
    if (attempt >= 5) throw new LatchkeyError('LOCKED', `data directory ${dir} is held by a process that does not answer`, { info: { dir } });
  }
}

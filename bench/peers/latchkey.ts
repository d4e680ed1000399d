/**
 * The latchkey side of the comparisons, with the layers that are still
 * landing detected at run time: durable `open(dir)` (issue 3), locks
 * (issue 4), the server and client (issue 5). A missing layer is reported as
 * "pending: …" in the tables, so a comparison never silently loses its
 * latchkey column, and picks the layer up as soon as it is merged.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Store } from '../../src/api.js';
import { LatchkeyError } from '../../src/core/errors.js';
import * as latchkey from '../../src/index.js';
import type { Missing } from './peer.js';
import { freePort, HOST, startServer, tempDir } from './server.js';

export const PENDING_DURABLE = 'pending: durable open(dir), issue 3';
export const PENDING_LOCKS = 'pending: locks, issue 4';
export const PENDING_SERVER = 'pending: server and client, issue 5';

/** `open(dir)` with fsync durability, or the reason it is not there yet. */
export async function openDurable(dir: string, options: Record<string, unknown> = {}): Promise<Store | Missing> {
  try {
    return await (latchkey.open as (dir?: string, o?: Record<string, unknown>) => Promise<Store>)(dir, options);
  } catch (e) {
    if (LatchkeyError.is(e, 'INVALID_ARGUMENT') && /not available/.test(e.message)) return { missing: PENDING_DURABLE };
    throw e;
  }
}

/** Whether `store.lock` works in this build (the engine answered INTERNAL "not implemented" before issue 4). */
export async function locksAvailable(store: Store): Promise<true | Missing> {
  try {
    const l = await store.lock('/bench-probe', { wait: false });
    await l.release();
    return true;
  } catch (e) {
    if (LatchkeyError.is(e, 'INTERNAL') && /not implemented/.test(e.message)) return { missing: PENDING_LOCKS };
    throw e;
  }
}

type Connect = (url: string, options?: Record<string, unknown>) => Promise<Store>;

export interface LatchkeyServerPeer {
  /** `unix:///…` */
  readonly socketUrl: string;
  /** `tcp://127.0.0.1:port` (loopback, no token: `--insecure-loopback`) */
  readonly tcpUrl: string;
  readonly cli: string;
  readonly dataDir: string;
  connect(transport?: 'unix' | 'tcp'): Promise<Store>;
  stop(): Promise<void>;
}

const here = path.dirname(fileURLToPath(import.meta.url));

/** Starts `latchkey serve` (the compiled CLI) in a child process on a temp data dir and Unix socket; clients connect over the socket. */
export async function startLatchkeyServer(): Promise<LatchkeyServerPeer | Missing> {
  const connect = (latchkey as unknown as Record<string, unknown>)['connect'] as Connect | undefined;
  // build/bench/peers → build/src/cli/main.js (npm run bench compiles src with the benchmarks)
  const cli = path.resolve(here, '..', '..', 'src', 'cli', 'main.js');
  if (connect === undefined || !existsSync(cli)) return { missing: PENDING_SERVER };
  const dataDir = tempDir('latchkey');
  const socket = path.join(dataDir, 'latchkey.sock');
  const clients: Store[] = [];
  const port = await freePort();
  // `latchkey serve` with its defaults (durable, fsync) on a Unix socket and on loopback TCP
  const args = [cli, 'serve', '--data', path.join(dataDir, 'data'), '--socket', socket, '--listen', `${HOST}:${port}`, '--insecure-loopback'];
  const server = await startServer('latchkey', process.execPath, args, async () => {
    const s = await connect(`unix://${socket}`, { reconnect: false });
    await s.close();
    return true;
  }, dataDir);
  server.onStop(() => {
    for (const c of clients) void c.close().catch(() => {});
  });
  return {
    socketUrl: `unix://${socket}`,
    tcpUrl: `tcp://${HOST}:${port}`,
    cli,
    dataDir,
    async connect(transport = 'unix') {
      const c = await connect(transport === 'unix' ? `unix://${socket}` : `tcp://${HOST}:${port}`);
      clients.push(c);
      return c;
    },
    stop: () => server.stop(),
  };
}

/**
 * The latchkey side of the comparisons: durable `open(dir)`, the embedded
 * store, and `latchkey serve` with its client. Every layer is in the build:
 * a failure is an error of the benchmark run, never a "pending" cell.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Store } from '../../src/api.js';
import * as latchkey from '../../src/index.js';
import { freePort, HOST, startServer, tempDir } from './server.js';

/** `open(dir)` with fsync durability. */
export async function openDurable(dir: string, options: Record<string, unknown> = {}): Promise<Store> {
  return (latchkey.open as (dir?: string, o?: Record<string, unknown>) => Promise<Store>)(dir, options);
}

type Connect = (url: string, options?: Record<string, unknown>) => Promise<Store>;

export interface LatchkeyServerPeer {
  /** `unix:///…` */
  readonly socketUrl: string;
  /** `tcp://127.0.0.1:port` (loopback, no token: `--insecure-loopback`) */
  readonly tcpUrl: string;
  readonly cli: string;
  readonly dataDir: string;
  /** How the server runs, for the report (durability, TCP lease). */
  readonly settings: string;
  connect(transport?: 'unix' | 'tcp'): Promise<Store>;
  stop(): Promise<void>;
  /** The server process's CPU time so far (user + system, ms; Linux /proc), or undefined where it cannot be read. */
  cpuMs(): number | undefined;
}

const here = path.dirname(fileURLToPath(import.meta.url));

export interface LatchkeyServerOptions {
  /** `--memory`: nothing on disk (default: durable, fsync before every acknowledgement). */
  memory?: boolean;
  /** `--ttl-ms`: the lease of a TCP connection (default the server's, 10 s). */
  ttlMs?: number;
}

/**
 * Starts `latchkey serve` (the compiled CLI) in a child process on a temp
 * data dir, a Unix socket and loopback TCP; clients connect over either.
 */
export async function startLatchkeyServer(o: LatchkeyServerOptions = {}): Promise<LatchkeyServerPeer> {
  const connect = (latchkey as unknown as Record<string, unknown>)['connect'] as Connect | undefined;
  // build/bench/peers → build/src/cli/main.js (npm run bench compiles src with the benchmarks)
  const cli = path.resolve(here, '..', '..', 'src', 'cli', 'main.js');
  if (connect === undefined) throw new Error('latchkey.connect is not exported');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run the benchmark through npm run bench (it compiles src)`);
  const dataDir = tempDir('latchkey');
  const socket = path.join(dataDir, 'latchkey.sock');
  const clients: Store[] = [];
  const port = await freePort();
  // `latchkey serve` with its defaults (durable, fsync) on a Unix socket and on loopback TCP
  const args = [cli, 'serve', '--data', path.join(dataDir, 'data'), '--socket', socket, '--listen', `${HOST}:${port}`, '--insecure-loopback',
    ...(o.memory ? ['--memory'] : []), ...(o.ttlMs !== undefined ? ['--ttl-ms', String(o.ttlMs)] : [])];
  const settings = `latchkey serve ${o.memory ? '--memory (nothing on disk)' : '(durable: fdatasync before every acknowledgement, group commit)'}, Unix socket and 127.0.0.1 TCP, TCP lease ${o.ttlMs !== undefined ? `${o.ttlMs} ms` : '10 s (default)'}`;
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
    settings,
    async connect(transport = 'unix') {
      const c = await connect(transport === 'unix' ? `unix://${socket}` : `tcp://${HOST}:${port}`);
      clients.push(c);
      return c;
    },
    stop: () => server.stop(),
    cpuMs: () => processCpuMs(server.child.pid),
  };
}

/** CPU time (user + system, ms) of a process from /proc/PID/stat (clock ticks of 10 ms); undefined elsewhere. */
export function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) * 10;
  } catch {
    return undefined;
  }
}

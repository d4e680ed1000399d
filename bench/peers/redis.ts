/**
 * Redis peer: Debian's `redis-server` on 127.0.0.1 with a temporary
 * directory, reached through `ioredis`. Durable mode is AOF with
 * `appendfsync always` (Redis fsyncs the AOF before replying, once per event
 * loop turn, so concurrent clients share an fsync); otherwise persistence is
 * off (no AOF, no RDB snapshots).
 *
 * The lock is the common single-instance recipe: SET key token NX PX ttl,
 * polled until it succeeds; release deletes the key only if it still holds
 * our token (a Lua compare-and-delete). Redis has no waiting primitive, so a
 * waiter notices a release only on its next poll.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { findBinary, freePort, HOST, type RunningServer, startServer, tempDir, versionOf } from './server.js';
import { type Missing, NOT_INSTALLED, sleep } from './peer.js';

export interface RedisPeer {
  readonly port: number;
  readonly pid: number | undefined;
  readonly version: string;
  readonly settings: string[];
  /** A new connection; closed by stop(). */
  client(): Redis;
  stop(): Promise<void>;
}

/** `dir`: an existing directory to (re)start on (its AOF is loaded), kept after stop; default a fresh temp dir. */
export async function startRedis(durable: boolean, dir?: string, timeoutMs = 15_000): Promise<RedisPeer | Missing> {
  const bin = findBinary('redis-server');
  if (!bin) return { missing: NOT_INSTALLED };
  const version = versionOf(bin, ['--version'])?.match(/v=(\S+)/)?.[1] ?? 'unknown';
  const port = await freePort();
  const dataDir = dir ?? tempDir('redis');
  const clients: Redis[] = [];
  const client = (): Redis => {
    const r = new Redis({ host: HOST, port, lazyConnect: false, maxRetriesPerRequest: 1, enableAutoPipelining: false });
    r.on('error', () => {}); // errors surface on the commands; a stopped server must not crash the run
    clients.push(r);
    return r;
  };
  const persistence = durable ? ['--appendonly', 'yes', '--appendfsync', 'always', '--save', ''] : ['--appendonly', 'no', '--save', ''];
  let server: RunningServer;
  const probe = client();
  try {
    // ready = answering and done loading its AOF (PING answers -LOADING until then)
    server = await startServer('redis', bin, ['--port', String(port), '--bind', HOST, '--dir', dataDir, '--daemonize', 'no', ...persistence], async () => (await probe.ping()) === 'PONG' && /loading:0/.test(await probe.info('persistence')), dataDir, timeoutMs, dir !== undefined);
  } catch (e) {
    probe.disconnect();
    return { missing: `failed to start: ${e instanceof Error ? e.message : String(e)}`.slice(0, 200) };
  }
  // Check the server runs with the settings the report states.
  const fsyncMode = ((await probe.config('GET', 'appendfsync')) as string[])[1];
  const aof = ((await probe.config('GET', 'appendonly')) as string[])[1];
  server.onStop(() => {
    for (const c of clients) c.disconnect();
  });
  return {
    port,
    pid: server.child.pid,
    version,
    settings: durable
      ? [`durable rows: appendonly ${aof}, appendfsync ${fsyncMode} (the AOF is fsynced before replies are sent), no RDB snapshots; fresh temp dir, 127.0.0.1`]
      : [`non-durable rows: appendonly ${aof}, no RDB snapshots (in memory only); 127.0.0.1`],
    client,
    async stop() {
      await server.stop();
    },
  };
}

/** Poll interval of the SET NX PX lock (redlock's default retry delay is 200 ms; 5 ms favours Redis). */
export const REDIS_LOCK_POLL_MS = 5;

const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

export interface RedisLock {
  release(): Promise<void>;
}

export async function redisLock(r: Redis, key: string, ttlMs: number, pollMs = REDIS_LOCK_POLL_MS, deadlineMs = 60_000): Promise<RedisLock> {
  const token = randomUUID();
  const deadline = performance.now() + deadlineMs;
  while ((await r.set(key, token, 'PX', ttlMs, 'NX')) !== 'OK') {
    if (performance.now() > deadline) throw new Error(`redis lock ${key}: not granted within ${deadlineMs} ms`);
    await sleep(pollMs);
  }
  return {
    async release() {
      await r.eval(RELEASE, 1, key, token);
    },
  };
}

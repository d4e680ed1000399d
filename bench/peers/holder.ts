/**
 * A lock holder in a process of its own, for death-to-grant: it takes the
 * lock, prints "held", and then keeps its session alive (etcd lease
 * keep-alives, Redis PEXPIRE refreshes, a latchkey connection) until the
 * benchmark SIGKILLs it. Nothing here releases the lock: the point is what
 * the system does when the holder dies without a word.
 *
 *   node holder.js etcd URL LOCK TTL_SECONDS
 *   node holder.js redis PORT KEY TTL_MS
 *   node holder.js latchkey SOCKET_URL PATH
 */
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import type { Store } from '../../src/api.js';
import * as latchkey from '../../src/index.js';
import { EtcdSession, etcdLock } from './etcd.js';
import { redisLock } from './redis.js';
import { HOST } from './server.js';

const [kind, addr, name, ttl] = process.argv.slice(2);
if (kind === undefined || addr === undefined || name === undefined) {
  console.error('usage: holder.js etcd|redis|latchkey ADDRESS NAME [TTL]');
  process.exit(2);
}
// Never outlive the benchmark: a holder it forgot to kill goes by itself.
setTimeout(() => process.exit(3), 120_000).unref();

if (kind === 'etcd') {
  const client = new Etcd3({ hosts: addr });
  const s = await EtcdSession.open(client, Number(ttl));
  await etcdLock(s, name);
} else if (kind === 'redis') {
  const r = new Redis({ host: HOST, port: Number(addr) });
  const ttlMs = Number(ttl);
  const lock = await redisLock(r, name, ttlMs);
  void lock;
  // The usual way to hold a Redis lock longer than its TTL: extend it while alive.
  setInterval(() => void r.pexpire(name, ttlMs), Math.max(1, Math.floor(ttlMs / 3)));
} else if (kind === 'latchkey') {
  const connect = (latchkey as unknown as Record<string, unknown>)['connect'] as (url: string) => Promise<Store>;
  const store = await connect(addr);
  await store.lock(name);
} else {
  console.error(`unknown kind ${kind}`);
  process.exit(2);
}
process.stdout.write('held\n');
setInterval(() => {}, 1 << 30);

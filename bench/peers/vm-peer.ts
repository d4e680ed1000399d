/**
 * The 300 parallel VM start/shutdowns (bench/vm-workload.ts) against etcd
 * and Redis, step for step, with the same retry-on-conflict loop.
 *
 * Both peers have a flat key space, so the hierarchy is modelled the way one
 * would on them: one key per node path; a directory whose existence is
 * tested (`/vm/uuid-d`) is a key of its own; a recursive delete removes the
 * key and every key under `path/` (etcd: the keys listed by a range read,
 * since a Txn may not put a key that one of its delete ranges covers; Redis:
 * a Lua script over a sorted-set index of all paths, atomic inside EXEC).
 * Only a VM's own steps write under its paths, so neither needs to guard
 * its subtree listing against concurrent inserts.
 * Reads are validated at commit: etcd compares each read key's mod_revision
 * (0 when absent) in the transaction; Redis WATCHes each read key.
 */
import type { Etcd3 } from 'etcd3';
import type { Redis } from 'ioredis';

export interface PeerTx {
  get(key: string): Promise<string | undefined>;
  exists(key: string): Promise<boolean>;
  set(key: string, value: string): void;
  deleteTree(key: string): Promise<void>;
  /** false: a read changed since it was made (conflict), nothing was written. */
  commit(): Promise<boolean>;
}

export interface PeerKv {
  begin(): Promise<PeerTx>;
  set(key: string, value: string): Promise<void>;
}

export interface PeerVmResult {
  seconds: number;
  transactions: number;
  retries: number;
}

const CHILD_DIRS = ['cpu', 'memory', 'device', 'error', 'drivers', 'control', 'attr', 'data', 'messages', 'vm-data'];

export async function peerVmWorkload(kv: PeerKv, vms = 300, onVmDone?: () => void): Promise<PeerVmResult> {
  let transactions = 0;
  let retries = 0;
  await kv.set('/local/domain/0/vm', '/vm/uuid-dom0');

  async function txn(fn: (tx: PeerTx) => Promise<void>): Promise<void> {
    for (let attempt = 0; attempt < 1000; attempt++) {
      const tx = await kv.begin();
      await fn(tx);
      if (await tx.commit()) {
        transactions++;
        return;
      }
      retries++;
    }
    throw new Error('VM workload: 1,000 conflicts in a row');
  }

  async function vm(d: number): Promise<void> {
    const D = `/local/domain/${d}`;
    const uuid = `uuid-${d}`;
    await txn(async (tx) => {
      await tx.deleteTree(D);
      for (const c of CHILD_DIRS) tx.set(`${D}/${c}`, '');
      tx.set(`${D}/name`, `vm-${d}`);
      tx.set(`${D}/vm`, `/vm/${uuid}`);
      tx.set(`${D}/vss`, `/vss/${uuid}`);
      if (!(await tx.exists(`/vm/${uuid}`))) {
        tx.set(`/vm/${uuid}`, '');
        tx.set(`/vm/${uuid}/uuid`, uuid);
        tx.set(`/vm/${uuid}/name`, `vm-${d}`);
        tx.set(`/vm/${uuid}/domains/${d}`, D);
      }
      tx.set(`/vss/${uuid}`, '');
    });
    for (let i = 0; i < 10; i++) await kv.set(`${D}/data/key${i}`, `value-${i}`);
    for (let n = 0; n < 3; n++) {
      await txn(async (tx) => {
        await tx.get('/local/domain/0/vm');
        const front = `${D}/device/vbd/${n}`;
        const back = `/local/domain/0/backend/vbd/${d}/${n}`;
        tx.set(`${front}/backend`, back);
        tx.set(`${front}/state`, '1');
        tx.set(`${back}/frontend`, front);
        tx.set(`${back}/state`, '1');
      });
    }
    await txn(async (tx) => {
      tx.set(`${D}/control/shutdown`, 'halt');
    });
    await txn(async (tx) => {
      await tx.deleteTree(`/vm/${uuid}/domains/${d}`);
      await tx.deleteTree(`/vm/${uuid}`);
      await tx.deleteTree(`/vss/${uuid}`);
      await tx.deleteTree(D);
      await tx.deleteTree(`/local/domain/0/backend/vbd/${d}`);
    });
    onVmDone?.();
  }

  const t0 = performance.now();
  await Promise.all(Array.from({ length: vms }, (_, d) => vm(d + 1)));
  return { seconds: (performance.now() - t0) / 1000, transactions, retries };
}

/** etcd: reads record mod_revision; commit is one Txn comparing them, then the final put or delete of each key. */
export function etcdKv(clients: readonly Etcd3[]): PeerKv {
  let next = 0;
  const pick = (): Etcd3 => clients[next++ % clients.length]!;
  return {
    async set(key, value) {
      await pick().put(key).value(value).exec();
    },
    async begin() {
      const c = pick();
      const reads = new Map<string, string>();
      // the final effect per key, in the order first touched; undefined = delete
      const writes = new Map<string, string | undefined>();
      const read = async (key: string): Promise<string | undefined> => {
        if (writes.has(key)) return writes.get(key);
        const r = await c.get(key).exec();
        const kv = r.kvs[0];
        reads.set(key, kv ? String(kv.mod_revision) : '0');
        return kv?.value.toString();
      };
      return {
        get: read,
        exists: async (key) => (await read(key)) !== undefined,
        set(key, value) {
          writes.set(key, value);
        },
        async deleteTree(key) {
          // [key/, key0) is everything under key/ ('0' follows '/')
          const under = await c.getAll().inRange({ start: `${key}/`, end: `${key}0` }).keys();
          for (const k of [key, ...under]) writes.set(k, undefined);
          for (const k of writes.keys()) if (k.startsWith(`${key}/`)) writes.set(k, undefined);
        },
        async commit() {
          const success = [...writes].map(([key, value]) => (value === undefined
            ? { request_delete_range: { key: Buffer.from(key) } }
            : { request_put: { key: Buffer.from(key), value: Buffer.from(value) } }));
          const compare = [...reads].map(([key, rev]) => ({ key: Buffer.from(key), target: 'Mod' as const, result: 'Equal' as const, mod_revision: rev }));
          const res = await c.kv.txn({ compare, success, failure: [] });
          return res.succeeded;
        },
      };
    },
  };
}

// Deletes KEYS[1] and every path under KEYS[1]/ listed in the index sorted set KEYS[2].
const DELTREE = `
local under = redis.call('ZRANGEBYLEX', KEYS[2], '[' .. KEYS[1] .. '/', '(' .. KEYS[1] .. '0')
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], KEYS[1])
for i = 1, #under, 500 do
  local part = {unpack(under, i, math.min(i + 499, #under))}
  redis.call('DEL', unpack(part))
  redis.call('ZREM', KEYS[2], unpack(part))
end
return #under`;

const INDEX = 'latchkey-bench:paths';

/**
 * Redis: WATCH each read key on a pooled connection, then MULTI … EXEC; a nil
 * EXEC is a conflict. The first connection is kept for the plain writes
 * outside transactions (a MULTI of theirs on a connection another
 * transaction has WATCHed would end that transaction's WATCH); the others
 * are the transactions' pool.
 */
export function redisKv(pool: readonly Redis[]): PeerKv {
  if (pool.length < 2) throw new Error('redisKv needs at least 2 connections (1 for plain writes, the rest for transactions)');
  const free = pool.slice(1);
  const waiting: ((r: Redis) => void)[] = [];
  const take = (): Promise<Redis> => {
    const r = free.pop();
    return r ? Promise.resolve(r) : new Promise((resolve) => waiting.push(resolve));
  };
  const give = (r: Redis): void => {
    const w = waiting.shift();
    if (w) w(r);
    else free.push(r);
  };
  const shared = pool[0]!;
  return {
    async set(key, value) {
      await shared.multi().set(key, value).zadd(INDEX, 0, key).exec();
    },
    async begin() {
      const r = await take();
      const writes: ((m: ReturnType<Redis['multi']>) => void)[] = [];
      let done = false;
      const finish = (): void => {
        if (!done) {
          done = true;
          give(r);
        }
      };
      return {
        async get(key) {
          await r.watch(key);
          return (await r.get(key)) ?? undefined;
        },
        async exists(key) {
          await r.watch(key);
          return (await r.exists(key)) === 1;
        },
        set(key, value) {
          writes.push((m) => m.set(key, value).zadd(INDEX, 0, key));
        },
        async deleteTree(key) {
          writes.push((m) => m.eval(DELTREE, 2, key, INDEX));
        },
        async commit() {
          try {
            const m = r.multi();
            for (const w of writes) w(m);
            const res = await m.exec();
            return res !== null;
          } finally {
            finish();
          }
        },
      };
    },
  };
}

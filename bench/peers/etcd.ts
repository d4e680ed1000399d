/**
 * etcd peer: Debian's `etcd` binary (package etcd-server), one member on
 * 127.0.0.1 with a temporary data directory and its defaults for durability
 * (the WAL is fsynced before every commit is acknowledged), reached through
 * the `etcd3` npm client (gRPC over HTTP/2).
 *
 * The waiting lock is etcd's own concurrency recipe (clientv3/concurrency
 * Mutex), written here against the plain KV and watch API because etcd3's
 * Lock class is a try-lock: a session lease; a key `<lock>/<lease id>` created
 * with that lease; the holder is the key with the lowest create revision;
 * each waiter watches only its predecessor's key for deletion (no herd).
 */
import { Etcd3, EtcdLockFailedError, type Lease, type Namespace, STMConflictError } from 'etcd3';
import type { PeerKv } from './vm-peer.js';
import { findBinary, freePort, HOST, type RunningServer, startServer, tempDir, versionOf } from './server.js';
import { type Missing, NOT_INSTALLED } from './peer.js';

export interface EtcdPeer {
  readonly url: string;
  readonly pid: number | undefined;
  readonly version: string;
  readonly settings: string[];
  /** A new client (its own HTTP/2 connection); closed by stop(). */
  client(): Etcd3;
  stop(): Promise<void>;
}

/** `dir`: an existing data directory to (re)start on, kept after stop; default a fresh temp dir. */
export async function startEtcd(dir?: string, timeoutMs = 15_000): Promise<EtcdPeer | Missing> {
  const bin = findBinary('etcd');
  if (!bin) return { missing: NOT_INSTALLED };
  const version = versionOf(bin, ['--version'])?.replace(/^etcd Version:\s*/, '') ?? 'unknown';
  const [port, peerPort] = [await freePort(), await freePort()];
  const dataDir = dir ?? tempDir('etcd');
  const url = `http://${HOST}:${port}`;
  const peerUrl = `http://${HOST}:${peerPort}`;
  const probe = new Etcd3({ hosts: url, dialTimeout: 1000 });
  const clients: Etcd3[] = [probe];
  let server: RunningServer;
  try {
    server = await startServer('etcd', bin, [
      '--name', 'bench', '--data-dir', dataDir,
      '--listen-client-urls', url, '--advertise-client-urls', url,
      '--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', `bench=${peerUrl}`, '--initial-cluster-state', 'new',
      '--logger', 'zap', '--log-level', 'error',
    ], async () => {
      await probe.get('bench-probe').string();
      return true;
    }, dataDir, timeoutMs, dir !== undefined);
  } catch (e) {
    probe.close();
    return { missing: `failed to start: ${e instanceof Error ? e.message : String(e)}`.slice(0, 200) };
  }
  server.onStop(() => {
    for (const c of clients) c.close();
  });
  return {
    url,
    pid: server.child.pid,
    version,
    settings: [
      'one member on 127.0.0.1, fresh temp data dir per workload, Debian package defaults',
      'durability: etcd fsyncs its WAL before acknowledging each commit (default; --unsafe-no-fsync not set); concurrent puts share fsyncs through raft batching',
      'client: etcd3 npm (gRPC over HTTP/2; each etcd3 client is one connection); the connection count is stated with each table',
    ],
    client() {
      const c = new Etcd3({ hosts: url });
      clients.push(c);
      return c;
    },
    async stop() {
      await server.stop();
    },
  };
}

/** A concurrency session: one lease, kept alive by the client; its keys vanish when it dies or lapses. */
export class EtcdSession {
  private constructor(readonly client: Etcd3, readonly lease: Lease, readonly id: string, readonly ttlSeconds: number) {}

  static async open(client: Etcd3, ttlSeconds: number): Promise<EtcdSession> {
    const lease = client.lease(ttlSeconds);
    const id = await lease.grant();
    return new EtcdSession(client, lease, id, ttlSeconds);
  }

  async close(): Promise<void> {
    await this.lease.revoke().catch(() => {});
  }
}

export interface EtcdLock {
  readonly key: string;
  release(): Promise<void>;
}

/**
 * Waits for `key` to be deleted, watching from just after the revision it was
 * seen at (so a delete between the read and the watch is not missed).
 * `onWatching` runs once the watch is registered with the server.
 */
export function waitDeleted(client: Namespace, key: string, afterRev: string, onWatching?: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    void client.watch().key(key).startRevision(String(BigInt(afterRev) + 1n)).create().then((w) => {
      onWatching?.();
      w.on('delete', () => {
        void w.cancel();
        resolve();
      });
      w.on('error', (e) => {
        void w.cancel();
        reject(e);
      });
    }, reject);
  });
}

/** etcd's Mutex recipe: key under `name/` with the session lease; wait for each lower create revision to go. */
export async function etcdLock(s: EtcdSession, name: string): Promise<EtcdLock> {
  const c = s.client;
  const key = `${name}/${s.id}`;
  // Create the key unless this session already has it (then reuse its create revision).
  const res = await c.if(key, 'Create', '==', 0).then(c.put(key).value('').lease(s.id)).else(c.get(key)).commit();
  const myRev = res.succeeded ? BigInt(res.header.revision) : BigInt(res.responses[0]!.response_range.kvs[0]!.create_revision);
  for (;;) {
    const pred = await c.getAll().prefix(`${name}/`).sort('Create', 'Descend').limit(1).maxCreateRevision(String(myRev - 1n)).exec();
    const kv = pred.kvs[0];
    if (!kv) break;
    await waitDeleted(c, kv.key.toString(), pred.header.revision);
  }
  return {
    key,
    async release() {
      await c.delete().key(key);
    },
  };
}

/**
 * The etcd3 client's own `Lock` (a try-lock: a lease of its own per attempt,
 * one Txn creating the key if absent; EtcdLockFailedError when it is held),
 * made to wait the way its documentation suggests: on failure, watch the key
 * from the revision it was seen at until it is deleted, then try again.
 * Every waiter wakes on each release and races (a herd, no FIFO order).
 */
export async function etcd3Lock(ns: Namespace, key: string, ttlSeconds = 10): Promise<EtcdLock> {
  for (;;) {
    const lock = ns.lock(key).ttl(ttlSeconds);
    try {
      await lock.acquire();
      return { key, release: () => lock.release() };
    } catch (e) {
      if (!(e instanceof EtcdLockFailedError)) throw e;
    }
    const seen = await ns.get(key).exec();
    if (seen.kvs.length === 0) continue; // released between the try and the read
    await waitDeleted(ns, key, seen.header.revision);
  }
}

/**
 * The 300-VM workload's transactions (bench/peers/vm-peer.ts PeerKv) as
 * etcd3's software transactional memory (`client.stm()`, isolation
 * SerializableSnapshot, its default): each transaction is one `transact()`
 * with `retries: 0`, so a conflict comes back to the workload's loop, which
 * counts it and runs the whole transaction again — what `transact()` itself
 * does with retries > 0, now counted. STM reads cannot be ranges, so a
 * recursive delete lists the keys under the path outside the transaction
 * (as the plain-Txn peer does) and deletes each in it.
 */
export function stmKv(ns: Namespace): PeerKv {
  return {
    async set(key, value) {
      await ns.put(key).value(value).exec();
    },
    async begin() {
      const stm = ns.stm({ retries: 0 });
      const pending: Promise<unknown>[] = [];
      let go!: () => void;
      const gate = new Promise<void>((r) => (go = r));
      // transact() makes its transaction and calls this function at once; it commits when the gate opens.
      const done = stm.transact(() => gate);
      done.catch(() => {});
      return {
        async get(key) {
          return (await stm.get(key).string()) ?? undefined;
        },
        async exists(key) {
          return (await stm.get(key).string()) !== null;
        },
        set(key, value) {
          pending.push(stm.put(key).value(value).exec());
        },
        async deleteTree(key) {
          const under = await ns.getAll().prefix(`${key}/`).keys();
          for (const k of [key, ...under]) pending.push(stm.delete().key(k).exec());
        },
        async commit() {
          await Promise.all(pending);
          go();
          try {
            await done;
            return true;
          } catch (e) {
            if (e instanceof STMConflictError) return false;
            throw e;
          }
        },
      };
    },
  };
}

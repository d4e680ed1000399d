/**
 * ObjectDB: the object database over one Store (embedded or connect()ed):
 * a pool of connections for `db.transaction`, explicit `db.connect()`, and
 * `pack`.
 *
 * Pack (mark and sweep, writers never stopped): one latchkey transaction
 * reads `tid` (so any object commit before it commits makes it CONFLICT and
 * start over), walks the graph from the root at its snapshot, lists every
 * stored object and deletes the ones it did not reach. A writer that links
 * an object the pack is deleting either committed first (the pack conflicts
 * on `tid` and starts over, and then sees the link) or commits after (its
 * commit `check`s that newly referenced objects exist, so it conflicts and
 * re-runs against the packed graph). Writers never wait for a pack and never
 * conflict because of one unless they race it on the same garbage.
 */
import type { Store, TransactionOptions } from '../api.js';
import { LatchkeyError, invalidArgument } from '../core/errors.js';
import { backoffMs, sleep } from '../util/retry.js';
import { unpackRecord } from './codec.js';
import { Connection, type ConnectionStats, type Layout } from './connection.js';
import type { PMap } from './pmap.js';

export interface ObjectDBOptions {
  /** Where the objects live in the store (default `/objects`). */
  prefix?: string;
  /** Loaded objects each connection keeps before evicting to ghosts (default 10,000). */
  cacheSize?: number;
}

export interface PackResult {
  /** Objects stored before the pack, objects reachable, objects removed. */
  readonly stored: number;
  readonly reachable: number;
  readonly removed: number;
  /** Pack transactions run (more than 1 when writers committed meanwhile). */
  readonly attempts: number;
  readonly revision: number;
}

export type ObjectDBStats = ConnectionStats & { connections: number };

export class ObjectDB implements AsyncDisposable {
  private readonly layout: Layout;
  private readonly idle: Connection[] = [];
  private readonly all = new Set<Connection>();
  private readonly retired: ConnectionStats[] = [];
  private closed = false;

  private constructor(store: Store, prefix: string, readonly cacheSize: number) {
    this.layout = { store, prefix, objDir: `${prefix}/o/`, tidPath: `${prefix}/tid`, anchorPath: `${prefix}/anchor` };
  }

  static async open(store: Store, options: ObjectDBOptions = {}): Promise<ObjectDB> {
    const prefix = options.prefix ?? '/objects';
    if (typeof prefix !== 'string' || !prefix.startsWith('/') || prefix.endsWith('/') || prefix.includes('//')) {
      throw invalidArgument(`ObjectDB.open: prefix must be an absolute path without a trailing slash, got ${JSON.stringify(prefix)}`);
    }
    const cacheSize = options.cacheSize ?? 10_000;
    if (!Number.isSafeInteger(cacheSize) || cacheSize < 1) throw invalidArgument('ObjectDB.open: cacheSize must be a positive integer');
    await store.exists(prefix); // the store answers (fails CLOSED now rather than at the first transaction)
    return new ObjectDB(store, prefix, cacheSize);
  }

  get store(): Store {
    return this.layout.store;
  }

  /** A connection of its own: own cache, own consistent view between transactions. */
  connect(options: { cacheSize?: number } = {}): Connection {
    if (this.closed) throw new LatchkeyError('CLOSED', 'the object database is closed');
    const c = new Connection(this.layout, options.cacheSize ?? this.cacheSize, (x) => {
      if (this.all.delete(x)) this.retired.push(x.stats());
    });
    this.all.add(c);
    return c;
  }

  /** `fn(root)` on a pooled connection; re-run on unresolved CONFLICT like store.transaction. */
  async transaction<T>(fn: (root: PMap) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    const c = this.idle.pop() ?? this.connect();
    try {
      return await c.transaction(fn, options);
    } finally {
      if (this.closed) await c.close();
      else this.idle.push(c);
    }
  }

  /** Removes the objects unreachable from the root (see the file's header). */
  async pack(options: { attempts?: number } = {}): Promise<PackResult> {
    const { store, objDir, tidPath } = this.layout;
    const maxAttempts = options.attempts ?? 20;
    for (let attempt = 1; ; attempt++) {
      const tx = store.begin();
      try {
        await tx.get(tidPath);
        const stored: string[] = [];
        for (let after: string | undefined; ;) {
          const page = await tx.list(objDir.slice(0, -1), { limit: 10_000, ...(after !== undefined ? { after } : {}) });
          stored.push(...page);
          if (!page.more) break;
          after = page.at(-1);
        }
        const reached = new Set<string>();
        let frontier = stored.includes('0') ? ['0'] : [];
        for (const o of frontier) reached.add(o);
        while (frontier.length > 0) {
          const entries = await Promise.all(frontier.map((o) => tx.get(objDir + o)));
          const next: string[] = [];
          for (const e of entries) {
            if (e === undefined) continue;
            for (const r of unpackRecord(e.value).refs) {
              if (!reached.has(r)) {
                reached.add(r);
                next.push(r);
              }
            }
          }
          frontier = next;
        }
        const garbage = stored.filter((o) => !reached.has(o));
        await Promise.all(garbage.map((o) => tx.delete(objDir + o)));
        if (garbage.length > 0) await tx.add(tidPath, 1);
        const r = await tx.commit();
        return { stored: stored.length, reachable: reached.size, removed: garbage.length, attempts: attempt, revision: r.revision };
      } catch (e) {
        if (tx.state === 'open') await tx.abort().catch(() => {});
        if (!LatchkeyError.is(e, 'CONFLICT') || attempt >= maxAttempts) throw e;
      }
      await sleep(backoffMs({ baseMs: 1, capMs: 200 }, attempt), undefined);
    }
  }

  /** Figures summed over every connection this database opened (closed ones included). */
  stats(): ObjectDBStats {
    const sum: Record<string, number> = {};
    const add = (s: ConnectionStats): void => {
      for (const [k, v] of Object.entries(s)) sum[k] = (sum[k] ?? 0) + v;
    };
    for (const s of this.retired) add(s);
    for (const c of this.all) add(c.stats());
    return { ...(sum as unknown as ConnectionStats), connections: this.all.size };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.all].map((c) => c.close()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

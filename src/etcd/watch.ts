/**
 * Watches map onto etcd watches of the node keys, from a revision: events
 * come in etcd's order (revision, then the order of the Txn's operations,
 * which commit.ts writes parents first), filtered to the watched node (and
 * its subtree when recursive). A start revision etcd has compacted away
 * ends the iteration with COMPACTED.
 */
import type { Watcher } from 'etcd3';
import type { WatchEvent, WatchOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import { type EtcdBackend, etcdError } from './backend.js';
import { isAncestorOrSelf } from './keys.js';

export class EtcdWatch implements AsyncIterable<WatchEvent> {
  constructor(private readonly backend: EtcdBackend, private readonly path: string, private readonly options: WatchOptions) {}

  [Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
    const { backend, path, options } = this;
    const keys = backend.keys;
    const queue: WatchEvent[] = [];
    let error: LatchkeyError | undefined;
    let done = false;
    let wake: (() => void) | undefined;
    let watcher: Watcher | undefined;
    const start = options.fromRevision ?? backend.mirror.rev + 1;
    const [from] = keys.range('n');
    const stop = (): void => {
      done = true;
      wake?.();
      void watcher?.cancel().catch(() => {});
    };
    const ready = backend.client.watch().prefix(from).startRevision(String(Math.max(1, start))).create().then((w) => {
      watcher = w;
      if (done) void w.cancel().catch(() => {});
      w.on('data', (res) => {
        for (const e of res.events) {
          const p = keys.parse(e.kv.key.toString());
          if (p === undefined || p.kind !== 'n') continue;
          const inside = options.recursive ? isAncestorOrSelf(path, p.rest) : p.rest === path;
          if (!inside) continue;
          const rev = Number(e.kv.mod_revision);
          queue.push(e.type === 'Put'
            ? { type: 'put', path: p.rest, revision: rev, value: new Uint8Array(e.kv.value) }
            : { type: 'delete', path: p.rest, revision: rev });
        }
        wake?.();
      });
      w.on('error', (err: Error) => {
        error = /compact/i.test(err.message)
          ? new LatchkeyError('COMPACTED', `watch ${path} from revision ${start}: etcd has compacted that history`, { path })
          : etcdError(err);
        wake?.();
      });
    }, (e: unknown) => {
      error = etcdError(e);
      wake?.();
    });
    options.signal?.addEventListener('abort', () => {
      error ??= new LatchkeyError('ABORTED', `watch ${path} aborted`, { path });
      stop();
    }, { once: true });
    return {
      async next(): Promise<IteratorResult<WatchEvent>> {
        await ready;
        for (;;) {
          if (queue.length > 0) return { done: false, value: queue.shift()! };
          if (error !== undefined) {
            const e = error;
            stop();
            throw e;
          }
          if (done || backend.closed) return { done: true, value: undefined };
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
      },
      async return(): Promise<IteratorResult<WatchEvent>> {
        stop();
        return { done: true, value: undefined };
      },
    };
  }
}

/**
 * What one console tick costs at scale: an in-memory store with 1,000,000
 * nodes and 100,000 held locks (plus 1,000 waiters), served by the console's
 * API. Prints the median of 9 runs of each call and the load average.
 *
 *   npx tsc -p tsconfig.test.json && node build/bench/console-scale.js
 */
import os from 'node:os';
import { open } from '../src/engine/open.js';
import type { EmbeddedStore } from '../src/engine/store.js';
import { ConsoleApi } from '../src/http/api.js';
import { createLogger } from '../src/http/log.js';
import { Metrics } from '../src/http/metrics.js';
import { TRUSTED } from '../src/server/auth.js';

const NODES = 1_000_000;
const LOCKS = 100_000;
const load0 = os.loadavg()[0]!.toFixed(2);
const store = (await open()) as EmbeddedStore;
for (let i = 0; i < NODES; i += 10_000) {
  await store.multi(Array.from({ length: 10_000 }, (_, j) => ({ op: 'set' as const, path: `/n/d${String(Math.floor((i + j) / 1000)).padStart(4, '0')}/k${(i + j) % 1000}`, value: 'v' })));
}
const sessions = Array.from({ length: 1000 }, (_, i) => store.ownedSession({ name: `s${i}` }));
for (let i = 0; i < LOCKS; i++) await sessions[i % 1000]!.lock(`/locks/l${i}`);
const waiters = Array.from({ length: 1000 }, (_, i) => store.ownedSession({ name: `w${i}` }));
const pending = waiters.map((w, i) => w.lock(`/locks/l${i}`).catch(() => {}));
const metrics = new Metrics({ store });
const api = new ConsoleApi({ store, log: createLogger({ level: 'silent' }), metrics });
const time = async (what: string, f: () => Promise<unknown> | unknown): Promise<void> => {
  const ms: number[] = [];
  for (let r = 0; r < 9; r++) {
    const t = performance.now();
    await f();
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  process.stdout.write(`${what.padEnd(40)} median ${ms[4]!.toFixed(1)} ms (min ${ms[0]!.toFixed(1)}, max ${ms[8]!.toFixed(1)})\n`);
};
const s = store.stats();
process.stdout.write(`nodes ${s.nodes}, locks held ${store.lockTable().held.length}, waiting ${store.lockTable().waiting.length}\n`);
await time('store.lockTable()', () => store.lockTable());
await time('sessionList()', () => store.sessionList());
// One whole tick (figures, lock view, sessions, events) with the shared lock table taken afresh, as each second.
const inner = api as unknown as { table: unknown; tick(p: typeof TRUSTED, after: number): unknown };
await time('one tick (nothing cached)', () => { inner.table = undefined; return JSON.stringify(inner.tick(TRUSTED, 0)).length; });
await time('lock view (GET /api/locks, one page)', () => api.call(TRUSTED, 'GET', 'locks', new URLSearchParams(), undefined));
await time('list a 1,000-child directory (200)', () => api.call(TRUSTED, 'GET', 'list', new URLSearchParams({ path: '/n/d0500', limit: '200' }), undefined));
await time('list the 100,000 lock paths\' parent (200)', () => api.call(TRUSTED, 'GET', 'list', new URLSearchParams({ path: '/n', limit: '200' }), undefined));
await time('/metrics scrape', () => metrics.text());
process.stdout.write(`load average before ${load0}, after ${os.loadavg()[0]!.toFixed(2)} (2 cores, shared machine)\n`);
api.close();
metrics.close();
for (const w of waiters) await w.end(false);
await Promise.all(pending);
process.exit(0);

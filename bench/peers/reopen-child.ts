/**
 * Child of compare-reopen: opens an lmdb-js environment in a fresh process,
 * reads one key (so "open" means ready to serve), and prints one JSON line
 * with the time that took and the process's RSS. latchkey's counterpart is
 * bench/durability-reopen.ts.
 *
 *   node reopen-child.js DIR KEY
 */
import { open } from 'lmdb';

const [dir, key] = process.argv.slice(2);
if (dir !== undefined && key !== undefined) {
  const t0 = performance.now();
  const db = open<string, string>({ path: dir });
  const found = db.get(key) !== undefined;
  const ms = performance.now() - t0;
  console.log(JSON.stringify({ ms, found, rssMiB: process.memoryUsage().rss / 2 ** 20 }));
  await db.close();
}

/**
 * lmdb-js peer (the `lmdb` npm package): an embedded B-tree store, the
 * natural comparison for latchkey embedded. Opened in a temporary directory
 * with its defaults: `put` joins an asynchronous batched write transaction,
 * `putSync` commits (and syncs) one transaction per call, `get` reads in the
 * calling thread.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { RootDatabase } from 'lmdb';
import { forgetTempDirLater, tempDir } from './server.js';
import type { Missing } from './peer.js';

export interface LmdbPeer {
  readonly db: RootDatabase<string, string>;
  readonly path: string;
  readonly version: string;
  readonly settings: string[];
  close(): Promise<void>;
}

/** Opens lmdb-js in a temp dir. Its native module loads only here, so a broken build is reported, not fatal. */
export async function openLmdb(opts: { noSync?: boolean } = {}): Promise<LmdbPeer | Missing> {
  let lmdb: typeof import('lmdb');
  try {
    lmdb = await import('lmdb');
  } catch (e) {
    return { missing: `not loadable: ${e instanceof Error ? e.message : String(e)}`.slice(0, 200) };
  }
  let version = 'unknown';
  try {
    // lmdb's exports map hides package.json: find it beside the resolved entry point
    for (let dir = path.dirname(createRequire(import.meta.url).resolve('lmdb')), i = 0; i < 4; i++, dir = path.dirname(dir)) {
      try {
        const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version: string };
        if (pkg.name === 'lmdb') {
          version = pkg.version;
          break;
        }
      } catch {
        // not here; one level up
      }
    }
  } catch {
    // version is only for the report
  }
  const dir = tempDir('lmdb');
  forgetTempDirLater(dir);
  let db: RootDatabase<string, string>;
  try {
    db = lmdb.open<string, string>({ path: dir, noSync: opts.noSync === true });
  } catch (e) {
    return { missing: `failed to open: ${e instanceof Error ? e.message : String(e)}`.slice(0, 200) };
  }
  return {
    db,
    path: dir,
    version,
    settings: [`lmdb-js defaults in a temp dir${opts.noSync ? ', noSync: true (commits written, not synced: against latchkey durability \'none\')' : ' (commits synced)'}; string keys and values`],
    close: () => db.close(),
  };
}

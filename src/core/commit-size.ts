/**
 * The size of a commit, as the per-commit byte cap counts it.
 *
 * Whatever a writer acknowledges, recovery must read back: the log reader
 * treats a record payload over `MAX_RECORD_PAYLOAD` (storage/wal.ts) as damage.
 * So every commit is measured before it touches the pending head, and one
 * whose measure is over the store's `maxCommitBytes` fails `TOO_LARGE` with
 * nothing written.
 *
 * The measure is documented (docs/protocol.md, README) so a caller can tell
 * how close a transaction is to the cap:
 *
 *     commitBytes = 8 + Σ over the commit's mutations of
 *        put:   24 + bytes(path) + bytes(value) + bytes(ephemeral owner)
 *        del:   24 + bytes(path)
 *        perms: 24 + bytes(path) + Σ (8 + bytes(entry))
 *
 * where bytes(s) is a string's UTF-8 length. Each term bounds the msgpack
 * encoding of that mutation in a log record from above (a tuple header, a
 * type tag and headers of at most 5 bytes per string, binary or array), so
 * a commit under the cap always makes a record under the reader's limit
 * provided the cap is at most that limit (the engine checks it; a property
 * test in test/storage/wal.test.ts checks the bound against the encoder).
 * Mutations, not operations, are counted: auto-created parents count, and a
 * recursive delete counts one path however large the subtree.
 */
import type { Mutation } from './tree.js';

export const COMMIT_BASE_BYTES = 8;
export const MUTATION_OVERHEAD_BYTES = 24;
export const PERM_OVERHEAD_BYTES = 8;
/** Default per-commit cap: far below the log reader's limit, far above a sane transaction. */
export const DEFAULT_MAX_COMMIT_BYTES = 64 * 1024 * 1024;

/** UTF-8 length of a string without allocating. */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 2; // a pair: 2 UTF-16 units, 4 bytes
        i++;
      } else n += 2;
    } else n += 2;
  }
  return n;
}

export function mutationBytes(m: Mutation): number {
  let n = MUTATION_OVERHEAD_BYTES + utf8Length(m.path);
  if (m.op === 'move') {
    n += 48; // six integers
  } else if (m.op === 'put') {
    n += m.value.length;
    if (m.ephemeralOwner !== undefined) n += utf8Length(m.ephemeralOwner);
  } else if (m.op === 'perms') {
    for (const p of m.perms) n += PERM_OVERHEAD_BYTES + utf8Length(p);
  }
  return n;
}

/** The measure of a whole commit (see the header). */
export function commitBytes(muts: readonly Mutation[]): number {
  let n = COMMIT_BASE_BYTES;
  for (const m of muts) n += mutationBytes(m);
  return n;
}

/**
 * `latchkey export` / `latchkey import`: a subtree as JSON lines.
 *
 * Format (version 1), one JSON object a line:
 *   {"latchkey":"dump","version":1,"path":"/jobs","revision":812}   header, first
 *   {"path":"/jobs/1","value":"text"}                                a text value
 *   {"path":"/jobs/2","base64":"AAEC/w=="}                           any other bytes
 * Parents come before their children, so an import creates them in order.
 * Ephemeral nodes are left out: they belong to a live session, and imported
 * they would outlive it.
 *
 * Export reads node by node (a transaction would hold every read in its
 * read set, bounded by the server's per-transaction limit), so it is not a
 * snapshot of a tree that changes meanwhile; run it under a shared lock
 * (`latchkey lock --shared PATH -- latchkey export PATH`) when that matters:
 * a lock blocks writers, never readers.
 * Import writes in batches with `multi`, each batch atomic, the whole not.
 */
import { fstatSync } from 'node:fs';
import readline from 'node:readline';
import type { MultiOp } from '../../api.js';
import type { RemoteStore } from '../../client/store.js';
import { LatchkeyError } from '../../core/errors.js';
import {
  CLIENT_OPTIONS, CLIENT_OPTIONS_HELP, type Command, EXIT, UsageError, connectFrom, jsonValue, out, parse, parseCount,
} from '../command.js';
import { walk } from './kv.js';

export const DUMP_FORMAT = `dump format (JSON lines, version 1):
  {"latchkey":"dump","version":1,"path":"/jobs","revision":812}   the header
  {"path":"/jobs/1","value":"text"}                                one per node,
  {"path":"/jobs/2","base64":"AAEC/w=="}                           parents first
A value that is not text (UTF-8 without control bytes) is given in base64.
Ephemeral nodes are not exported.`;

/** Only large jobs, only on a terminal: scripts and logs never see a bar. */
const PROGRESS_MIN = 1000;

class Progress {
  private last = 0;
  private shown = false;
  constructor(private readonly label: string, private readonly total: number | undefined, private readonly unit = '') {}

  /** `done` counts toward the total (nodes or bytes); `count` is nodes, which decides whether the job is large. */
  update(done: number, count: number, force = false): void {
    if (!process.stderr.isTTY) return;
    if (!this.shown && count < PROGRESS_MIN) return;
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    this.shown = true;
    const cols = process.stderr.columns ?? 80;
    let line: string;
    if (this.total !== undefined && this.total > 0) {
      const f = Math.min(1, done / this.total);
      const w = Math.max(10, cols - this.label.length - 30);
      const fill = Math.round(f * w);
      line = `${this.label} [${'#'.repeat(fill)}${'.'.repeat(w - fill)}] ${(f * 100).toFixed(0).padStart(3)}%`;
    } else {
      line = `${this.label} ${done}${this.unit}`;
    }
    process.stderr.write(`\r${line.slice(0, cols - 1)}\x1b[K`);
  }

  end(): void {
    if (this.shown) process.stderr.write('\n');
  }
}

export const exportCmd: Command = {
  help: `usage: latchkey export [PATH]

Writes PATH (default /) and everything under it to stdout as JSON lines.
A progress bar goes to stderr for large trees when stderr is a terminal.

${DUMP_FORMAT}

Export reads node by node: for a snapshot of a tree that is being written,
hold a shared lock meanwhile (writers wait, readers do not).

${CLIENT_OPTIONS_HELP}

examples:
  latchkey export > dump.jsonl
  latchkey export /config > config.jsonl
  latchkey lock --shared /jobs -- latchkey export /jobs > jobs.jsonl`,
  async run(argv) {
    const { values, positionals } = parse(argv, CLIENT_OPTIONS);
    if (positionals.length > 1) throw new UsageError(`unexpected argument ${positionals[1]}`);
    const root = positionals[0] ?? '/';
    const store = await connectFrom(values);
    try {
      const head = await store.get(root);
      if (head === undefined) throw new LatchkeyError('NOT_FOUND', `${root} does not exist`, { path: root });
      const total = root === '/' ? (await store.fetchStats()).nodes : undefined;
      const bar = new Progress('exporting', total, ' nodes');
      out(JSON.stringify({ latchkey: 'dump', version: 1, path: root, revision: head.revision }) + '\n');
      let n = 0;
      for await (const node of walk(store, root)) {
        const e = node.path === root ? head : await store.get(node.path);
        n++;
        bar.update(n, n);
        if (e === undefined || e.stat.ephemeralOwner !== undefined) continue;
        // The root's empty value carries nothing; every other node is written, empty or not (it exists).
        if (e.path === '/' && e.value.length === 0) continue;
        out(JSON.stringify({ path: e.path, ...jsonValue(e.value) }) + '\n');
      }
      bar.update(n, n, true);
      bar.end();
    } finally {
      await store.close();
    }
    return EXIT.OK;
  },
};

function decodeLine(line: string, n: number): { path: string; value: Uint8Array } | undefined {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    throw new LatchkeyError('INVALID_ARGUMENT', `line ${n}: not JSON`);
  }
  if (typeof o !== 'object' || o === null) throw new LatchkeyError('INVALID_ARGUMENT', `line ${n}: not an object`);
  const r = o as Record<string, unknown>;
  if (r['latchkey'] === 'dump') {
    if (r['version'] !== 1) throw new LatchkeyError('INVALID_ARGUMENT', `line ${n}: dump version ${String(r['version'])} is not supported (1)`);
    return undefined;
  }
  if (typeof r['path'] !== 'string') throw new LatchkeyError('INVALID_ARGUMENT', `line ${n}: no "path"`);
  if (typeof r['value'] === 'string') return { path: r['path'], value: Buffer.from(r['value'], 'utf8') };
  if (typeof r['base64'] === 'string') return { path: r['path'], value: Buffer.from(r['base64'], 'base64') };
  throw new LatchkeyError('INVALID_ARGUMENT', `line ${n}: no "value" or "base64"`);
}

async function flush(store: RemoteStore, batch: MultiOp[]): Promise<void> {
  if (batch.length === 0) return;
  await store.multi(batch);
  batch.length = 0;
}

export const importCmd: Command = {
  help: `usage: latchkey import [--batch N] < dump.jsonl

Reads a dump (the format \`latchkey export\` writes) from stdin and sets every
node in it, in batches of N nodes (default 500), each batch one atomic commit
(the import as a whole is not). Existing nodes are overwritten; nodes that are
not in the dump are left alone. Prints the number of nodes imported.
A progress bar goes to stderr for large dumps when stderr is a terminal.

${DUMP_FORMAT}

${CLIENT_OPTIONS_HELP}

examples:
  latchkey import < dump.jsonl
  latchkey export /config --url unix:///srv/a.sock | latchkey import --url unix:///srv/b.sock`,
  async run(argv) {
    const { values, positionals } = parse(argv, { ...CLIENT_OPTIONS, batch: { type: 'string' } });
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]} (the dump is read from stdin)`);
    const batchMax = parseCount(values.batch, '--batch') ?? 500;
    if (batchMax < 1) throw new UsageError('--batch must be at least 1');
    // A dump redirected from a file has a size: the bar can show a fraction.
    let size: number | undefined;
    try {
      const st = fstatSync(0);
      if (st.isFile()) size = st.size;
    } catch { /* stdin closed: nothing to size */ }
    const store = await connectFrom(values);
    try {
      // Stay well under the frame limit: values are at most maxValue each, and a batch is one frame.
      const maxBytes = Math.max(1, Math.floor((store.limits?.maxFrame ?? 4 * 1024 * 1024) / 2));
      const maxOps = Math.min(batchMax, store.limits?.maxTxOps ?? batchMax);
      const bar = new Progress('importing', size, ' nodes');
      const batch: MultiOp[] = [];
      let bytes = 0;
      let read = 0;
      let n = 0;
      let lineNo = 0;
      for await (const line of readline.createInterface({ input: process.stdin, crlfDelay: Infinity })) {
        lineNo++;
        read += Buffer.byteLength(line) + 1;
        if (line.trim() === '') continue;
        const node = decodeLine(line, lineNo);
        if (node === undefined) continue;
        const cost = node.value.length + Buffer.byteLength(node.path) + 32;
        if (batch.length >= maxOps || (batch.length > 0 && bytes + cost > maxBytes)) {
          await flush(store, batch);
          bytes = 0;
        }
        batch.push({ op: 'set', path: node.path, value: node.value });
        bytes += cost;
        n++;
        bar.update(size === undefined ? n : read, n);
      }
      await flush(store, batch);
      bar.update(size === undefined ? n : read, n, true);
      bar.end();
      out(`imported ${n} node(s)\n`);
    } finally {
      await store.close();
    }
    return EXIT.OK;
  },
};

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type MultiOp, open } from '../../src/index.js';
import { EmbeddedStore } from '../../src/engine/store.js';
import { realFs } from '../../src/storage/fs.js';
import { recover } from '../../src/storage/recovery.js';

test('recovery keeps only the log tail the watch history window can hold, and a reopened store resumes watches from it', { timeout: 300_000 }, async () => {
  const dir = path.join(mkdtempSync(path.join(os.tmpdir(), 'latchkey-rechist-')), 'data');
  try {
    const opts = { snapshotEveryBytes: Number.MAX_SAFE_INTEGER, snapshotEveryRecords: Number.MAX_SAFE_INTEGER, durability: 'none' as const };
    const s = await open(dir, opts);
    // 120 commits of 1,000 puts: 120,000 events, over the window's 100,000
    for (let d = 0; d < 120; d++) {
      const ops: MultiOp[] = [];
      for (let c = 0; c < 1000; c++) ops.push({ op: 'set', path: `/d${d}/n${String(c).padStart(4, '0')}`, value: 'v' });
      await s.multi(ops);
    }
    const head = (await s.stats()).revision;
    await s.close();

    const r = await recover(realFs, dir, false);
    assert.equal(r.revision, head);
    assert.equal(r.root.size, 1 + 120 + 120_000);
    // each commit is 1,001 puts (the directory too): the last 99 fit the window; recovery keeps no more
    assert.equal(r.history.length, 99);
    assert.equal(r.history[0]!.rev, head - 98);
    assert.equal(r.history.at(-1)!.rev, head);

    const again = await open(dir, opts);
    assert.ok(again instanceof EmbeddedStore);
    assert.equal(again.internals.watches.oldestRevision, head - 98);
    // a watch resumes from the recalled tail: the last commit's 1,000 puts
    let n = 0;
    for await (const ev of again.watch('/d119', { recursive: true, fromRevision: head })) {
      assert.equal(ev.revision, head);
      if (++n === 1000) break;
    }
    await again.close();
  } finally {
    rmSync(path.dirname(dir), { recursive: true, force: true });
  }
});

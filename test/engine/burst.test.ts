/**
 * Bursts (engine.ts): plain sets of one group applied in place to one
 * mutable path copy. Everything observable must be what one-by-one commits
 * give: answers, revisions, watch events, the log and value files, the tree
 * after a reopen; hooks that need each commit's own roots get them; a full
 * disk fails exactly the commits it should.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Store } from '../../src/api.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { type Node, lookup } from '../../src/core/tree.js';
import { bytesOf } from '../../src/core/value.js';
import type { Engine } from '../../src/engine/engine.js';
import { open } from '../../src/engine/open.js';
import type { Published } from '../../src/engine/pipeline.js';
import { FaultyFs } from '../../src/storage/fs.js';
import { dump, tempDir } from '../storage/helpers.js';
import { xorshift } from '../reliability/history.js';

const rng = xorshift;

const engineOf = (s: Store): Engine => (s as unknown as { internals: Engine }).internals;
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

type Op = (s: Store) => Promise<unknown>;

/** A random operation: mostly plain sets (burst candidates), with every other kind of write mixed in. */
function randomOp(r: () => number, i: number, ephemerals: boolean): Op {
  const x = r();
  const key = `/a/k${Math.floor(r() * 40)}`;
  if (x < 0.45) return (s) => s.set(key, `v${i}`);
  if (x < 0.52) return (s) => s.set(`/d${Math.floor(r() * 4)}/e${Math.floor(r() * 3)}/f${Math.floor(r() * 3)}`, `deep${i}`);
  if (x < 0.57) { const n = 100 + Math.floor(r() * 5000); return (s) => s.set(key, 'x'.repeat(n)); } // value files, some TOO_LARGE
  if (x < 0.62) { const v = Math.floor(r() * 4); return (s) => s.set(key, `c${i}`, { ifVersion: v }); }
  if (x < 0.65) return (s) => s.set(key, `abs${i}`, { ifAbsent: true });
  if (x < 0.68) return (s) => s.set('/', `root${i}`);
  if (x < 0.74) return (s) => s.delete(r() < 0.5 ? key : `/d${Math.floor(r() * 4)}`, { recursive: true });
  if (x < 0.78) return (s) => s.create('/q/item-', `q${i}`, { sequential: true });
  if (x < 0.82) return (s) => s.multi([{ op: 'set', path: key, value: `m${i}` }, { op: 'set', path: `/a/m${Math.floor(r() * 5)}`, value: `m${i}` }]);
  if (x < 0.86) return (s) => s.add('/counter', 1);
  if (x < 0.90) {
    return async (s) => {
      const t = s.begin();
      const e = await t.get(key);
      await t.set(`/a/tx${Math.floor(r() * 5)}`, e === undefined ? 'none' : e.text());
      return t.commit();
    };
  }
  // A session's id (an ephemeral node's owner, in the tree and the log) differs between two stores: only some runs have them.
  if (x < 0.93 && ephemerals) return (s) => s.set('/eph-parent/child', 'under an ephemeral node'); // fails once the parent is ephemeral
  if (x < 0.95 && ephemerals) return (s) => s.create(`/eph-parent`, 'e', { ephemeral: true });
  return (s) => s.set(`/a/new${i}/leaf`, `p${i}`);
}

/** The tree dump with the store's own session id as an ephemeral owner replaced by a placeholder. */
function normalize(rows: unknown[], owner: string): unknown[] {
  return rows.map((row) => (row as unknown[]).map((x, i) => (i === 7 && x === owner ? '<own session>' : x)));
}

interface Run {
  answers: string[];
  events: string[];
  tree: unknown[];
  files: Map<string, string>;
  reopened: unknown[];
  bursts: number;
}

async function runOnce(dir: string, bursts: boolean, seed: number, ephemerals: boolean): Promise<Run> {
  const store = await open(dir, { durability: 'none', bursts, inlineValueBytes: 256, maxCommitBytes: 4096 });
  const engine = engineOf(store);
  const events: string[] = [];
  engine.watches.subscribe('/', true, undefined, {
    deliver: (rev, evs) => { for (const e of evs) events.push(`${rev} ${e.type} ${e.path} ${e.value === undefined ? '' : hex(e.value)}`); },
    end: () => {},
  });
  const r = rng(seed);
  const answers: string[] = [];
  let i = 0;
  for (let wave = 0; wave < 40; wave++) {
    const n = 1 + Math.floor(r() * 120);
    const ops: Op[] = [];
    for (let k = 0; k < n; k++) ops.push(randomOp(r, i++, ephemerals));
    // One tick: every op starts before any completes (the burst).
    const settled = await Promise.allSettled(ops.map((op) => op(store)));
    for (const s of settled) {
      answers.push(s.status === 'fulfilled' ? `ok ${JSON.stringify(s.value)}` : `err ${(s.reason as LatchkeyError).code ?? (s.reason as Error).message}`);
    }
  }
  const bursted = (store.stats() as unknown as { burstCommits: number }).burstCommits;
  const owner = (store as unknown as { id: string }).id;
  const tree = normalize(dump(engine.visibleRoot), owner);
  await store.close();
  const files = new Map<string, string>();
  for (const name of (await readdir(dir)).sort()) {
    if (name === 'owner.lock') continue;
    files.set(name, (await readFile(path.join(dir, name))).toString('hex'));
  }
  const again = await open(dir, { durability: 'none' });
  const reopened = normalize(dump(engineOf(again).visibleRoot), owner);
  await again.close();
  return { answers, events, tree, files, reopened, bursts: bursted };
}

test('bursts: random waves of writes give the same answers, revisions, watch events, log and value files, and reopened tree as one-by-one commits (property)', async () => {
  for (const [seed, ephemerals] of [[3, false], [11, true], [29, false], [41, true]] as const) {
    await using a = await tempDir('latchkey-burst-a-');
    await using b = await tempDir('latchkey-burst-b-');
    const withBursts = await runOnce(a.path, true, seed, ephemerals);
    const oneByOne = await runOnce(b.path, false, seed, ephemerals);
    assert.ok(withBursts.bursts > 100, `sets joined bursts (${withBursts.bursts})`);
    assert.equal(oneByOne.bursts, 0);
    assert.deepEqual(withBursts.answers, oneByOne.answers, `seed ${seed}: answers`);
    assert.ok(withBursts.answers.some((x) => x.startsWith('err TOO_LARGE')), 'some sets were too large');
    assert.ok(withBursts.answers.some((x) => x.startsWith('err CONFLICT')), 'some conditions failed');
    assert.deepEqual(withBursts.events, oneByOne.events, `seed ${seed}: watch events`);
    assert.deepEqual(withBursts.tree, oneByOne.tree, `seed ${seed}: tree`);
    assert.deepEqual([...withBursts.files.keys()], [...oneByOne.files.keys()], `seed ${seed}: files`);
    if (!ephemerals) for (const [name, bytes] of withBursts.files) assert.ok(bytes === oneByOne.files.get(name), `seed ${seed}: ${name} differs`);
    assert.deepEqual(withBursts.reopened, oneByOne.reopened, `seed ${seed}: reopened trees`);
    // (Closing deletes the store's own ephemeral nodes, in a commit of its own.)
    if (!ephemerals) assert.deepEqual(withBursts.reopened, withBursts.tree, `seed ${seed}: reopen gives the tree`);
  }
});

test('bursts: a hook installed while burst commits are in flight sees each commit\'s own before and after; with it installed, sets stop joining bursts', async () => {
  await using tmp = await tempDir('latchkey-burst-hook-');
  const store = await open(tmp.path, { durability: 'none' });
  const engine = engineOf(store);
  await store.set('/h/k', 'v0');
  const writes = Array.from({ length: 50 }, (_, i) => store.set('/h/k', `v${i + 1}`));
  const seen: Array<[number, string, string]> = [];
  const value = (root: Node): string => Buffer.from(bytesOf(lookup(root, ['h', 'k'])!.value)).toString();
  const unhook = engine.onCommit((c: Published) => { seen.push([c.rev, value(c.before), value(c.after)]); });
  const revs = await Promise.all(writes);
  const burstsBefore = (store.stats() as unknown as { burstCommits: number }).burstCommits;
  assert.equal(burstsBefore, 51, 'the first set and the 50 joined bursts before the hook came');
  assert.deepEqual(seen, revs.map((rev, i) => [rev, `v${i}`, `v${i + 1}`]));
  await Promise.all(Array.from({ length: 10 }, (_, i) => store.set('/h/k', `w${i}`)));
  assert.equal((store.stats() as unknown as { burstCommits: number }).burstCommits, 51, 'no burst while a hook needs roots');
  assert.equal(seen.length, 60);
  assert.deepEqual(seen.at(-1)!.slice(1), ['w8', 'w9']);
  unhook();
  await Promise.all(Array.from({ length: 10 }, (_, i) => store.set('/h/k', `z${i}`)));
  assert.equal((store.stats() as unknown as { burstCommits: number }).burstCommits, 61);
  assert.equal((await store.get('/h/k'))!.text(), 'z9');
  await store.close();
});

test('bursts: a failed log write fails the burst\'s commits READ_ONLY; reopen has exactly the commits before it', async () => {
  await using tmp = await tempDir('latchkey-burst-enospc-');
  const fs = new FaultyFs();
  const store = await open(tmp.path, { fs });
  const first = await Promise.all(Array.from({ length: 100 }, (_, i) => store.set(`/f/k${i}`, `a${i}`)));
  assert.equal((store.stats() as unknown as { burstCommits: number }).burstCommits, 100);
  fs.inject({ op: 'write', code: 'ENOSPC', file: /^wal-/ });
  const second = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => store.set(`/f/k${i}`, `b${i}`)));
  for (const s of second) {
    assert.equal(s.status, 'rejected');
    assert.equal((s.reason as LatchkeyError).code, 'READ_ONLY');
  }
  // Nothing of the failed burst became visible, and the store takes no more commits.
  assert.equal((await store.get('/f/k7'))!.text(), 'a7');
  await assert.rejects(store.set('/f/x', 'y'), (e: LatchkeyError) => e.code === 'READ_ONLY');
  await store.close();
  fs.clear();
  const again = await open(tmp.path);
  assert.equal((await again.stats()).revision, first.at(-1));
  for (let i = 0; i < 100; i++) assert.equal((await again.get(`/f/k${i}`))!.text(), `a${i}`);
  await again.close();
});

/**
 * The burst path of the tree (tree.ts `putNodeOwned`, pmap.ts `setOwned`):
 * puts applied in place to the nodes a burst owns give the same tree as
 * persistent `putNode`s, and a root is immutable once its burst ended.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PMap } from '../../src/core/pmap.js';
import { type Node, emptyRoot, lookup, putNode, putNodeOwned, removeNode, walkTree } from '../../src/core/tree.js';
import { dump, enc } from '../storage/helpers.js';
import { xorshift } from '../reliability/history.js';

const rng = xorshift;

/** Every node is found by lookup under its path, and each children map's size matches its entries. */
function checkShape(root: Node): void {
  for (const [p, n] of walkTree(root)) {
    const segs = p === '/' ? [] : p.slice(1).split('/');
    assert.equal(lookup(root, segs), n, `lookup finds ${p}`);
    assert.equal(n.children.keys().length, n.children.size, `children of ${p} count`);
  }
}

interface Put { segs: string[]; value: string; owner?: string; seq?: boolean }

/** A random put whose parent exists in `root` (a directory with many children, so B+tree nodes split). */
function randomPut(r: () => number, root: Node, i: number): Put {
  const dirs: string[][] = [];
  for (const [p] of walkTree(root)) if (dirs.length < 64) dirs.push(p === '/' ? [] : p.slice(1).split('/'));
  const roll = r();
  let parent: string[];
  if (roll < 0.6) parent = ['big'];
  else if (roll < 0.7) parent = [];
  else parent = dirs[Math.floor(r() * dirs.length)]!;
  if (parent.length > 0 && lookup(root, parent) === undefined) parent = [];
  const name = roll < 0.6 ? `k${Math.floor(r() * 3000)}` : `n${Math.floor(r() * 40)}`;
  const put: Put = { segs: [...parent, name], value: `v${i}` };
  if (r() < 0.05) put.owner = `s${Math.floor(r() * 3)}`;
  if (r() < 0.05) put.seq = true;
  return put;
}

test('burst tree: puts applied in place within bursts give the tree persistent puts give, and sealed roots never change (property)', () => {
  for (let seed = 1; seed <= 12; seed++) {
    const r = rng(seed);
    let persistent = putNode(emptyRoot(), ['big'], 1, enc('d'));
    let burst = persistent;
    let rev = 1;
    const sealed: Array<{ root: Node; dump: unknown[] }> = [];
    for (let b = 0; b < 25; b++) {
      const owned = new Set<object>();
      const n = 1 + Math.floor(r() * 300);
      for (let i = 0; i < n; i++) {
        rev++;
        const p = randomPut(r, persistent, rev);
        persistent = putNode(persistent, p.segs, rev, enc(p.value), p.owner, p.seq);
        burst = putNodeOwned(burst, p.segs, rev, enc(p.value), p.owner, p.seq, owned);
      }
      // The burst ends: its root must stay as it is from now on.
      assert.deepEqual(dump(burst), dump(persistent), `seed ${seed} burst ${b}`);
      checkShape(burst);
      sealed.push({ root: burst, dump: dump(burst) });
      if (r() < 0.3) {
        // A persistent commit between bursts (a delete), on the sealed root.
        rev++;
        const victims = [...walkTree(persistent)].filter(([p]) => p.startsWith('/big/'));
        if (victims.length > 0) {
          const [vp] = victims[Math.floor(r() * victims.length)]!;
          const segs = vp.slice(1).split('/');
          persistent = removeNode(persistent, segs, rev);
          burst = removeNode(burst, segs, rev);
        }
      }
    }
    for (const s of sealed) assert.deepEqual(dump(s.root), s.dump, `seed ${seed}: a sealed root changed`);
  }
});

test('burst pmap: setOwned equals set, changes only owned maps, and splits the same way', () => {
  const r = rng(7);
  let a = PMap.empty<number>();
  let b = a;
  const frozen: Array<[PMap<number>, string[]]> = [];
  for (let burst = 0; burst < 40; burst++) {
    const owned = new Set<object>();
    for (let i = 0; i < 500; i++) {
      const k = `k${Math.floor(r() * 5000)}`;
      a = a.set(k, i);
      b = b.setOwned(k, i, owned);
    }
    assert.deepEqual([...b.entries()], [...a.entries()]);
    assert.equal(b.size, a.size);
    for (const [k, v] of a.entries()) assert.equal(b.get(k), v);
    frozen.push([b, b.keys()]);
  }
  for (const [m, keys] of frozen) assert.deepEqual(m.keys(), keys, 'a map of an ended burst changed');
});

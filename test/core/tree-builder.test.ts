import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BugError } from '../../src/core/errors.js';
import { type Mutation, type Node, applyMutations, emptyRoot, walkTree } from '../../src/core/tree.js';
import { TreeBuilder } from '../../src/core/tree-builder.js';
import { type ValueReader, ValueRef } from '../../src/core/value.js';

const reader: ValueReader = {
  readSync: () => { throw new Error('not read in this test'); },
  read: () => Promise.reject(new Error('not read in this test')),
  peek: () => undefined,
  readInto: () => Promise.reject(new Error('not read in this test')),
};

/** Everything observable about a tree (and its sizes at every node), as plain data. */
function dump(root: Node): unknown[] {
  const out: unknown[] = [];
  for (const [p, n] of walkTree(root)) {
    const v = n.value instanceof ValueRef ? `ref:${n.value.file}:${n.value.offset}:${n.value.length}` : Buffer.from(n.value).toString('hex');
    out.push([p, v, n.createRev, n.modRev, n.version, n.childrenRev, n.seq, n.ephemeralOwner ?? null, n.size, n.perms ?? null, n.children.size]);
  }
  return out;
}

/**
 * Random valid commits over a small namespace (so paths collide: overwrites,
 * deletes of directories, re-creation, sequential children, perms, moves of
 * values in value files), each commit built against the tree as it is.
 */
function history(seed: number, commits: number): Mutation[][] {
  let s = seed >>> 0 || 1;
  const rnd = (n: number): number => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s % n;
  };
  const names = ['a', 'b', 'c', 'name-of-sixteen1', 'zz', 'q0000000001', 'q0000000007'];
  let root = emptyRoot();
  const out: Mutation[][] = [];
  let refOffset = 0;
  for (let c = 1; c <= commits; c++) {
    const muts: Mutation[] = [];
    let staged = root;
    const count = 1 + rnd(rnd(4) === 0 ? 40 : 4);
    for (let k = 0; k < count; k++) {
      const paths = [...walkTree(staged)].map(([p]) => p);
      const pick = paths[rnd(paths.length)]!;
      const kind = rnd(12);
      let m: Mutation | undefined;
      if (kind < 6) {
        // put: under an existing node (new or overwrite), or the root's own value
        const child = pick === '/' ? `/${names[rnd(names.length)]}` : `${pick}/${names[rnd(names.length)]}`;
        const target = rnd(10) === 0 ? '/' : child;
        const value = rnd(5) === 0 ? new ValueRef(reader, 1 + rnd(3), refOffset++, 10, 0) : new Uint8Array([c & 255, k & 255, rnd(256)]);
        m = { op: 'put', path: target, value, ...(rnd(4) === 0 ? { ephemeralOwner: `s${rnd(3)}` } : {}), ...(rnd(4) === 0 ? { seq: true } : {}) };
      } else if (kind < 9) {
        if (pick !== '/') m = { op: 'del', path: pick };
      } else if (kind < 11) {
        m = { op: 'perms', path: pick, perms: rnd(2) === 0 ? [`n${rnd(5)}`] : [`n${rnd(5)}`, 'r1'] };
      } else {
        // a move: of the ref the node holds now (applies), or of another place (changes nothing)
        const n = [...walkTree(staged)].find(([p]) => p === pick)![1];
        const from = n.value instanceof ValueRef && rnd(3) !== 0 ? { file: n.value.file, offset: n.value.offset } : { file: 9, offset: rnd(50) };
        m = { op: 'move', path: pick, from, value: new ValueRef(reader, 5, refOffset++, 10, 0) };
      }
      if (m === undefined) continue;
      muts.push(m);
      staged = applyMutations(staged, c, [m]);
    }
    // A run of puts under one parent (the shape of a multi filling a directory).
    if (rnd(5) === 0) {
      const dir = `/${names[rnd(names.length)]}`;
      if (staged.children.get(dir.slice(1)) !== undefined) {
        const n = 5 + rnd(60);
        const order = [...Array(n).keys()];
        if (rnd(2) === 0) order.reverse();
        for (const i of order) muts.push({ op: 'put', path: `${dir}/k${String(i).padStart(3, '0')}`, value: new Uint8Array([i]) });
      }
    }
    root = applyMutations(root, c, muts);
    out.push(muts);
  }
  return out;
}

test('the builder gives the tree applyMutations gives, on random histories, frozen at random points', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.integer({ min: 1, max: 120 }), fc.integer({ min: 0, max: 5 }), (seed, commits, freezeEvery) => {
    const h = history(seed, commits);
    let root = emptyRoot();
    const b = new TreeBuilder(root);
    for (let i = 0; i < h.length; i++) {
      root = applyMutations(root, i + 1, h[i]!);
      b.apply(i + 1, h[i]!);
      if (freezeEvery > 0 && (i + seed) % freezeEvery === 0) assert.deepEqual(dump(b.root()), dump(root), `after commit ${i + 1}`);
    }
    assert.deepEqual(dump(b.root()), dump(root));
  }), { numRuns: 150 });
});

test('the builder starts from an existing tree and leaves that tree as it was', () => {
  const h = history(42, 200);
  let base = emptyRoot();
  for (let i = 0; i < 100; i++) base = applyMutations(base, i + 1, h[i]!);
  const before = dump(base);
  let expect = base;
  const b = new TreeBuilder(base);
  for (let i = 100; i < 200; i++) {
    expect = applyMutations(expect, i + 1, h[i]!);
    b.apply(i + 1, h[i]!);
  }
  const mid = b.root();
  assert.deepEqual(dump(mid), dump(expect));
  assert.deepEqual(dump(base), before);
  // A root handed out stays as it was while the builder goes on.
  b.apply(201, [{ op: 'put', path: '/fresh', value: new Uint8Array([1]) }, { op: 'del', path: '/fresh' }, { op: 'put', path: '/other', value: new Uint8Array([2]) }]);
  assert.deepEqual(dump(mid), dump(expect));
  assert.deepEqual(dump(b.root()), dump(applyMutations(expect, 201, [{ op: 'put', path: '/fresh', value: new Uint8Array([1]) }, { op: 'del', path: '/fresh' }, { op: 'put', path: '/other', value: new Uint8Array([2]) }])));
});

test('a large directory changed in many places is merged, and gives the same map', () => {
  let root = emptyRoot();
  const fill: Mutation[] = [];
  for (let i = 0; i < 5000; i++) fill.push({ op: 'put', path: `/d/n${String(i).padStart(5, '0')}`, value: new Uint8Array([i & 255]) });
  root = applyMutations(root, 1, [{ op: 'put', path: '/d', value: new Uint8Array(0) }, ...fill]);
  const change: Mutation[] = [];
  for (let i = 0; i < 5000; i += 7) change.push(i % 2 === 0 ? { op: 'del', path: `/d/n${String(i).padStart(5, '0')}` } : { op: 'put', path: `/d/n${String(i).padStart(5, '0')}`, value: new Uint8Array([9]) });
  for (let i = 5000; i < 5600; i++) change.push({ op: 'put', path: `/d/m${i}`, value: new Uint8Array([7]) });
  const b = new TreeBuilder(root);
  b.apply(2, change);
  assert.deepEqual(dump(b.root()), dump(applyMutations(root, 2, change)));
});

test('a mutation that does not apply throws the BugError applyMutations throws', () => {
  const root = applyMutations(emptyRoot(), 1, [{ op: 'put', path: '/a', value: new Uint8Array(0) }]);
  const bad: Mutation[][] = [
    [{ op: 'put', path: '/missing/child', value: new Uint8Array(0) }],
    [{ op: 'del', path: '/b' }],
    [{ op: 'del', path: '/a/b/c' }],
    [{ op: 'perms', path: '/nope', perms: ['n0'] }],
    [{ op: 'del', path: '/' }],
  ];
  for (const muts of bad) {
    assert.throws(() => applyMutations(root, 2, muts), BugError);
    assert.throws(() => new TreeBuilder(root).apply(2, muts), BugError);
  }
  // A move of a missing node changes nothing, in both.
  const move: Mutation[] = [{ op: 'move', path: '/x/y', from: { file: 1, offset: 0 }, value: new ValueRef(reader, 2, 0, 1, 0) }];
  const b = new TreeBuilder(root);
  b.apply(2, move);
  assert.deepEqual(dump(b.root()), dump(applyMutations(root, 2, move)));
});

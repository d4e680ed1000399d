import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Workspace } from '../../src/core/ops.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { applyMutations, emptyRoot, type Node, walkTree } from '../../src/core/tree.js';
import { bytesOf } from '../../src/core/value.js';

/** The naive model: a map from path to value; parents implied by children. */
class Model {
  nodes = new Map<string, { value: string; version: number }>([['/', { value: '', version: 0 }]]);
  private parent(p: string): string { const i = p.lastIndexOf('/'); return i <= 0 ? '/' : p.slice(0, i); }
  private ancestors(p: string): string[] { const out: string[] = []; while (p !== '/') { p = this.parent(p); out.push(p); } return out; }
  children(p: string): string[] {
    const pre = p === '/' ? '/' : p + '/';
    return [...this.nodes.keys()].filter((k) => k !== '/' && k.startsWith(pre) && !k.slice(pre.length).includes('/')).map((k) => k.slice(pre.length)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  }
  set(p: string, v: string): void {
    for (const a of this.ancestors(p)) if (!this.nodes.has(a)) this.nodes.set(a, { value: '', version: 1 });
    const old = this.nodes.get(p);
    this.nodes.set(p, { value: v, version: (old?.version ?? 0) + 1 });
  }
  create(p: string, v: string): string {
    if (this.nodes.has(p)) return 'EXISTS';
    this.set(p, v);
    return 'ok';
  }
  delete(p: string, recursive: boolean): string {
    if (!this.nodes.has(p)) return 'false';
    if (!recursive && this.children(p).length > 0) return 'NOT_EMPTY';
    for (const k of [...this.nodes.keys()]) if (k === p || k.startsWith(p + '/')) this.nodes.delete(k);
    return 'true';
  }
}

const seg = fc.constantFrom('a', 'b', 'c', 'dd', 'é', 'z');
const path = fc.array(seg, { minLength: 1, maxLength: 4 }).map((s) => '/' + s.join('/'));
type Cmd =
  | { t: 'set'; p: string; v: string }
  | { t: 'create'; p: string; v: string }
  | { t: 'delete'; p: string; r: boolean }
  | { t: 'get'; p: string }
  | { t: 'list'; p: string };
const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  fc.record({ t: fc.constant('set' as const), p: path, v: fc.string({ maxLength: 4 }) }),
  fc.record({ t: fc.constant('create' as const), p: path, v: fc.string({ maxLength: 4 }) }),
  fc.record({ t: fc.constant('delete' as const), p: path, r: fc.boolean() }),
  fc.record({ t: fc.constant('get' as const), p: path }),
  fc.record({ t: fc.constant('list' as const), p: fc.oneof(path, fc.constant('/')) }),
);

function code(f: () => unknown): string {
  try { return String(f() ?? 'ok'); } catch (e) { if (e instanceof LatchkeyError) return e.code; throw e; }
}

test('tree: random operations match the naive model, and the mutation log rebuilds the tree', () => {
  fc.assert(fc.property(fc.array(cmd, { maxLength: 80 }), (cmds) => {
    const m = new Model();
    let root: Node = emptyRoot();
    let replayed: Node = emptyRoot();
    let rev = 0;
    const enc = (s: string): Uint8Array => Buffer.from(s);
    for (const c of cmds) {
      const ws = new Workspace(root, rev + 1);
      switch (c.t) {
        case 'set': ws.set(c.p, enc(c.v)); m.set(c.p, c.v); break;
        case 'create': assert.equal(code(() => { ws.create(c.p, enc(c.v)); }), m.create(c.p, c.v)); break;
        case 'delete': assert.equal(code(() => ws.delete(c.p, { recursive: c.r })), m.delete(c.p, c.r)); break;
        case 'get': {
          const n = ws.get(c.p);
          const e = m.nodes.get(c.p);
          assert.equal(n === undefined, e === undefined, c.p);
          if (n && e) { assert.equal(Buffer.from(bytesOf(n.value)).toString(), e.value); assert.equal(n.version, e.version); }
          break;
        }
        case 'list': {
          const want = m.nodes.has(c.p) ? m.children(c.p).join(',') : 'NOT_FOUND';
          assert.equal(code(() => ws.list(c.p).names.join(',')), want);
          break;
        }
      }
      if (ws.mutations.length > 0) {
        rev++;
        root = ws.root;
        replayed = applyMutations(replayed, rev, ws.mutations);
      }
    }
    // every node agrees, and size bookkeeping is exact
    const all = [...walkTree(root)];
    assert.equal(root.size, all.length);
    assert.equal(all.length, m.nodes.size);
    assert.deepEqual([...walkTree(replayed)].map(([p, n]) => [p, Buffer.from(bytesOf(n.value)).toString(), n.modRev, n.version, n.childrenRev]),
      all.map(([p, n]) => [p, Buffer.from(bytesOf(n.value)).toString(), n.modRev, n.version, n.childrenRev]));
  }), { numRuns: 300 });
});

test('tree: revisions and stats follow writes', () => {
  const ws1 = new Workspace(emptyRoot(), 1);
  ws1.set('/a/b', Buffer.from('x'));
  const a1 = ws1.get('/a')!;
  assert.deepEqual([a1.createRev, a1.modRev, a1.version, a1.childrenRev], [1, 1, 1, 1]);
  const ws2 = new Workspace(ws1.root, 2);
  ws2.set('/a/b', Buffer.from('y'));
  assert.equal(ws2.get('/a')!.childrenRev, 1, 'a value write does not change the parent listing');
  assert.deepEqual([ws2.get('/a/b')!.modRev, ws2.get('/a/b')!.version], [2, 2]);
  const ws3 = new Workspace(ws2.root, 3);
  ws3.create('/a/c', Buffer.from(''));
  assert.equal(ws3.get('/a')!.childrenRev, 3);
  assert.equal(ws1.get('/a/b')!.version, 1, 'old roots are untouched');
});

test('tree: sequential names count per parent and ephemeral nodes take no children', () => {
  const ws = new Workspace(emptyRoot(), 1);
  assert.equal(ws.create('/q/n-', Buffer.from(''), { sequential: true }), '/q/n-0000000000');
  assert.equal(ws.create('/q/n-', Buffer.from(''), { sequential: true }), '/q/n-0000000001');
  ws.delete('/q/n-0000000001');
  assert.equal(ws.create('/q/m-', Buffer.from(''), { sequential: true }), '/q/m-0000000002');
  ws.create('/e', Buffer.from(''), { owner: 's1' });
  assert.throws(() => ws.set('/e/x', Buffer.from('')), (e: unknown) => LatchkeyError.is(e, 'INVALID_ARGUMENT'));
  // the sequential counter survives log replay
  const again = applyMutations(emptyRoot(), 1, ws.mutations);
  assert.equal(again.children.get('q')!.seq, 3);
});

test('tree: conditional writes fail with CONFLICT and change nothing', () => {
  const ws = new Workspace(emptyRoot(), 1);
  ws.set('/k', Buffer.from('1'));
  for (const f of [
    () => ws.set('/k', Buffer.from('2'), { ifVersion: 2 }),
    () => ws.set('/k', Buffer.from('2'), { ifAbsent: true }),
    () => ws.set('/k', Buffer.from('2'), { ifModRev: 7 }),
    () => ws.set('/new', Buffer.from('2'), { ifVersion: 1 }),
    () => ws.delete('/k', { ifVersion: 3 }),
    () => ws.check('/k', { exists: false }),
  ]) assert.throws(f, (e: unknown) => LatchkeyError.is(e, 'CONFLICT'));
  assert.equal(ws.mutations.length, 1);
  ws.set('/k', Buffer.from('2'), { ifVersion: 1, ifModRev: 1 });
  ws.set('/fresh', Buffer.from('2'), { ifVersion: 0 });
  assert.equal(ws.mutations.length, 3);
});

test('tree: perms are metadata: modRev moves, version does not, and replay keeps them', () => {
  const ws = new Workspace(emptyRoot(), 1);
  ws.set('/p/q', Buffer.from('v'));
  const ws2 = new Workspace(ws.root, 2);
  ws2.setPerms('/p/q', ['n0', 'r5']);
  ws2.setPerms('/', ['n0']);
  const q = ws2.get('/p/q')!;
  assert.deepEqual(q.perms, ['n0', 'r5']);
  assert.deepEqual([q.modRev, q.version], [2, 1]);
  assert.throws(() => ws2.setPerms('/nope', ['n0']), (e: unknown) => LatchkeyError.is(e, 'NOT_FOUND'));
  const again = applyMutations(applyMutations(emptyRoot(), 1, ws.mutations), 2, ws2.mutations);
  assert.deepEqual(again.children.get('p')!.children.get('q')!.perms, ['n0', 'r5']);
  assert.deepEqual(again.perms, ['n0']);
  ws2.set('/p/q', Buffer.from('w'));
  assert.deepEqual(ws2.get('/p/q')!.perms, ['n0', 'r5'], 'a value write keeps perms');
});

test('tree: a run of puts under one parent applied in one pass equals applying them one by one', () => {
  const putArb = fc.record({
    parent: fc.constantFrom('', '/a', '/a/b'),
    name: fc.constantFrom('x', 'y', 'z', 'q0000000001', 'q0000000007'),
    value: fc.string({ maxLength: 3 }),
    seq: fc.boolean(),
  });
  fc.assert(fc.property(fc.array(putArb, { maxLength: 30 }), (puts) => {
    let base = emptyRoot();
    base = applyMutations(base, 1, [{ op: 'put', path: '/a', value: new Uint8Array(0) }]);
    base = applyMutations(base, 2, [{ op: 'put', path: '/a/b', value: new Uint8Array(0) }]);
    const muts = puts.map((p) => ({ op: 'put' as const, path: `${p.parent}/${p.name}`, value: new TextEncoder().encode(p.value), ...(p.seq ? { seq: true } : {}) }));
    const together = applyMutations(base, 3, muts);
    let apart = base;
    for (const m of muts) apart = applyMutations(apart, 3, [m]);
    const dump = (r: Node): unknown[] => [...walkTree(r)].map(([p, n]) => [p, Buffer.from(bytesOf(n.value)).toString(), n.createRev, n.modRev, n.version, n.childrenRev, n.seq, n.size]);
    assert.deepEqual(dump(together), dump(apart));
  }), { numRuns: 300 });
});

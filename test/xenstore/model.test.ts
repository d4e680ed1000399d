/**
 * Random XenStore request sequences over a real socket, checked against a
 * naive model of XenStore semantics (a map from path to value and perms):
 * WRITE creates parents that inherit perms, MKDIR keeps values, RM needs the
 * parent, DIRECTORY lists sorted children, GET/SET_PERMS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { open } from '../../src/index.js';
import { startXenstoreServer } from '../../src/xenstore/server.js';
import { XsClient, XsReplyError } from './client.js';

type Req =
  | { t: 'write'; p: string; v: string }
  | { t: 'mkdir'; p: string }
  | { t: 'rm'; p: string }
  | { t: 'read'; p: string }
  | { t: 'dir'; p: string }
  | { t: 'getperms'; p: string }
  | { t: 'setperms'; p: string; perms: string[] };

interface MNode { value: string; perms: string[] }

class Model {
  nodes = new Map<string, MNode>([['/', { value: '', perms: ['n0'] }]]);

  private parent(p: string): string {
    const i = p.lastIndexOf('/');
    return i === 0 ? '/' : p.slice(0, i);
  }

  private create(p: string, value: string): void {
    const chain: string[] = [];
    for (let q = p; !this.nodes.has(q); q = this.parent(q)) chain.unshift(q);
    for (const q of chain) this.nodes.set(q, { value: q === p ? value : '', perms: [...this.nodes.get(this.parent(q))!.perms] });
  }

  apply(r: Req): string {
    const n = this.nodes.get(r.p);
    switch (r.t) {
      case 'write':
        if (n) n.value = r.v;
        else this.create(r.p, r.v);
        return 'OK';
      case 'mkdir':
        if (!n) this.create(r.p, '');
        return 'OK';
      case 'rm':
        if (r.p === '/') return 'EINVAL';
        if (!this.nodes.has(this.parent(r.p))) return 'ENOENT';
        for (const k of [...this.nodes.keys()]) if (k === r.p || k.startsWith(r.p + '/')) this.nodes.delete(k);
        return 'OK';
      case 'read':
        return n ? `=${n.value}` : 'ENOENT';
      case 'dir': {
        if (!n) return 'ENOENT';
        const prefix = r.p === '/' ? '/' : r.p + '/';
        const kids = [...this.nodes.keys()].filter((k) => k !== '/' && k.startsWith(prefix) && !k.slice(prefix.length).includes('/')).map((k) => k.slice(prefix.length));
        return kids.sort().join(',');
      }
      case 'getperms':
        return n ? n.perms.join(',') : 'ENOENT';
      case 'setperms':
        if (!n) return 'ENOENT';
        n.perms = [...r.perms];
        return 'OK';
    }
  }
}

async function perform(c: XsClient, r: Req): Promise<string> {
  try {
    switch (r.t) {
      case 'write': await c.write(r.p, r.v); return 'OK';
      case 'mkdir': await c.mkdir(r.p); return 'OK';
      case 'rm': await c.rm(r.p); return 'OK';
      case 'read': return `=${await c.read(r.p)}`;
      case 'dir': return (await c.directory(r.p)).join(',');
      case 'getperms': return (await c.getPerms(r.p)).join(',');
      case 'setperms': await c.setPerms(r.p, r.perms); return 'OK';
    }
  } catch (e) {
    if (e instanceof XsReplyError) return e.errno;
    throw e;
  }
}

const seg = fc.constantFrom('a', 'b', 'c');
const pathArb = fc.array(seg, { minLength: 0, maxLength: 3 }).map((s) => '/' + s.join('/'));
const nonRoot = fc.array(seg, { minLength: 1, maxLength: 3 }).map((s) => '/' + s.join('/'));
const perm = fc.tuple(fc.constantFrom('n', 'r', 'w', 'b'), fc.integer({ min: 0, max: 9 })).map(([l, d]) => `${l}${d}`);
const req: fc.Arbitrary<Req> = fc.oneof(
  fc.record({ t: fc.constant('write' as const), p: nonRoot, v: fc.constantFrom('', 'x', 'y') }),
  fc.record({ t: fc.constant('mkdir' as const), p: nonRoot }),
  fc.record({ t: fc.constant('rm' as const), p: pathArb }),
  fc.record({ t: fc.constant('read' as const), p: pathArb }),
  fc.record({ t: fc.constant('dir' as const), p: pathArb }),
  fc.record({ t: fc.constant('getperms' as const), p: pathArb }),
  fc.record({ t: fc.constant('setperms' as const), p: pathArb, perms: fc.array(perm, { minLength: 1, maxLength: 3 }) }),
);

async function modelRun(what: string, openStore: (dir: string, run: number) => Promise<EmbeddedStoreLike>): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-xs-model-'));
  let run = 0;
  try {
    await fc.assert(fc.asyncProperty(fc.array(req, { maxLength: 40 }), async (reqs) => {
      const store = await openStore(dir, run++);
      const server = await startXenstoreServer(store, { socketPath: path.join(dir, 'xs.sock') });
      const c = await XsClient.connect(server.socketPath);
      try {
        const m = new Model();
        for (const r of reqs) assert.equal(await perform(c, r), m.apply(r), `${what}: ${JSON.stringify(r)}`);
      } finally {
        await c.close();
        await server.close();
        await store.close();
      }
    }), { numRuns: 60 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

type EmbeddedStoreLike = Awaited<ReturnType<typeof open>>;

test('xenstore model: random request sequences answer as the XenStore model says', async () => {
  await modelRun('in memory', () => open());
});

test('xenstore model with every value on disk (inline threshold 0, no cache): the same answers, read through value files', async () => {
  let onDisk = 0;
  await modelRun('values on disk', async (dir, run) => {
    const s = await open(path.join(dir, `data-${run}`), { inlineValueBytes: 0, cacheBytes: 0, durability: 'none' });
    const close = s.close.bind(s);
    return Object.assign(s, {
      close: async () => {
        onDisk += (s.stats().storage as { values: { valuesWritten: number } }).values.valuesWritten;
        await close();
      },
    });
  });
  assert.ok(onDisk > 0, 'values were written to value files');
});
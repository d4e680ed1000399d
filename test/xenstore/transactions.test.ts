/**
 * Transactions from several connections, interleaved at random, checked
 * against a model of oxenstored's rule: a transaction reads its start
 * snapshot plus its own writes; at TRANSACTION_END its requests are replayed
 * against the committed state and it commits when every response is the
 * same. latchkey may refuse a little more often than that rule (it compares
 * the underlying operations: RM's "was there a node", MKDIR's "was it
 * absent"), and always commits read-only transactions — but it must never
 * commit a transaction the rule refuses, every committed transaction must
 * leave exactly the replayed state, and every response must be the model's.
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

type Op =
  | { t: 'write'; p: string; v: string }
  | { t: 'mkdir'; p: string }
  | { t: 'rm'; p: string }
  | { t: 'read'; p: string }
  | { t: 'dir'; p: string };

type Step = { conn: number; a: 'begin' } | { conn: number; a: 'end'; commit: boolean } | { conn: number; a: 'op'; op: Op };

type State = Map<string, string>;

function parent(p: string): string {
  const i = p.lastIndexOf('/');
  return i === 0 ? '/' : p.slice(0, i);
}

/** Applies `op` to `s` (mutating it) and returns the response as a string. */
function apply(s: State, op: Op): string {
  switch (op.t) {
    case 'write':
    case 'mkdir': {
      if (op.t === 'mkdir' && s.has(op.p)) return 'OK';
      for (let q = parent(op.p); !s.has(q); q = parent(q)) s.set(q, '');
      s.set(op.p, op.t === 'write' ? op.v : '');
      return 'OK';
    }
    case 'rm':
      if (!s.has(parent(op.p))) return 'ENOENT';
      for (const k of [...s.keys()]) if (k === op.p || k.startsWith(op.p + '/')) s.delete(k);
      return 'OK';
    case 'read':
      return s.has(op.p) ? `=${s.get(op.p)}` : 'ENOENT';
    case 'dir': {
      if (!s.has(op.p)) return 'ENOENT';
      const prefix = op.p === '/' ? '/' : op.p + '/';
      return [...s.keys()].filter((k) => k !== '/' && k.startsWith(prefix) && !k.slice(prefix.length).includes('/')).map((k) => k.slice(prefix.length)).sort().join(',');
    }
  }
}

async function perform(c: XsClient, op: Op, tx: number): Promise<string> {
  try {
    switch (op.t) {
      case 'write': await c.write(op.p, op.v, tx); return 'OK';
      case 'mkdir': await c.mkdir(op.p, tx); return 'OK';
      case 'rm': await c.rm(op.p, tx); return 'OK';
      case 'read': return `=${await c.read(op.p, tx)}`;
      case 'dir': return (await c.directory(op.p, tx)).join(',');
    }
  } catch (e) {
    if (e instanceof XsReplyError) return e.errno;
    throw e;
  }
}

const seg = fc.constantFrom('a', 'b');
const p = fc.array(seg, { minLength: 1, maxLength: 3 }).map((s) => '/' + s.join('/'));
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ t: fc.constant('write' as const), p, v: fc.constantFrom('1', '2') }),
  fc.record({ t: fc.constant('mkdir' as const), p }),
  fc.record({ t: fc.constant('rm' as const), p }),
  fc.record({ t: fc.constant('read' as const), p }),
  fc.record({ t: fc.constant('dir' as const), p: fc.oneof(p, fc.constant('/')) }),
);
const CONNS = 3;
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ conn: fc.nat(CONNS - 1), a: fc.constant('begin' as const) }) },
  { weight: 3, arbitrary: fc.record({ conn: fc.nat(CONNS - 1), a: fc.constant('end' as const), commit: fc.constantFrom(true, true, true, false) }) },
  { weight: 8, arbitrary: fc.record({ conn: fc.nat(CONNS - 1), a: fc.constant('op' as const), op }) },
);

interface ModelTx { id: number; view: State; ops: Array<{ op: Op; resp: string }>; writes: boolean }

test('xenstore transactions: interleaved transactions never commit against the replay rule, and leave the replayed state', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-xs-tx-'));
  let commits = 0;
  let refusals = 0;
  try {
    await fc.assert(fc.asyncProperty(fc.array(step, { minLength: 20, maxLength: 80 }), async (steps) => {
      const store = await open();
      const server = await startXenstoreServer(store, { socketPath: path.join(dir, 'xs.sock') });
      const clients = await Promise.all(Array.from({ length: CONNS }, () => XsClient.connect(server.socketPath)));
      try {
        let state: State = new Map([['/', '']]);
        const openTx: Array<ModelTx | undefined> = Array(CONNS).fill(undefined);
        for (const s of steps) {
          const c = clients[s.conn]!;
          const t = openTx[s.conn];
          if (s.a === 'begin') {
            if (t !== undefined) continue;
            openTx[s.conn] = { id: await c.start(), view: new Map(state), ops: [], writes: false };
          } else if (s.a === 'end') {
            if (t === undefined) continue;
            openTx[s.conn] = undefined;
            let outcome = 'OK';
            try {
              await c.end(t.id, s.commit);
            } catch (e) {
              if (!(e instanceof XsReplyError)) throw e;
              outcome = e.errno;
            }
            if (!s.commit) {
              assert.equal(outcome, 'OK');
              continue;
            }
            const replay = new Map(state);
            const same = t.ops.every(({ op: o, resp }) => apply(replay, o) === resp);
            if (outcome === 'OK') {
              // A read-only transaction commits at its snapshot; one with writes only when the replay agrees.
              if (t.writes) {
                assert.ok(same, `committed a transaction whose replay differs: ${JSON.stringify(t.ops)}`);
                state = replay;
              }
              commits++;
            } else {
              assert.equal(outcome, 'EAGAIN');
              refusals++;
            }
          } else {
            const resp = await perform(c, s.op, t?.id ?? 0);
            if (t !== undefined) {
              assert.equal(resp, apply(t.view, s.op), `in transaction: ${JSON.stringify(s.op)}`);
              t.ops.push({ op: s.op, resp });
              if (s.op.t !== 'read' && s.op.t !== 'dir') t.writes = true;
            } else {
              assert.equal(resp, apply(state, s.op), `outside: ${JSON.stringify(s.op)}`);
            }
          }
        }
        // The whole committed state, read back.
        for (const [k, v] of state) if (k !== '/') assert.equal(await clients[0]!.read(k), v, k);
        const all = new Set<string>();
        const walk = async (d: string): Promise<void> => {
          for (const n of await clients[0]!.directory(d)) {
            const child = d === '/' ? `/${n}` : `${d}/${n}`;
            all.add(child);
            await walk(child);
          }
        };
        await walk('/');
        assert.deepEqual([...all].sort(), [...state.keys()].filter((k) => k !== '/').sort());
      } finally {
        for (const c of clients) await c.close();
        await server.close();
        await store.close();
      }
    }), { numRuns: 150 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // The schedules must exercise both outcomes, or the property proves little.
  t.diagnostic(`commits ${commits}, refusals (EAGAIN) ${refusals}`);
  assert.ok(commits > 20 && refusals > 5, `commits ${commits}, refusals ${refusals}`);
});

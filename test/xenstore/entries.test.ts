import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { open } from '../../src/index.js';
import { EmbeddedStore } from '../../src/engine/store.js';
import { EntryCounts, recount } from '../../src/xenstore/entries.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

type Step =
  | { kind: 'put'; path: string }
  | { kind: 'perms'; path: string; owner: number }
  | { kind: 'del'; path: string };

test('entry counts follow every commit (with and without deletes; a path twice in one commit) as a recount does', async () => {
  const path = fc.constantFrom('/a', '/a/b', '/a/b/c', '/d', '/d/e');
  const step: fc.Arbitrary<Step> = fc.oneof(
    fc.record({ kind: fc.constant('put' as const), path }),
    fc.record({ kind: fc.constant('perms' as const), path, owner: fc.integer({ min: 0, max: 3 }) }),
    fc.record({ kind: fc.constant('del' as const), path }),
  );
  await fc.assert(fc.asyncProperty(fc.array(fc.array(step, { minLength: 1, maxLength: 4 }), { maxLength: 12 }), async (commits) => {
    const s = await open();
    assert.ok(s instanceof EmbeddedStore);
    const e = s.internals;
    const counts = new EntryCounts(e.visibleRoot);
    const unhook = e.onCommit((c) => counts.apply(c));
    for (const steps of commits) {
      await e.write('', [], {}, (ws) => {
        for (const st of steps) {
          if (st.kind === 'put') ws.write({ op: 'set', path: st.path, value: enc('v') });
          else if (st.kind === 'del') ws.write({ op: 'delete', path: st.path, recursive: true });
          else if (ws.get(st.path) !== undefined) ws.write({ op: 'setPerms', path: st.path, perms: [`n${st.owner}`] });
        }
      });
      assert.deepEqual(counts.snapshot(), recount(e.visibleRoot));
    }
    unhook();
    await s.close();
  }), { numRuns: 60 });
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '../../src/client/store.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { serve } from '../../src/server/server.js';

test('limits: maxLocks counts the locks held or awaited by all the sessions of a connection together', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-limits-'));
  const backing = (await open()) as EmbeddedStore;
  const server = await serve(backing, { socket: path.join(dir, 's.sock'), limits: { maxLocks: 3 } });
  const c = await connect(`unix://${server.socketPath!}`);
  try {
    const other = c.session({ name: 'second' });
    const a = await c.lock('/a');
    const b = await other.lock('/b');
    const waiting = other.lock('/a'); // awaited: counts too
    while (backing.lockTable().waiting.length === 0) await new Promise((r) => setTimeout(r, 2));
    await assert.rejects(c.lock('/c'), (e: unknown) => LatchkeyError.is(e, 'QUOTA') && /on this connection/.test(e.message));
    await assert.rejects(other.lock('/d'), (e: unknown) => LatchkeyError.is(e, 'QUOTA'));
    await b.release();
    const d = await other.lock('/d');
    await a.release();
    await (await waiting).release();
    await d.release();
    // A second connection has its own count.
    const c2 = await connect(`unix://${server.socketPath!}`);
    const held = await Promise.all(['/x', '/y', '/z'].map((p) => c2.lock(p)));
    await assert.rejects(c2.lock('/w'), (e: unknown) => LatchkeyError.is(e, 'QUOTA'));
    const mine = await c.lock('/w');
    await mine.release();
    for (const l of held) await l.release();
    await c2.close();
  } finally {
    await c.close();
    await server.close();
    await backing.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatchkeyError } from '../../src/core/errors.js';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import type { StoreView } from '../../src/engine/view.js';
import { type Store, connect, serve } from '../../src/index.js';
import { removeDir, tempDir } from '../storage/helpers.js';

const code = (c: string) => (e: unknown): boolean => e instanceof LatchkeyError && e.code === c;

test('view: synchronous reads on one snapshot agree with the async reads, and later commits do not show', async () => {
  const s = await open();
  await s.set('/a/x', 'one');
  await s.set('/a/y', 'two');
  await s.create('/a/z');
  const rev = s.revision;
  {
    using v = s.view!();
    assert.equal(v.revision, rev);
    const e = v.get('/a/x')!;
    const async = (await s.get('/a/x'))!;
    assert.equal(e.text(), 'one');
    assert.deepEqual(e.stat, async.stat);
    assert.equal(e.revision, rev);
    assert.equal(v.exists('/a/y'), true);
    assert.equal(v.exists('/nope'), false);
    assert.equal(v.get('/nope'), undefined);
    assert.deepEqual(v.stat('/a'), (await s.get('/a'))!.stat);
    assert.equal(v.stat('/nope'), undefined);
    assert.deepEqual([...v.list('/a')], ['x', 'y', 'z']);
    const page = v.list('/a', { limit: 2 });
    assert.deepEqual([...page], ['x', 'y']);
    assert.equal(page.more, true);
    assert.deepEqual([...v.list('/a', { after: 'x' })], ['y', 'z']);
    // A commit after the view was taken is not seen by it, and a value handed out is a copy.
    await s.set('/a/x', 'changed');
    await s.delete('/a/y');
    assert.equal(v.get('/a/x')!.text(), 'one');
    assert.equal(v.exists('/a/y'), true);
    // (a value set from a string is stored as a Buffer, whose slice() is a view: it must still be copied)
    e.value[0] = 0;
    assert.equal(v.get('/a/x')!.text(), 'one');
    async.value[0] = 0;
    assert.equal((await s.get('/a/x'))!.text(), 'changed');
    assert.equal(v.get('/a/x')!.text(), 'one');
    assert.equal(s.view!().get('/a/x')!.text(), 'changed');
  }
  await s.close();
});

test('view: bad paths and options fail as the async reads do; a closed view or store fails CLOSED', async () => {
  const s = await open();
  await s.set('/a', 'x');
  const v = s.view!();
  assert.throws(() => v.get('relative'), code('INVALID_PATH'));
  assert.throws(() => v.exists('/a//b'), code('INVALID_PATH'));
  await assert.rejects(s.get('relative'), code('INVALID_PATH'));
  assert.throws(() => v.list('/missing'), code('NOT_FOUND'));
  assert.throws(() => v.list('/', { limit: 0 }), code('INVALID_ARGUMENT'));
  v.close();
  assert.equal(v.closed, true);
  assert.throws(() => v.get('/a'), code('CLOSED'));
  const w = s.view!();
  await s.close();
  assert.throws(() => w.get('/a'), code('CLOSED'));
  assert.throws(() => s.view!(), code('CLOSED'));
});

test('view: a durable store reopened gives its view the recovered data; a remote store has none', async () => {
  const dir = (await tempDir()).path;
  try {
    const s = await open(dir);
    await s.set('/k', 'durable');
    await s.close();
    const r = await open(dir);
    assert.equal(r.view!().get('/k')!.text(), 'durable');
    const srv = await serve(r as EmbeddedStore, { socket: `${dir}/s.sock` });
    const c = await connect(`unix://${dir}/s.sock`);
    assert.equal((c as Store).view, undefined);
    await c.close();
    await srv.close();
    await r.close();
  } finally {
    await removeDir(dir);
  }
});

test('view and server: values stored on disk and not cached are read by a view (synchronously) and by a remote get (the asynchronous way)', async () => {
  const dir = (await tempDir()).path;
  try {
    // Every value goes to a value file and nothing is cached: each read goes to the disk.
    const s = await open(dir, { inlineValueBytes: 0, cacheBytes: 0 });
    await s.set('/v/a', 'on disk');
    await s.set('/v/b', 'x'.repeat(5000));
    const v = s.view!();
    assert.equal(v.get('/v/a')!.text(), 'on disk');
    assert.equal(v.get('/v/b')!.value.length, 5000);
    // What the server's synchronous get sees: not in memory, so that get goes the asynchronous way.
    assert.equal((v as StoreView).getInMemory('/v/a'), false);
    const srv = await serve(s as EmbeddedStore, { socket: `${dir}/s.sock` });
    const c = await connect(`unix://${dir}/s.sock`);
    const [a, b, none] = await Promise.all([c.get('/v/a'), c.get('/v/b'), c.get('/v/none')]);
    assert.equal(a!.text(), 'on disk');
    assert.equal(b!.text(), 'x'.repeat(5000));
    assert.equal(none, undefined);
    assert.equal(await c.exists('/v/a'), true);
    await c.close();
    await srv.close();
    await s.close();
  } finally {
    await removeDir(dir);
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AsyncDisposableStack, AsyncDisposableStackPolyfill, DisposableStack, DisposableStackPolyfill } from '../../src/util/disposable.js';

// The polyfill is what runs on Node 20; the exported stacks are the runtime's when it has them.
for (const [name, Sync, Async] of [
  ['polyfill', DisposableStackPolyfill, AsyncDisposableStackPolyfill],
  ['exported', DisposableStack, AsyncDisposableStack],
] as const) {
  test(`disposable (${name}): a stack releases what it holds once, in reverse order, and every cleanup runs even when one throws`, () => {
    const order: string[] = [];
    const s = new Sync();
    s.defer(() => order.push('a'));
    const r = s.use({ [Symbol.dispose]: () => order.push('b') });
    assert.equal(typeof r[Symbol.dispose], 'function');
    s.adopt(7, (v) => order.push(`c${v}`));
    s.defer(() => { throw new Error('boom'); });
    s.use(null);
    assert.throws(() => s.dispose(), /boom/);
    assert.deepEqual(order, ['c7', 'b', 'a']);
    assert.equal(s.disposed, true);
    s.dispose(); // twice: nothing more
    assert.deepEqual(order, ['c7', 'b', 'a']);
    assert.throws(() => s.defer(() => {}), ReferenceError);
  });

  test(`disposable (${name}): two failing cleanups: the later error suppresses the earlier one`, () => {
    const s = new Sync();
    s.defer(() => { throw new Error('first registered'); });
    s.defer(() => { throw new Error('last registered'); });
    assert.throws(() => s.dispose(), (e: unknown) => {
      const x = e as { name: string; error: Error; suppressed: Error };
      return x.name === 'SuppressedError' && x.error.message === 'first registered' && x.suppressed.message === 'last registered';
    });
  });

  test(`disposable (${name}): an async stack awaits each cleanup in turn; move() hands everything to a new stack`, async () => {
    const order: string[] = [];
    const s = new Async();
    s.defer(async () => {
      await new Promise((r) => setImmediate(r));
      order.push('slow, registered first');
    });
    s.use({ [Symbol.asyncDispose]: async () => { order.push('async'); } });
    s.use({ [Symbol.dispose]: () => { order.push('sync'); } });
    const moved = s.move();
    assert.equal(s.disposed, true);
    await s.disposeAsync();
    assert.deepEqual(order, []);
    await moved.disposeAsync();
    assert.deepEqual(order, ['sync', 'async', 'slow, registered first']);
  });

  test(`disposable (${name}): await using disposes at the end of the block`, async () => {
    let released = false;
    {
      await using s = new Async();
      s.defer(() => { released = true; });
      assert.equal(released, false);
    }
    assert.equal(released, true);
  });
}

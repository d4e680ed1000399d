import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { compareNames, isPrefixPath, parentPath, parsePath, pathsOverlap } from '../../src/core/path.js';
import { LatchkeyError } from '../../src/core/errors.js';

function invalid(p: unknown, reason: RegExp): void {
  assert.throws(() => parsePath(p), (e: unknown) => e instanceof LatchkeyError && e.code === 'INVALID_PATH' && reason.test(e.message));
}

test('path: valid paths parse into segments', () => {
  assert.deepEqual(parsePath('/'), []);
  assert.deepEqual(parsePath('/a'), ['a']);
  assert.deepEqual(parsePath('/a/b c/ü'), ['a', 'b c', 'ü']);
  assert.deepEqual(parsePath('/' + 'x'.repeat(255)), ['x'.repeat(255)]);
});

test('path: each invalid form names its reason', () => {
  invalid('', /empty path/);
  invalid('a/b', /absolute/);
  invalid('/a/', /trailing/);
  invalid('/a//b', /empty segment/);
  invalid('/a/./b', /'\.'/);
  invalid('/a/..', /'\.\.'/);
  invalid('/a\0b', /NUL/);
  invalid('/' + 'x'.repeat(256), /255 bytes/);
  invalid('/' + 'é'.repeat(128), /255 bytes/); // 256 bytes in UTF-8
  invalid('/' + Array.from({ length: 20 }, () => 'y'.repeat(250)).join('/'), /4096 bytes/);
  invalid('/a\ud800', /surrogate/);
  invalid(42, /string/);
  invalid(undefined, /string/);
});

test('path: helpers', () => {
  assert.equal(parentPath('/a/b'), '/a');
  assert.equal(parentPath('/a'), '/');
  assert.ok(isPrefixPath('/', '/x'));
  assert.ok(isPrefixPath('/a', '/a/b'));
  assert.ok(!isPrefixPath('/a', '/ab'));
  assert.ok(pathsOverlap('/a/b', '/a'));
  assert.ok(!pathsOverlap('/a/b', '/a/c'));
});

test('path: compareNames is code point (UTF-8 byte) order', () => {
  fc.assert(fc.property(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' }), (a, b) => {
    const byBytes = Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
    assert.equal(Math.sign(compareNames(a, b)), byBytes);
  }), { numRuns: 2000 });
  assert.ok(compareNames('\uffff', '\u{10000}') < 0); // JS '<' says otherwise
});

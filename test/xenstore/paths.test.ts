import { test } from 'node:test';
import assert from 'node:assert/strict';
import { XsError } from '../../src/xenstore/errno.js';
import { isSpecialPath, parseDomid, parsePerms, presentPath, resolvePath } from '../../src/xenstore/paths.js';

const HOME = '/local/domain/0';

function einval(f: () => unknown): void {
  assert.throws(f, (e: unknown) => e instanceof XsError && e.errno === 'EINVAL');
}

test('paths: absolute paths pass through; relative ones resolve under the home', () => {
  assert.deepEqual(resolvePath('/a/b-c_d@e/9', HOME), { abs: '/a/b-c_d@e/9', relative: false });
  assert.deepEqual(resolvePath('/', HOME), { abs: '/', relative: false });
  assert.deepEqual(resolvePath('x/y', HOME), { abs: '/local/domain/0/x/y', relative: true });
});

test('paths: bad characters, empty, doubled or trailing slashes are EINVAL', () => {
  for (const p of ['', '/a b', '/a.b', '/a//b', '/a/', 'x/', '/ä', '/a\u0000b', '/a:b', '//']) einval(() => resolvePath(p, HOME));
});

test('paths: length limits (3072 absolute, 2048 relative) and latchkey segment limit', () => {
  const seg = 'a'.repeat(200);
  const abs3072 = ('/' + seg).repeat(15) + '/' + 'b'.repeat(3072 - 15 * 201 - 1);
  assert.equal(abs3072.length, 3072);
  assert.equal(resolvePath(abs3072, HOME).abs, abs3072);
  einval(() => resolvePath(abs3072 + 'c', HOME));
  const rel2048 = (seg + '/').repeat(10) + 'c'.repeat(38);
  assert.equal(rel2048.length, 2048);
  assert.equal(resolvePath(rel2048, HOME).relative, true);
  einval(() => resolvePath(rel2048 + 'c', HOME));
  einval(() => resolvePath('/' + 'a'.repeat(256), HOME));
  assert.equal(resolvePath('/' + 'a'.repeat(255), HOME).abs.length, 256);
});

test('paths: events are presented relative when the watch was relative', () => {
  assert.equal(presentPath('/local/domain/0/x/y', HOME, true), 'x/y');
  assert.equal(presentPath('/local/domain/0/x/y', HOME, false), '/local/domain/0/x/y');
  assert.equal(presentPath('/local/domain/00', HOME, true), '/local/domain/00');
  assert.equal(presentPath('/local/domain/0', HOME, true), '/local/domain/0');
});

test('paths: special watch paths', () => {
  assert.equal(isSpecialPath('@releaseDomain'), true);
  assert.equal(isSpecialPath('@introduceDomain'), true);
  assert.equal(isSpecialPath('@'), false);
  assert.equal(isSpecialPath('@a b'), false);
  assert.equal(isSpecialPath('/a'), false);
});

test('paths: permissions are [nrwb]<domid>, at least one, normalised', () => {
  assert.deepEqual(parsePerms(['n0', 'r5', 'w65535', 'b7']), ['n0', 'r5', 'w65535', 'b7']);
  assert.deepEqual(parsePerms(['r007']), ['r7']);
  for (const bad of [[], ['x0'], ['r'], ['r65536'], ['r-1'], ['R1'], ['r1a'], ['']]) einval(() => parsePerms(bad));
});

test('paths: domain ids are decimal 0..65535', () => {
  assert.equal(parseDomid('0'), 0);
  assert.equal(parseDomid('65535'), 65535);
  for (const bad of [undefined, '', '-1', '65536', 'x', '1.5', '123456']) einval(() => parseDomid(bad));
});

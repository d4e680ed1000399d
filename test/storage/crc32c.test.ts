import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32c } from '../../src/storage/crc32c.js';

test('crc32c: known vectors (RFC 3720 B.4 and the "123456789" check value)', () => {
  assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  const inc = new Uint8Array(32).map((_, i) => i);
  assert.equal(crc32c(inc), 0x46dd794e);
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

test('crc32c: pieces chained equal the whole, at every split point', () => {
  const b = new Uint8Array(100).map((_, i) => (i * 37 + 11) & 0xff);
  const whole = crc32c(b);
  for (let i = 0; i <= b.length; i++) {
    assert.equal(crc32c(b, crc32c(b, 0, 0, i), i, b.length), whole, `split at ${i}`);
  }
});

test('crc32c: every single-bit flip changes the checksum', () => {
  const b = new Uint8Array(64).map((_, i) => i * 7);
  const c = crc32c(b);
  for (let i = 0; i < b.length * 8; i++) {
    b[i >> 3]! ^= 1 << (i & 7);
    assert.notEqual(crc32c(b), c);
    b[i >> 3]! ^= 1 << (i & 7);
  }
});

test('crc32c: the native implementation (when it loaded) equals the JS one at every length, offset and start value, and is the one in use', async () => {
  const { crc32cJs, crc32cImplementation, NATIVE_MIN_BYTES } = await import('../../src/storage/crc32c.js');
  // The native package is a dependency with a prebuilt binary for this platform: it must load here.
  assert.equal(crc32cImplementation, 'native');
  const b = new Uint8Array(70_000).map((_, i) => (i * 131 + (i >> 8)) & 0xff);
  for (const len of [0, 1, 7, 8, 255, NATIVE_MIN_BYTES, 1000, 4096, 65_536]) {
    for (const start of [0, 1, 5]) {
      for (const crc of [0, 0xe3069283]) {
        assert.equal(crc32c(b, crc, start, start + len), crc32cJs(b, crc, start, start + len), `len ${len} start ${start} crc ${crc}`);
      }
    }
  }
  // A view into a larger buffer.
  const view = b.subarray(100, 5100);
  assert.equal(crc32c(view), crc32cJs(b, 0, 100, 5100));
  assert.equal(crc32c(new Uint8Array(300).fill(0xff)), crc32cJs(new Uint8Array(300).fill(0xff)));
});

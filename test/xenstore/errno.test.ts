import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BugError, LatchkeyError } from '../../src/core/errors.js';
import { XsError, toErrno } from '../../src/xenstore/errno.js';

test('errno: latchkey codes become the errno names xenstored sends', () => {
  const cases: Array<[LatchkeyError['code'], string]> = [
    ['NOT_FOUND', 'ENOENT'], ['EXISTS', 'EEXIST'], ['NOT_EMPTY', 'ENOTEMPTY'], ['INVALID_PATH', 'EINVAL'],
    ['INVALID_ARGUMENT', 'EINVAL'], ['CONFLICT', 'EAGAIN'], ['LOCKED', 'EBUSY'], ['QUOTA', 'EQUOTA'],
    ['TOO_LARGE', 'E2BIG'], ['PERMISSION', 'EACCES'], ['READ_ONLY', 'EROFS'], ['CLOSED', 'EIO'],
  ];
  for (const [code, errno] of cases) assert.deepEqual(toErrno(new LatchkeyError(code, 'x')), { errno, expected: true }, code);
});

test('errno: protocol refusals keep their errno; bugs and foreign errors are EIO and flagged', () => {
  assert.deepEqual(toErrno(new XsError('ENOSYS')), { errno: 'ENOSYS', expected: true });
  assert.deepEqual(toErrno(new BugError('broken')), { errno: 'EIO', expected: false });
  assert.deepEqual(toErrno(new TypeError('x')), { errno: 'EIO', expected: false });
  assert.deepEqual(toErrno('a string'), { errno: 'EIO', expected: false });
});

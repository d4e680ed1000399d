/**
 * The one place where failures become XenStore errno names (the edge
 * conversion, as oxenstored's `input_handle_error`). Handlers throw
 * `XsError` for protocol-level refusals and let LatchkeyErrors from the
 * engine through; `toErrno` maps both. Anything else is a bug: it maps to
 * EIO so the connection survives, and the caller reports it.
 */
import { LatchkeyError } from '../core/errors.js';
import type { XsErrno } from './wire.js';

export class XsError extends Error {
  constructor(readonly errno: XsErrno, message: string = errno) {
    super(message);
    this.name = 'XsError';
  }
}

export function xsError(errno: XsErrno, message?: string): XsError {
  return new XsError(errno, message);
}

const byCode: Partial<Record<LatchkeyError['code'], XsErrno>> = {
  NOT_FOUND: 'ENOENT',
  EXISTS: 'EEXIST',
  NOT_EMPTY: 'ENOTEMPTY',
  INVALID_PATH: 'EINVAL',
  INVALID_ARGUMENT: 'EINVAL',
  CONFLICT: 'EAGAIN',
  LOCKED: 'EBUSY',
  QUOTA: 'EQUOTA',
  TOO_LARGE: 'E2BIG',
  PERMISSION: 'EACCES',
  AUTH: 'EACCES',
  READ_ONLY: 'EROFS',
};

/** The errno name for a failure, and whether it was expected (false: a bug to report). */
export function toErrno(e: unknown): { errno: XsErrno; expected: boolean } {
  if (e instanceof XsError) return { errno: e.errno, expected: true };
  if (e instanceof LatchkeyError && e.code !== 'INTERNAL') return { errno: byCode[e.code] ?? 'EIO', expected: true };
  return { errno: 'EIO', expected: false };
}

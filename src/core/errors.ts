/**
 * Errors. One class, one string `code`, `cause` passed through.
 *
 * Each edge converts once: storage turns errno into a LatchkeyError, the
 * server turns a LatchkeyError into a wire status, the client turns it back.
 * Broken invariants are bugs, not expected failures: they throw BugError
 * (code INTERNAL) through `assert`, and are never caught to be retried.
 */

export const ErrorCodes = [
  'NOT_FOUND', 'EXISTS', 'NOT_EMPTY', 'INVALID_PATH', 'INVALID_ARGUMENT',
  'CONFLICT', 'LOCKED', 'DEADLOCK', 'TIMEOUT', 'ABORTED', 'LOCK_LOST',
  'SESSION_EXPIRED', 'NOT_RECOVERABLE', 'QUOTA', 'TOO_LARGE', 'PERMISSION', 'AUTH', 'CLOSED',
  'CONNECTION_LOST', 'PROTOCOL', 'CORRUPT', 'READ_ONLY', 'IO', 'INTERNAL',
  'COMPACTED', 'BUSY',
] as const;

export type ErrorCode = typeof ErrorCodes[number];

const codeSet: ReadonlySet<string> = new Set(ErrorCodes);

export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && codeSet.has(s);
}

export interface ErrorDetails {
  /** The path the error is about, when there is one. */
  path?: string;
  cause?: unknown;
  /** Extra structured facts (e.g. the cycle of a DEADLOCK, the file of a CORRUPT). */
  info?: Record<string, unknown>;
}

export class LatchkeyError extends Error {
  readonly code: ErrorCode;
  readonly path: string | undefined;
  readonly info: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'LatchkeyError';
    this.code = code;
    this.path = details.path;
    this.info = details.info;
  }

  static is(e: unknown, code?: ErrorCode): e is LatchkeyError {
    return e instanceof LatchkeyError && (code === undefined || e.code === code);
  }
}

/** A broken invariant: a bug in latchkey, never an expected failure. */
export class BugError extends LatchkeyError {
  constructor(message: string) {
    super('INTERNAL', `latchkey bug: ${message}`);
    this.name = 'BugError';
  }
}

export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new BugError(message);
}

export function invalidArgument(message: string): LatchkeyError {
  return new LatchkeyError('INVALID_ARGUMENT', message);
}

/** The one error every call on a closed store fails with. */
export function storeClosed(): LatchkeyError {
  return new LatchkeyError('CLOSED', 'the store is closed');
}

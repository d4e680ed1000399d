/**
 * The object layer's typed errors. They are LatchkeyErrors (one `code`, as
 * everywhere in latchkey) with a name of their own, so a caller can test
 * `e instanceof GhostError` or `LatchkeyError.is(e, 'NOT_FOUND')`.
 */
import { LatchkeyError } from '../core/errors.js';

/** A field of a ghost was read or written: `await obj.load()` first. */
export class GhostError extends LatchkeyError {
  constructor(className: string, oid: string | undefined, field: string) {
    super('INVALID_ARGUMENT', `${className} ${oid ?? '(new)'} is a ghost: await obj.load() before reading or writing .${field}`, { info: { oid, className, field } });
    this.name = 'GhostError';
  }
}

/** A stored object names a class this process has not registered with @persistent. */
export class UnknownClassError extends LatchkeyError {
  readonly className: string;
  constructor(className: string, oid: string) {
    super('NOT_FOUND', `unknown persistent class '${className}' (object ${oid}): register it with @persistent('${className}') before loading`, { info: { className, oid } });
    this.name = 'UnknownClassError';
    this.className = className;
  }
}

/** A field value cannot be stored; `path` names it, e.g. `Account(1f3a…).history[2].cb`. */
export class NotSerializableError extends LatchkeyError {
  constructor(fieldPath: string, why: string) {
    super('INVALID_ARGUMENT', `cannot store ${fieldPath}: ${why}`, { path: fieldPath, info: { fieldPath } });
    this.name = 'NotSerializableError';
  }
}

export function notInTransaction(what: string): LatchkeyError {
  return new LatchkeyError('INVALID_ARGUMENT', `${what} outside a transaction of its connection: do it inside db.transaction() or conn.transaction()`);
}

/**
 * A multi after the edge, as a backend runs it on a workspace: the checked
 * ops become write ops (an ephemeral create names the session as its
 * owner), applied in order; an op that fails names its index in the error.
 */
import type { MultiResult } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { WriteOp, Workspace } from '../core/ops.js';
import type { CheckedMultiOp } from './args.js';

/** The checked multi ops as write ops; `owner` is the session an ephemeral create belongs to. */
export function multiWriteOps(ops: readonly CheckedMultiOp[], owner: string): WriteOp[] {
  return ops.map((o): WriteOp => {
    switch (o.op) {
      case 'create': {
        const { ephemeral, ...rest } = o;
        return { ...rest, sequential: o.sequential === true, ...(ephemeral ? { owner } : {}) };
      }
      case 'delete': return { ...o, recursive: o.recursive === true };
      default: return o;
    }
  });
}

/** Applies `writes` to `ws` in order; the first failure throws, its message and info naming the op's index. */
export function applyMultiOps(ws: Workspace, writes: readonly WriteOp[]): MultiResult['results'] {
  return writes.map((w, i) => {
    try {
      return ws.write(w);
    } catch (e) {
      if (e instanceof LatchkeyError) {
        throw new LatchkeyError(e.code, `multi op ${i} (${w.op} ${w.path}): ${e.message}`, { path: e.path ?? w.path, cause: e, info: { ...e.info, index: i } });
      }
      throw e;
    }
  }) as MultiResult['results'];
}

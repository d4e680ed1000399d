/** Small helpers shared by the client's classes. */
import type { WriteOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';

export type WriteArgs = { fence?: number; wait?: boolean };

export function fenceOf(f: WriteOptions['fence']): number | undefined {
  if (f === undefined) return undefined;
  return typeof f === 'number' ? f : f.token;
}

export function writeArgs(o: WriteOptions): WriteArgs {
  const a: WriteArgs = {};
  const f = fenceOf(o.fence);
  if (f !== undefined) a.fence = f;
  if (o.wait !== undefined) a.wait = o.wait;
  return a;
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new LatchkeyError('ABORTED', 'aborted', { cause: signal.reason });
}

/** Shared state of one remote store: the current link and everything tied to it. */

export function backoff(attempt: number, signal: AbortSignal | undefined): Promise<void> {
  const ms = Math.random() * Math.min(50, 0.1 * 2 ** attempt);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new LatchkeyError('ABORTED', 'aborted', { cause: signal?.reason }));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Small helpers shared by the client's classes. */
import type { WriteOptions } from '../api.js';

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


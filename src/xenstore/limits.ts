/**
 * Per-connection limits of the XenStore adapter. Defaults follow oxenstored's
 * (quota-maxsize 2048, 10 transactions, 128 watches, 1,024 outstanding
 * requests); every one is configurable through startXenstoreServer.
 */
import { invalidArgument } from '../core/errors.js';
import { DEFAULT_PATH_LIMITS, type PathLimits } from './paths.js';
import { PAYLOAD_MAX } from './wire.js';

export interface XenstoreLimits extends PathLimits {
  /** Largest value WRITE accepts, in bytes (E2BIG beyond). */
  readonly maxValueBytes: number;
  /** Open transactions per connection (EQUOTA beyond). */
  readonly maxTransactions: number;
  /** Requests recorded in one transaction (EQUOTA beyond). */
  readonly maxTransactionOps: number;
  /** Watches per connection (EQUOTA beyond). */
  readonly maxWatches: number;
  /** Requests received and not yet answered; reading from the socket pauses at this many. */
  readonly maxOutstanding: number;
  /** Output (replies and watch events) a client has not read; beyond it the connection is closed. */
  readonly maxQueuedOutputBytes: number;
  /** Simultaneous connections; more are closed at once. */
  readonly maxConnections: number;
  /** Largest payload accepted (XENSTORE_PAYLOAD_MAX); a bigger header closes the connection. */
  readonly maxPayload: number;
}

export const DEFAULT_LIMITS: XenstoreLimits = {
  ...DEFAULT_PATH_LIMITS,
  maxValueBytes: 2048,
  maxTransactions: 10,
  maxTransactionOps: 10_000,
  maxWatches: 128,
  maxOutstanding: 1024,
  maxQueuedOutputBytes: 8 * 1024 * 1024,
  maxConnections: 1024,
  maxPayload: PAYLOAD_MAX,
};

export function resolveLimits(partial: Partial<XenstoreLimits> = {}): XenstoreLimits {
  const out = { ...DEFAULT_LIMITS };
  for (const [k, v] of Object.entries(partial)) {
    if (v === undefined) continue;
    if (!(k in DEFAULT_LIMITS)) throw invalidArgument(`unknown XenStore limit ${JSON.stringify(k)}`);
    if (!Number.isSafeInteger(v) || (v as number) < 1) throw invalidArgument(`XenStore limit ${k} must be a positive integer`);
    (out as Record<string, number>)[k] = v as number;
  }
  if (out.maxPayload > PAYLOAD_MAX) throw invalidArgument(`maxPayload cannot exceed ${PAYLOAD_MAX} (clients cannot read more)`);
  return out;
}

/**
 * Limits of the XenStore adapter. Defaults follow oxenstored's
 * (oxenstored.conf: quota-maxentity 1000, quota-maxsize 2048,
 * quota-transaction 10, quota-maxrequests 1024, quota-maxwatch 100,
 * quota-maxoutstanding 1024); every one is configurable through
 * startXenstoreServer.
 *
 * The quotas — entries, transactions, requests per transaction, watches —
 * apply to unprivileged domains only, counted per domain over all its
 * connections; dom0 (every Unix-socket connection) is exempt, as in
 * oxenstored. The value size, path, payload and flow-control bounds apply
 * to everyone.
 */
import { invalidArgument } from '../core/errors.js';
import { DEFAULT_PATH_LIMITS, type PathLimits } from './paths.js';
import { PAYLOAD_MAX } from './wire.js';

export interface XenstoreLimits extends PathLimits {
  /** Largest value WRITE accepts, in bytes (E2BIG beyond). */
  readonly maxValueBytes: number;
  /** Nodes an unprivileged domain may own (EQUOTA beyond). */
  readonly maxEntries: number;
  /** Open transactions of an unprivileged domain (EQUOTA beyond). */
  readonly maxTransactions: number;
  /** Requests recorded in one transaction of an unprivileged domain (EQUOTA beyond). */
  readonly maxTransactionOps: number;
  /** Watches of an unprivileged domain (EQUOTA beyond). */
  readonly maxWatches: number;
  /** Simultaneous connections of one guest domain through its transport; more are closed at once. */
  readonly maxDomainConnections: number;
  /** Requests received and not yet answered; reading from the socket pauses at this many. */
  readonly maxOutstanding: number;
  /** Output (replies and watch events) a client has not read; beyond it the connection is closed. */
  readonly maxQueuedOutputBytes: number;
  /** Simultaneous connections on the dom0 socket; more are closed at once. */
  readonly maxConnections: number;
  /** Largest payload accepted (XENSTORE_PAYLOAD_MAX); a bigger header closes the connection. */
  readonly maxPayload: number;
}

export const DEFAULT_LIMITS: XenstoreLimits = {
  ...DEFAULT_PATH_LIMITS,
  maxValueBytes: 2048,
  maxEntries: 1000,
  maxTransactions: 10,
  maxTransactionOps: 1024,
  maxWatches: 100,
  maxDomainConnections: 16,
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

/**
 * Limits: everything a peer can make the server hold is bounded. The server
 * enforces them; the welcome message tells the client the values in force so
 * it can refuse an oversized request before sending it. docs/protocol.md
 * lists them with the error each one gives.
 */

export interface Limits {
  /** Largest frame body accepted (bytes). A larger frame is skipped unread and its request gets TOO_LARGE. */
  readonly maxFrame: number;
  /** Largest value in a set/create (bytes) → TOO_LARGE. */
  readonly maxValue: number;
  /** Requests a connection may have unanswered at once → QUOTA. */
  readonly maxInFlight: number;
  /** Open transactions per connection → QUOTA. */
  readonly maxTransactions: number;
  /** Operations per transaction or multi → QUOTA. */
  readonly maxTxOps: number;
  /** Locks held or waited for per connection, all its sessions together → QUOTA. */
  readonly maxLocks: number;
  /** Watches per connection → QUOTA. */
  readonly maxWatches: number;
  /** Events queued for one watch whose client is not reading; past it the watch ends with a resumable QUOTA. */
  readonly maxWatchQueue: number;
  /** Sessions per connection, the connection's own included → QUOTA. */
  readonly maxSessions: number;
  /** Connections the server accepts at once; the next is answered with QUOTA and closed. */
  readonly maxConnections: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxFrame: 4 * 1024 * 1024,
  maxValue: 1024 * 1024,
  maxInFlight: 4096,
  maxTransactions: 1024,
  maxTxOps: 10_000,
  maxLocks: 10_000,
  maxWatches: 1024,
  maxWatchQueue: 10_000,
  maxSessions: 10_000,
  maxConnections: 10_000,
};

/** Before the handshake only a hello is expected: anything bigger is an error and closes the connection. */
export const MAX_HELLO_FRAME = 64 * 1024;

/** The largest frame a server sends (a reply or a push); clients accept frames up to this size. */
export const MAX_REPLY_FRAME = 64 * 1024 * 1024;

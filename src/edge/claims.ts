/**
 * What a resuming client claims of a session it carries to another server
 * (docs/protocol.md, "Resume"): shared by the served-store seam
 * (server/served.ts) and the etcd backend's adoption (etcd/adopt.ts), which
 * may not import each other.
 */
import type { LockMode } from '../api.js';

/** A lock wait the resuming client still awaits: its handle, what it asked for, and the time it has left. */
export interface WaitClaim {
  readonly handle: number;
  readonly path: string;
  readonly mode: LockMode;
  readonly wait?: boolean;
  readonly timeoutMs?: number;
}

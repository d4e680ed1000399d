/**
 * The server-wide memory budget (`serve --max-memory`).
 *
 * Per-connection limits bound what one connection may hold, but not what
 * many do together (one connection may hold 1,024 transactions of 10,000
 * operations, thousands of 4 MiB requests in flight, 8 MiB of unread
 * replies). The budget counts, across all connections, the bytes the server
 * holds for its clients: request bodies being served, open transactions'
 * writes and reads (the commit-size measure plus a per-operation overhead),
 * replies queued on sockets, and events queued on watches.
 *
 * When a charge takes the total past the budget, the connection holding
 * the most is closed with `bye BUSY` naming what it held (its sessions die
 * as in any connection loss), and so on while the total is still over;
 * a request that finds the server over budget and is not from that
 * connection fails BUSY. Nothing acknowledged is touched: a commit already
 * applied finishes, and only new work is refused. So a well-behaved client
 * keeps being served while hostile ones are cut off.
 *
 * The store's own data (the tree, the watch history window, the log
 * buffers) is not counted: it is bounded by the store's own limits, and a
 * large store must not make the server refuse work.
 */
import { LatchkeyError } from '../core/errors.js';

export const DEFAULT_MAX_MEMORY = 1024 * 1024 * 1024;

export interface BudgetHolder {
  /** Bytes this holder is charged for now. */
  readonly charged: number;
  /** Closes the holder (a connection) because the server is over its budget. */
  evict(error: LatchkeyError): void;
}

export class MemoryBudget {
  used = 0;
  evictions = 0;
  refusals = 0;
  private readonly holders = new Set<BudgetHolder>();

  constructor(readonly max: number) {}

  add(h: BudgetHolder): void {
    this.holders.add(h);
  }

  remove(h: BudgetHolder): void {
    this.holders.delete(h);
  }

  /** Adds (or with a negative n removes) bytes; past the budget, evicts the largest holders. */
  charge(n: number): void {
    this.used += n;
    if (n > 0 && this.used > this.max) this.evict();
  }

  private evict(): void {
    while (this.used > this.max) {
      let top: BudgetHolder | undefined;
      for (const h of this.holders) if (top === undefined || h.charged > top.charged) top = h;
      if (top === undefined || top.charged === 0) return;
      this.holders.delete(top);
      this.evictions++;
      top.evict(new LatchkeyError('BUSY', `the server is over its memory budget of ${this.max} bytes; this connection held ${top.charged}`, { info: { held: top.charged, budget: this.max } }));
    }
  }

  /** BUSY when the server is over its budget (new work waits for memory to be freed). */
  admit(): void {
    if (this.used <= this.max) return;
    this.refusals++;
    throw new LatchkeyError('BUSY', `the server is over its memory budget (${this.used} of ${this.max} bytes); try again`, { info: { used: this.used, budget: this.max } });
  }

  stats(): Record<string, number> {
    return { memoryBudget: this.max, memoryCharged: this.used, memoryEvictions: this.evictions, memoryRefusals: this.refusals };
  }
}

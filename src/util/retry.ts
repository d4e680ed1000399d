/**
 * `transaction(fn)` as every Store implements it (one copy for the embedded
 * store and the client; timers live here, not in core, which has none).
 *
 * The policy is FoundationDB's retry loop: run `fn` in a fresh transaction
 * and commit; on CONFLICT, back off and run it again, until a deadline —
 * not a small count, which contention uses up in milliseconds.
 *  1. Deadline: `timeoutMs` (default 5 s) from the call; no attempt starts
 *     after it. `retries`, when given, bounds the re-runs as well; whichever
 *     comes first ends the loop.
 *  2. Backoff: full jitter, a uniform wait in [0, min(cap, base · 2ⁿ)) after
 *     the n-th conflict. Base and cap suit the transport: an embedded store's
 *     conflicts come from its own event loop, so waits start below a
 *     millisecond (a turn of the loop) and stay short; a remote client's
 *     rivals are other processes a round trip away, so waits start at a
 *     millisecond and grow to 400 ms: 64 read-modify-write clients on one
 *     counter over the socket made 1.2–4× more increments/s with a 400 ms
 *     cap than with 100 ms (and a 25 ms cap was worse again), on a loaded
 *     2-core machine; FoundationDB's own cap is 1 s.
 *  3. Giving up: CONFLICT, with the last conflict's path, `info.attempts` and
 *     `info.elapsedMs`, and the last conflict as `cause`.
 *  4. Abort: the signal ends the loop at once (ABORTED), also mid-backoff.
 *  5. A turn, so that no one starves. Backoff alone is not fair: a
 *     transaction that reads, thinks and writes keeps losing to rivals that
 *     commit in between, and 16 processes incrementing one counter on a
 *     loaded 2-core machine left one of them giving up after 15 attempts in
 *     5 s. After `TURN_AFTER_CONFLICTS` conflicts (one: under sustained
 *     contention every optimistic run of a caller is doomed while someone
 *     holds the turn, so waiting for a second conflict only wastes a run;
 *     8 clients on one counter made 1.4x more increments/s with one than
 *     with two, at load 18) the loop takes a turn on
 *     the path it conflicted at: an exclusive, non-robust lock
 *     (LockOptions.robust false), waited for in FIFO order with everyone
 *     else's turns, and runs again at once, holding it. Locks are mandatory,
 *     so other sessions' writes under that path wait while the turn is held:
 *     the run that holds it cannot conflict there again. Their commits then
 *     conflict, and they soon queue for the turn themselves: under sustained
 *     contention the rivals take turns in arrival order, as lock elision
 *     falls back to its lock after repeated aborts. A turn that cannot be
 *     had (DEADLOCK against the caller's own locks, NOT_RECOVERABLE, a
 *     transport without locks) is given up with any others this call holds,
 *     and the loop goes on with backoff. So does a call whose commit would
 *     deadlock with another call's turn (each holding a turn the other's
 *     commit waits for): it gives its turns up rather than failing DEADLOCK,
 *     which transaction() without locks of the caller's own never returns.
 *     Turns order calls of different sessions only: locks of one session
 *     never exclude each other, so concurrent calls in one session (an
 *     embedded store's own, or one client's) each get their turn at once
 *     and rely on backoff among themselves, as before. Turns are released
 *     when the call ends, whatever its outcome; a process that dies holding one leaves no
 *     owner-died mark (nothing it protects can be half written: the commit
 *     is atomic).
 * Errors other than CONFLICT end the loop as they are.
 */
import type { Lock, LockOptions, Transaction, TransactionOptions } from '../api.js';
import { LatchkeyError, invalidArgument } from '../core/errors.js';

export interface RetryPolicy {
  /** Backoff ceiling after the first conflict, in ms; doubles per conflict. */
  readonly baseMs: number;
  /** Largest backoff ceiling, in ms. */
  readonly capMs: number;
}

export const EMBEDDED_RETRY: RetryPolicy = { baseMs: 0.1, capMs: 10 };
export const REMOTE_RETRY: RetryPolicy = { baseMs: 1, capMs: 400 };
export const DEFAULT_TRANSACTION_TIMEOUT_MS = 5000;
/** Conflicts after which `transaction()` takes a turn on the conflicting path (note 5). */
export const TURN_AFTER_CONFLICTS = 1;

/** Takes a lock in the transaction's session: how `transaction()` takes a turn. */
export type TakeTurn = (path: string, options: LockOptions) => Promise<Lock>;

/** What `transaction()` did, for stats(). */
export interface RetryCounters {
  /** Calls of transaction(). */
  txRuns: number;
  /** Runs of fn (first runs and re-runs). */
  txAttempts: number;
  /** Re-runs after a CONFLICT. */
  txRetries: number;
  /** Calls that ended in CONFLICT: the deadline or `retries` ran out. */
  txGaveUp: number;
  /** Turns taken (note 5): locks on a path the call kept conflicting at. */
  txTurns: number;
}

export function newRetryCounters(): RetryCounters {
  return { txRuns: 0, txAttempts: 0, txRetries: 0, txGaveUp: 0, txTurns: 0 };
}

/** Is `path` at or under `top`? */
function within(top: string, path: string): boolean {
  return top === '/' || path === top || path.startsWith(top + '/');
}

async function releaseAll(turns: Lock[]): Promise<void> {
  const held = turns.splice(0);
  await Promise.all(held.map((t) => t.release().catch(() => {})));
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new LatchkeyError('ABORTED', 'aborted', { cause: signal.reason });
}

/** Waits `ms` (a turn of the event loop when under a millisecond); ABORTED if the signal fires. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      if (ms < 1) clearImmediate(t as NodeJS.Immediate);
      else clearTimeout(t as NodeJS.Timeout);
      reject(new LatchkeyError('ABORTED', 'aborted', { cause: signal?.reason }));
    };
    const done = (): void => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    const t = ms < 1 ? setImmediate(done) : setTimeout(done, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The jittered wait after the `n`-th conflict (n from 0). */
export function backoffMs(policy: RetryPolicy, n: number): number {
  return Math.random() * Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(n, 30));
}

export async function runTransaction<T>(
  begin: () => Transaction,
  fn: (tx: Transaction) => Promise<T>,
  options: TransactionOptions = {},
  policy: RetryPolicy = EMBEDDED_RETRY,
  counters: RetryCounters = newRetryCounters(),
  takeTurn?: TakeTurn,
): Promise<T> {
  const retries = options.retries;
  if (retries !== undefined && (!Number.isSafeInteger(retries) || retries < 0)) throw invalidArgument('transaction: retries must be a non-negative integer');
  const timeoutMs = options.timeoutMs ?? DEFAULT_TRANSACTION_TIMEOUT_MS;
  if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0) || !Number.isFinite(timeoutMs)) throw invalidArgument('transaction: timeoutMs must be a non-negative number');
  const signal = options.signal;
  const start = Date.now();
  const deadline = start + timeoutMs;
  counters.txRuns++;
  const turns: Lock[] = [];
  try {
    for (let attempt = 0; ; attempt++) {
      throwIfAborted(signal);
      counters.txAttempts++;
      if (attempt > 0) counters.txRetries++;
      const tx = begin();
      let conflict: LatchkeyError;
      let turnsDeadlocked = false;
      try {
        const result = await fn(tx);
        throwIfAborted(signal);
        await tx.commit(signal ? { signal } : {});
        return result;
      } catch (e) {
        await tx.abort();
        if (LatchkeyError.is(e, 'DEADLOCK') && turns.length > 0) {
          // Turns are mandatory locks: two calls each holding a turn and each writing the other's
          // path close a cycle at commit (a transfer between two accounts, each call conflicting
          // first at a different one). The call whose wait closes it gives its turns up, so the
          // other commits, and goes on as after a conflict, backing off before its next turn.
          await releaseAll(turns);
          turnsDeadlocked = true;
          conflict = new LatchkeyError('CONFLICT', `transaction gave its turns up: its commit would have deadlocked with another transaction's (${e.message})`, {
            ...(e.path !== undefined ? { path: e.path } : {}), cause: e,
          });
        } else if (!LatchkeyError.is(e, 'CONFLICT')) {
          throw e;
        } else {
          conflict = e;
        }
      }
      let now = Date.now();
      if (!(retries !== undefined && attempt >= retries) && now < deadline && !turnsDeadlocked) {
        const at = conflict.path;
        if (takeTurn !== undefined && at !== undefined && attempt + 1 >= TURN_AFTER_CONFLICTS && !turns.some((t) => within(t.path, at))) {
          try {
            turns.push(await takeTurn(at, { mode: 'exclusive', robust: false, timeoutMs: Math.max(1, Math.ceil(deadline - now)), ...(signal ? { signal } : {}) }));
            counters.txTurns++;
            continue; // the turn was the wait: run again at once
          } catch (e) {
            if (LatchkeyError.is(e, 'ABORTED')) throw e;
            // TIMEOUT: the deadline passed while queued (given up below). Anything else: no turn
            // to be had now; give up the others too (they may be what closed a cycle) and back off.
            await releaseAll(turns);
            now = Date.now();
          }
        }
      }
      if ((retries !== undefined && attempt >= retries) || now >= deadline) {
        counters.txGaveUp++;
        const attempts = attempt + 1;
        const why = retries !== undefined && attempt >= retries ? `retries (${retries}) used up` : `timeoutMs (${timeoutMs}) passed`;
        throw new LatchkeyError('CONFLICT', `transaction gave up after ${attempts} attempts in ${now - start} ms, ${why}; last conflict: ${conflict.message}`, {
          ...(conflict.path !== undefined ? { path: conflict.path } : {}),
          cause: conflict,
          info: { ...conflict.info, attempts, elapsedMs: now - start },
        });
      }
      await sleep(Math.min(backoffMs(policy, attempt), deadline - now), signal);
    }
  } finally {
    if (turns.length > 0) await releaseAll(turns);
  }
}

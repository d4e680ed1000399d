/**
 * `transaction(fn)` as every Store implements it: run `fn` in a fresh
 * transaction, commit, and on CONFLICT run it again after a jittered
 * exponential backoff (0.1 ms · 2ⁿ, capped at 50 ms), up to `retries`
 * times, honouring an AbortSignal. One copy for the embedded store and the
 * client. (Timers live here, not in core, which has none.)
 */
import type { Transaction, TransactionOptions } from '../api.js';
import { LatchkeyError, invalidArgument } from '../core/errors.js';

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new LatchkeyError('ABORTED', 'aborted', { cause: signal.reason });
}

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

export async function runTransaction<T>(begin: () => Transaction, fn: (tx: Transaction) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
  const retries = options.retries ?? 10;
  if (!Number.isSafeInteger(retries) || retries < 0) throw invalidArgument('transaction: retries must be a non-negative integer');
  const signal = options.signal;
  for (let attempt = 0; ; attempt++) {
    throwIfAborted(signal);
    const tx = begin();
    try {
      const result = await fn(tx);
      throwIfAborted(signal);
      await tx.commit(signal ? { signal } : {});
      return result;
    } catch (e) {
      await tx.abort();
      if (!LatchkeyError.is(e, 'CONFLICT') || attempt >= retries) throw e;
      await backoff(attempt, signal);
    }
  }
}

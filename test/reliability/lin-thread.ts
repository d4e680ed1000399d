/**
 * The soak's linearizability checks, on a worker thread: a search can take
 * seconds, and on the harness's main thread it would stop the harness from
 * reading the clients' journals, answering its own watch and timing its kills
 * (soak-ledger.ts posts each history here; one thread, histories in order).
 *
 * Loaded by the test runner scanning build/test? No: only *.test.js are run;
 * and outside a worker thread this file does nothing.
 */
import { parentPort } from 'node:worker_threads';
import { type CheckResult, type HistoryOp, checkRegister } from './linearizability.js';

export interface LinRequest { readonly id: number; readonly history: readonly HistoryOp[]; readonly budget: number }
export interface LinReply { readonly id: number; readonly result: CheckResult; readonly ms: number }

parentPort?.on('message', (m: LinRequest) => {
  const t = performance.now();
  const result = checkRegister(m.history, { budget: m.budget });
  const reply: LinReply = { id: m.id, result, ms: performance.now() - t };
  parentPort!.postMessage(reply);
});

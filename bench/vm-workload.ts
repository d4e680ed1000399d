/**
 * The "300 parallel VM start and shutdowns" workload (the oxenstored replay
 * patch, seed 002), against any Store. Each VM runs its steps in order; all
 * VMs run concurrently. Callers retry on CONFLICT and count retries.
 */
import type { Store, Transaction } from '../src/api.js';
import { LatchkeyError } from '../src/core/errors.js';

export interface VmResult {
  seconds: number;
  transactions: number;
  retries: number;
  conflictsReturned: number;
}

const CHILD_DIRS = ['cpu', 'memory', 'device', 'error', 'drivers', 'control', 'attr', 'data', 'messages', 'vm-data'];

/** `stores`: one Store, or several (connections): VM d runs on stores[d % n]. */
export async function vmWorkload(stores: Store | readonly Store[], vms = 300): Promise<VmResult> {
  const pool: readonly Store[] = Array.isArray(stores) ? stores : [stores as Store];
  const store = pool[0]!;
  let transactions = 0;
  let retries = 0;
  let conflictsReturned = 0;
  await store.set('/local/domain/0/vm', '/vm/uuid-dom0');

  async function txn(store: Store, fn: (tx: Transaction) => Promise<void>): Promise<void> {
    for (;;) {
      const tx = store.begin();
      try {
        await fn(tx);
        await tx.commit();
        transactions++;
        return;
      } catch (e) {
        await tx.abort();
        if (!LatchkeyError.is(e, 'CONFLICT')) throw e;
        retries++;
        conflictsReturned++;
      }
    }
  }

  async function vm(d: number): Promise<void> {
    const store = pool[d % pool.length]!;
    const D = `/local/domain/${d}`;
    const uuid = `uuid-${d}`;
    await txn(store, async (tx) => {
      await tx.delete(D, { recursive: true });
      for (const c of CHILD_DIRS) await tx.set(`${D}/${c}`, '');
      await tx.set(`${D}/name`, `vm-${d}`);
      await tx.set(`${D}/vm`, `/vm/${uuid}`);
      await tx.set(`${D}/vss`, `/vss/${uuid}`);
      if (!(await tx.exists(`/vm/${uuid}`))) {
        await tx.set(`/vm/${uuid}/uuid`, uuid);
        await tx.set(`/vm/${uuid}/name`, `vm-${d}`);
        await tx.set(`/vm/${uuid}/domains/${d}`, D);
      }
      await tx.set(`/vss/${uuid}`, '');
    });
    for (let i = 0; i < 10; i++) await store.set(`${D}/data/key${i}`, `value-${i}`);
    for (let n = 0; n < 3; n++) {
      await txn(store, async (tx) => {
        await tx.get('/local/domain/0/vm');
        const front = `${D}/device/vbd/${n}`;
        const back = `/local/domain/0/backend/vbd/${d}/${n}`;
        await tx.set(`${front}/backend`, back);
        await tx.set(`${front}/state`, '1');
        await tx.set(`${back}/frontend`, front);
        await tx.set(`${back}/state`, '1');
      });
    }
    await txn(store, async (tx) => {
      await tx.set(`${D}/control/shutdown`, 'halt');
    });
    await txn(store, async (tx) => {
      await tx.delete(`/vm/${uuid}/domains/${d}`, { recursive: true });
      await tx.delete(`/vm/${uuid}`, { recursive: true });
      await tx.delete(`/vss/${uuid}`, { recursive: true });
      await tx.delete(D, { recursive: true });
      await tx.delete(`/local/domain/0/backend/vbd/${d}`, { recursive: true });
    });
  }

  const t0 = performance.now();
  await Promise.all(Array.from({ length: vms }, (_, d) => vm(d + 1)));
  return { seconds: (performance.now() - t0) / 1000, transactions, retries, conflictsReturned };
}

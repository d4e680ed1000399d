/** `npm run bench -- engine`: the embedded engine in memory (no durability). */
import { open } from '../../src/index.js';
import { type BenchOptions, rate, table } from '../util.js';
import { vmWorkload } from '../vm-workload.js';

export default async function engine(o: BenchOptions): Promise<void> {
  const ms = o.quick ? 200 : 2000;
  const s = await open();
  const keys = 10_000;
  for (let i = 0; i < keys; i++) await s.set(`/bench/k${i}`, 'value-0123456789');
  let i = 0;
  const set = await rate(() => s.set(`/bench/k${i++ % keys}`, 'value-0123456789'), ms);
  const get = await rate(() => s.get(`/bench/k${i++ % keys}`), ms);
  for (let d = 0; d < 100; d++) await s.set(`/dir/d${d}`, '');
  const list100 = await rate(() => s.list('/dir'), ms, 100);
  const page = await rate(() => s.list('/bench', { after: `k${(i++ % keys)}`, limit: 100 }), ms, 100);
  const tx = await rate(async () => {
    const t = s.begin();
    const v = await t.get(`/bench/k${i++ % keys}`);
    await t.set(`/bench/k${i % keys}`, v!.value);
    await t.commit();
  }, ms, 100);

  // a directory of 1,000,000 children still takes writes in microseconds
  const big = await open();
  const n = o.quick ? 100_000 : 1_000_000;
  const b0 = performance.now();
  await big.multi(Array.from({ length: 1000 }, (_, j) => ({ op: 'set' as const, path: `/big/c${j}`, value: 'x' })));
  for (let j = 1000; j < n; j += 1000) {
    await big.multi(Array.from({ length: 1000 }, (_, k) => ({ op: 'set' as const, path: `/big/c${j + k}`, value: 'x' })));
  }
  const fill = (performance.now() - b0) / 1000;
  let j = 0;
  const bigSet = await rate(() => big.set(`/big/c${(j++ * 7919) % n}`, 'y'), ms);
  const bigList = await rate(() => big.list('/big', { after: `c${(j++ * 7919) % n}`, limit: 100 }), ms, 100);

  table('engine (in memory, one process)', ['operation', 'ops/s', 'µs/op'], [
    ['get', get.perSec, 1e6 / get.perSec],
    ['set', set.perSec, 1e6 / set.perSec],
    ['list (100 children)', list100.perSec, 1e6 / list100.perSec],
    ['list page of 100 (10k dir)', page.perSec, 1e6 / page.perSec],
    ['transaction (get + set + commit)', tx.perSec, 1e6 / tx.perSec],
    [`set in a ${n.toLocaleString('en-US')}-child dir`, bigSet.perSec, 1e6 / bigSet.perSec],
    [`list page of 100 (${n.toLocaleString('en-US')} dir)`, bigList.perSec, 1e6 / bigList.perSec],
  ]);
  console.log(`(filled the ${n.toLocaleString('en-US')}-child directory in ${fill.toFixed(2)} s)`);
  await big.close();

  const runs = o.quick ? 1 : 3;
  const rows: (string | number)[][] = [];
  // Run 0 is cold (the JIT has not seen the workload yet); the others are warm.
  for (let r = 0; r <= runs; r++) {
    const vmStore = await open();
    const res = await vmWorkload(vmStore, 300);
    const st = vmStore.stats();
    rows.push([r === 0 ? 'cold' : `warm ${r}`, res.seconds.toFixed(3), res.transactions, st.validations, st.replays, st.conflicts, res.retries]);
    await vmStore.close();
  }
  table('300 parallel VM start/shutdowns (in process)', ['run', 'seconds', 'transactions', 'validations', 'replays', 'CONFLICTs returned', 'retries'], rows);
  await s.close();
}

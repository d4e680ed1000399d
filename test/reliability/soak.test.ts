/**
 * The soak harness's self-tests, short (`npm run soak:selftest` runs them
 * longer): real soak runs, in child processes, side by side. A sabotaged run
 * must find violations; a run whose harness is busy before every client kill
 * (so kills find journal lines not yet read) must find none; a run whose
 * clients lose journal lines must end in a harness error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { busyProblems, loseLinesProblems, runSoak, sabotageProblems } from '../fixtures/soak-selftest.js';

test('soak harness: a sabotaged run ends in violations; a busy harness killing clients reports none', async () => {
  const common = ['--seed', String(Date.now() % 1_000_000), '--fuzz-frames', '500', '--minutes', '0.2'];
  const [sabotage, busy] = await Promise.all([runSoak([...common, '--sabotage']), runSoak([...common, '--busy-ms', '500'])]);
  assert.deepEqual(sabotageProblems(sabotage), [], sabotage.output.slice(-4000));
  assert.deepEqual(busyProblems(busy), [], busy.output.slice(-4000));
});

test('soak harness: a client losing journal lines ends the run with a harness error (exit 2), not a verdict', async () => {
  const r = await runSoak(['--seed', String(Date.now() % 1_000_000), '--fuzz-frames', '500', '--minutes', '0.2', '--lose-lines']);
  assert.deepEqual(loseLinesProblems(r), [], r.output.slice(-4000));
});

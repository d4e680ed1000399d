import assert from 'node:assert/strict';
import { test } from 'node:test';
import { alternate, beginRecord, endRecord, median, noteRounds, roundPlan } from '../../bench/util.js';

test('alternate: warm-up rounds first for every side, then measured rounds in turn (ABAB), median per side', async () => {
  const calls: string[] = [];
  const side = (name: string, values: number[]) => ({
    name,
    run: async (round: number) => {
      calls.push(`${name}${round}`);
      return values[round + 1]!;
    },
  });
  const log = console.log;
  console.log = () => {};
  try {
    beginRecord();
    const r = await alternate('t', [side('a', [1000, 5, 1, 3]), side('b', [0, 10, 30, 20])], { rounds: 3, warmup: 1 });
    assert.deepEqual(calls, ['a-1', 'b-1', 'a0', 'b0', 'a1', 'b1', 'a2', 'b2']);
    // the warm-up figure (1000, 0) is dropped
    assert.deepEqual(r.get('a'), { median: 3, values: [5, 1, 3] });
    assert.deepEqual(r.get('b'), { median: 20, values: [10, 30, 20] });
    noteRounds();
    const rec = endRecord()!;
    assert.equal(rec.notes.length, 2);
    assert.match(rec.notes[0]!, /1 warm-up round then 3 measured rounds, alternating/);
    assert.match(rec.notes[1]!, /^Load average \(1 min\) around each comparison: t \d/);
  } finally {
    console.log = log;
  }
});

test('alternate: a missing side keeps its reason, a failing side is reported and takes no further rounds', async () => {
  let failing = 0;
  let ok = 0;
  const r = await alternate('t', [
    { name: 'missing', run: { missing: 'not installed' } },
    { name: 'failing', run: async () => { failing++; throw new Error('boom\nmore'); } },
    { name: 'ok', run: async () => ++ok },
  ], { rounds: 2, warmup: 1 });
  assert.deepEqual(r.get('missing'), { median: 'not installed', values: [] });
  assert.deepEqual(r.get('failing'), { median: 'failed: boom', values: [] });
  assert.equal(failing, 1);
  assert.deepEqual(r.get('ok'), { median: 2.5, values: [2, 3] });
});

test('median and roundPlan', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  assert.ok(Number.isNaN(median([])));
  assert.deepEqual(roundPlan({ quick: true }), { rounds: 1, warmup: 1 });
  assert.deepEqual(roundPlan({ quick: false }), { rounds: 5, warmup: 1 });
  assert.deepEqual(roundPlan({ quick: false }, { rounds: 3 }), { rounds: 3, warmup: 1 });
});

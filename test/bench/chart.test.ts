import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chartable, chartColumns, renderChart } from '../../bench/chart.js';
import type { RecordedTable } from '../../bench/util.js';

const t: RecordedTable = {
  title: 'durable <commits> & more',
  header: ['committers', 'latchkey', 'etcd', 'latchkey/etcd'],
  rows: [
    ['1', 900, 300, '3.00×'],
    ['10', 'pending: locks, issue 4', 1800, '—'],
  ],
  chart: { columns: [1, 2], unit: 'commits/s', log: true },
};

test('chart: one bar per numeric cell, text for the others, escaped labels', () => {
  const svg = renderChart(t);
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  assert.ok(svg.includes('durable &lt;commits&gt; &amp; more'));
  assert.ok(!svg.includes('NaN'));
  // 3 numeric cells → 3 bars (plus the background rect and 2 legend swatches)
  assert.equal((svg.match(/<rect /g) ?? []).length, 1 + 2 + 3);
  assert.ok(svg.includes('pending: locks, issue 4'));
  assert.ok(svg.includes('(log scale)'));
});

test('chart: default column is the first numeric one; nothing numeric means no chart', () => {
  assert.deepEqual(chartColumns({ title: 'x', header: ['op', 'note', 'ops/s'], rows: [['get', 'n/a', 5]] }), [2]);
  assert.equal(chartable({ title: 'x', header: ['op', 'ops/s'], rows: [['get', 'not installed']] }), false);
  assert.equal(chartable({ ...t, chart: false }), false);
  assert.equal(chartable(t), true);
});

test('chart: a linear scale handles a single value and zero', () => {
  const svg = renderChart({ title: 'x', header: ['run', 'seconds'], rows: [['a', 0], ['b', 2.5]] });
  assert.ok(!svg.includes('NaN'));
  assert.ok(svg.includes('>2.5<'));
});

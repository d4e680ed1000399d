import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { describeWorkload, latestResults, type ResultFile, writeReport, writeResult } from '../../bench/report.js';
import { beginRecord, endRecord, note, part, peerInfo, ratio, table } from '../../bench/util.js';

const fsync = { dir: '/tmp', samples: 3, p50Ms: 1, p99Ms: 2, meanMs: 1.2, perSec: 833 };

function result(workload: string, date: string, quick = false, tables: ResultFile['tables'] = []): ResultFile {
  return { format: 1, workload, date, quick, command: `npm run bench -- ${workload}`, seconds: 1, machine: { cores: 2, node: 'v20', fsync }, tables, notes: [], peers: {} };
}

test('util: table() and note() record raw figures while a record is open', () => {
  const log = console.log;
  console.log = () => {};
  try {
    table('before', ['a'], [[1]]);
    const r = beginRecord();
    table('t', ['op', 'ops/s'], [['get', 1234.5678]], { chart: { unit: 'ops/s' } });
    note('a note');
    peerInfo('etcd', '3.4', ['fsync on']);
    assert.equal(endRecord(), r);
    table('after', ['a'], [[1]]);
    assert.deepEqual(r.tables, [{ title: 't', header: ['op', 'ops/s'], rows: [['get', 1234.5678]], chart: { unit: 'ops/s' } }]);
    assert.deepEqual(r.notes, ['a note']);
    assert.deepEqual(r.peers, { etcd: { version: '3.4', settings: ['fsync on'] } });
  } finally {
    console.log = log;
  }
});

test('util: ratio is latchkey/peer, and "—" when a side did not run', () => {
  assert.equal(ratio(300, 100), '3.00×');
  assert.equal(ratio(5000, 100), '50.0×');
  assert.equal(ratio(7.24, 2750), '0.0026×');
  assert.equal(ratio('not installed', 100), '—');
  assert.equal(ratio(1, 0), '—');
});

test('report: newest full result per workload; quick results go aside and are not reported', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'latchkey-report-'));
  try {
    const tables: ResultFile['tables'] = [{ title: 'ops | pipes', header: ['op', 'ops/s'], rows: [['get', 10], ['set', 'pending: x']] }];
    writeResult(root, result('engine', '2026-01-01T00:00:00.000Z', false, [{ title: 'old', header: ['op', 'ops/s'], rows: [['get', 1]] }]));
    const f = writeResult(root, result('engine', '2026-01-02T00:00:00.000Z', false, tables));
    assert.equal(path.basename(f), '2026-01-02-engine.json');
    const q = writeResult(root, result('engine', '2026-01-03T00:00:00.000Z', true));
    assert.ok(q.includes(`${path.sep}quick${path.sep}`));
    assert.deepEqual(latestResults(root).map((r) => r.date), ['2026-01-02T00:00:00.000Z']);

    const md = readFileSync(writeReport(root, ['engine', 'locks']), 'utf8');
    assert.ok(md.includes('## engine'));
    assert.ok(md.includes('### ops | pipes'));
    assert.ok(md.includes('| get | 10 |'));
    assert.ok(md.includes('| set | pending: x |'));
    assert.ok(md.includes('locks — not measured yet'));
    assert.ok(md.includes('![ops | pipes](benchmarks/engine-1.svg)'));
    assert.deepEqual(readdirSync(path.join(root, 'docs', 'benchmarks')), ['engine-1.svg']);
    assert.ok(!md.includes('old'));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('report: peer settings are the union over workloads, with the version any of them saw', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'latchkey-report-'));
  try {
    writeResult(root, { ...result('a', '2026-01-01T00:00:00.000Z'), peers: { lmdb: { settings: ['noSync'] } } });
    writeResult(root, { ...result('b', '2026-01-01T00:00:00.000Z'), peers: { lmdb: { version: '3.5', settings: ['synced', 'noSync'] } } });
    const md = readFileSync(writeReport(root, ['a', 'b']), 'utf8');
    assert.ok(md.includes('- **lmdb** 3.5\n  - noSync\n  - synced\n'));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('report: a workload with nothing measured yields a page without charts', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'latchkey-report-'));
  try {
    const md = readFileSync(writeReport(root, ['engine']), 'utf8');
    assert.ok(md.includes('engine — not measured yet'));
    assert.ok(existsSync(path.join(root, 'docs', 'benchmarks')));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('report: a workload is described by the first paragraph of its doc comment', () => {
  const src = '/**\n * `npm run bench -- x`: durable commits at 1 and 10\n * committers.\n *\n * Details.\n */\nimport a from "b";\n';
  assert.equal(describeWorkload(src), 'durable commits at 1 and 10 committers.');
  assert.equal(describeWorkload('/** `npm run bench -- engine`: the engine. */\n'), 'the engine.');
  assert.equal(describeWorkload('import a from "b";'), undefined);
});

test('report: a run of some parts refreshes them and keeps the other parts from the newest run that ran them', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'latchkey-report-'));
  const log = console.log;
  console.log = () => {};
  try {
    // a whole run records its parts as it goes
    const whole = beginRecord();
    note('outside any part');
    part('big');
    table('big values', ['m', 'MB/s'], [['write', 1]]);
    note('big, first run');
    part('overwrite');
    table('overwrite', ['t', 'disk/live'], [[1, 1.5]]);
    note('overwrite, first run');
    part(undefined);
    endRecord();
    assert.deepEqual(whole.tables.map((t) => t.part), ['big', 'overwrite']);
    assert.deepEqual(whole.partNotes, { big: ['big, first run'], overwrite: ['overwrite, first run'] });
    assert.deepEqual(whole.notes, ['outside any part']);
    writeResult(root, { ...result('bigdata', '2026-01-01T00:00:00.000Z'), ...whole });

    // later, one part alone (and a part the whole run did not have), written beside it
    const partial = beginRecord();
    part('tree');
    table('tree memory', ['built by', 'bytes'], [['putNode', 148]]);
    part('big');
    table('big values', ['m', 'MB/s'], [['write', 2]]);
    note('big, second run');
    endRecord();
    const f = writeResult(root, { ...result('bigdata', '2026-01-02T00:00:00.000Z'), only: 'big', ...partial });
    assert.equal(path.basename(f), '2026-01-02-bigdata-big.json');
    assert.equal(readdirSync(path.join(root, 'bench', 'results')).length, 2);

    const md = readFileSync(writeReport(root, ['bigdata']), 'utf8');
    const at = (s: string): number => {
      const i = md.indexOf(s);
      assert.ok(i >= 0, `missing: ${s}`);
      return i;
    };
    assert.ok(md.includes('| write | 2 |') && !md.includes('| write | 1 |'), 'the newer run of a part replaces it');
    assert.ok(md.includes('big, second run') && !md.includes('big, first run'));
    assert.ok(md.includes('| 1 | 1.50 |') && md.includes('overwrite, first run'), 'a part the newer run did not run is kept');
    assert.ok(md.includes('outside any part'), 'what a run of some parts did not print outside them is kept from the whole run');
    assert.ok(at('### tree memory') < at('### big values') && at('### big values') < at('### overwrite'), 'parts keep the order the runs had');
    assert.ok(md.includes('Its parts were measured in separate runs'));
    assert.ok(md.includes('measured 2026-01-01 00:00 UTC') && md.includes('measured 2026-01-02 00:00 UTC'));
  } finally {
    console.log = log;
    rmSync(root, { recursive: true, force: true });
  }
});

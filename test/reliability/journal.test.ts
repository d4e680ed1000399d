/**
 * The soak's journal (journal.ts): a client SIGKILLed while the reader is
 * not reading loses no line it wrote; the reader reports every break in the
 * sequence as an error and tolerates only a torn last line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { JournalReader, JournalWriter } from './journal.js';

const here = path.dirname(fileURLToPath(import.meta.url));

function read(file: string): { lines: string[]; errors: string[]; reader: JournalReader } {
  const lines: string[] = [];
  const errors: string[] = [];
  const reader = new JournalReader(file, (l) => lines.push(l), (e) => errors.push(e));
  return { lines, errors, reader };
}

test('journal: lines are numbered and read back in order as the file grows', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-journal-'));
  try {
    const file = path.join(dir, 'j');
    writeFileSync(file, '');
    const w = new JournalWriter(file);
    const r = read(file);
    w.write('inc-try a 1 1');
    w.write('inc-ack a');
    r.reader.drain();
    assert.deepEqual(r.lines, ['inc-try a 1 1', 'inc-ack a']);
    for (let i = 0; i < 5000; i++) w.write(`linv op${i}`);
    r.reader.drain();
    assert.equal(r.lines.length, 5002);
    assert.equal(r.lines.at(-1), 'linv op4999');
    assert.ok(readFileSync(file, 'latin1').startsWith('1 inc-try a 1 1\n2 inc-ack a\n3 '));
    assert.equal(r.reader.finish(), false, 'no torn tail');
    assert.deepEqual(r.errors, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('journal: a gap, a repeat or a line without a number is an error; a torn last line is not', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-journal-'));
  try {
    const file = path.join(dir, 'j');
    writeFileSync(file, '1 a\n2 b\n5 e\n');
    const r = read(file);
    r.reader.drain();
    assert.deepEqual(r.lines, ['a', 'b', 'e']);
    assert.equal(r.errors.length, 1);
    assert.match(r.errors[0]!, /line 5 where 3 was due \(2 lines missing\)/);
    appendFileSync(file, '5 again\nnonsense\n6 f\n7 torn-by-the-ki');
    r.reader.drain();
    assert.equal(r.errors.length, 3);
    assert.match(r.errors[1]!, /line 5 where 6 was due \(a line repeated or out of order\)/);
    assert.match(r.errors[2]!, /no sequence number: "nonsense"/);
    assert.equal(r.lines.at(-1), 'f', 'the partial line is not delivered');
    assert.equal(r.reader.finish(), true, 'the torn tail is reported by finish()');
    assert.equal(r.errors.length, 3, 'and is not an error');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('journal: a writer SIGKILLed while nobody reads loses no line whose write returned', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-journal-'));
  try {
    const file = path.join(dir, 'j');
    const mark = path.join(dir, 'mark');
    writeFileSync(file, '');
    // The child writes as fast as it can; every 1000 lines it records (synchronously, in another file, atomically)
    // how many journal writes have returned. The parent does not read until the child is dead.
    const child = spawn(process.execPath, ['--input-type=module', '-e', `
      import { renameSync, writeFileSync } from 'node:fs';
      const { JournalWriter } = await import(${JSON.stringify(path.join(here, 'journal.js'))});
      const w = new JournalWriter(${JSON.stringify(file)});
      for (let n = 1; ; n++) {
        w.write('linv w0g1.' + n + ' /lin/1/k0 write x 0 ' + n);
        // Written aside and renamed: a kill between truncate and write must not read as 0.
        if (n % 1000 === 0) { writeFileSync(${JSON.stringify(mark + '.tmp')}, String(n)); renameSync(${JSON.stringify(mark + '.tmp')}, ${JSON.stringify(mark)}); }
      }
    `], { stdio: 'ignore' });
    // Wait until the child has written a good amount (bounded), then kill it mid-stream.
    for (let i = 0; i < 600; i++) {
      await new Promise((r) => setTimeout(r, 50));
      let n = 0;
      try { n = Number(readFileSync(mark, 'utf8')); } catch { /* not yet */ }
      if (n >= 20_000) break;
    }
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const returned = Number(readFileSync(mark, 'utf8'));
    const r = read(file);
    r.reader.finish();
    assert.deepEqual(r.errors, []);
    assert.ok(returned >= 20_000, `the child wrote ${returned} lines`);
    assert.ok(r.lines.length >= returned, `read ${r.lines.length} lines, the child had ${returned} writes returned`);
    assert.equal(r.lines[returned - 1], `linv w0g1.${returned} /lin/1/k0 write x 0 ${returned}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

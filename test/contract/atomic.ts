/**
 * Contract tests for the atomic operations (add, min, max, append,
 * setIfAbsent) and the transaction() retry policy: the same on every
 * backend. Called from contractSuite (suite.ts).
 */
import assert from 'node:assert/strict';
import { LatchkeyError, type Store } from '../../src/index.js';

type T = (title: string, fn: (s: Store) => Promise<void>) => void;

const is = (code: string) => (e: unknown): boolean => LatchkeyError.is(e) && e.code === code;
const text = async (s: Store, p: string): Promise<string | undefined> => (await s.get(p))?.text();

export function atomicTests(t: T): void {
  t('atomic: add creates at 0, returns the new value, takes negative deltas', async (s) => {
    assert.equal(await s.add('/c/n', 5), 5);
    assert.equal(await s.add('/c/n', -7), -2);
    assert.equal(await text(s, '/c/n'), '-2');
    await s.set('/c/z', '007');
    assert.equal(await s.add('/c/z', 1), 8);
    assert.equal(await text(s, '/c/z'), '8', 'written back in canonical decimal');
    await s.set('/c/m', '40');
    assert.equal(await s.add('/c/m', 2), 42);
    await s.create('/c/empty');
    assert.equal(await s.add('/c/empty', 3), 3, 'an empty value counts as 0');
    const v = (await s.get('/c/m'))!.stat.version;
    assert.equal(await s.add('/c/m', 0), 42);
    assert.equal((await s.get('/c/m'))!.stat.version, v, 'add 0 rewrites nothing');
  });

  t('atomic: add on a value that is not a decimal integer, or out of range, is INVALID_ARGUMENT and writes nothing', async (s) => {
    await s.set('/x', 'abc');
    await s.set('/big', String(Number.MAX_SAFE_INTEGER));
    const rev = s.revision;
    await assert.rejects(s.add('/x', 1), is('INVALID_ARGUMENT'));
    await assert.rejects(s.add('/big', 1), is('INVALID_ARGUMENT'));
    await assert.rejects(s.add('/y', 1.5), is('INVALID_ARGUMENT'));
    await assert.rejects(s.max('/y', Number.NaN), is('INVALID_ARGUMENT'));
    await assert.rejects(s.add('/', 1), is('INVALID_ARGUMENT'));
    assert.equal(await text(s, '/x'), 'abc');
    assert.equal(await s.exists('/y'), false);
    assert.equal(s.revision, rev);
  });

  t('atomic: min and max; append; setIfAbsent', async (s) => {
    assert.equal(await s.max('/hi', 3), 3);
    assert.equal(await s.max('/hi', 1), 3);
    assert.equal(await s.max('/hi', 9), 9);
    assert.equal(await s.min('/lo', 3), 3);
    assert.equal(await s.min('/lo', 5), 3);
    assert.equal(await s.min('/lo', -4), -4);
    assert.equal(await text(s, '/lo'), '-4');
    const r1 = await s.append('/log/a', 'ab');
    const r2 = await s.append('/log/a', new Uint8Array([0x63]));
    assert.ok(r2 > r1);
    assert.equal(await text(s, '/log/a'), 'abc');
    const big = new Uint8Array(600 * 1024).fill(0x61);
    await s.append('/log/big', big);
    await assert.rejects(s.append('/log/big', big), is('TOO_LARGE'), 'the sum passes the 1 MiB value limit');
    assert.equal((await s.get('/log/big'))!.value.length, big.length);
    assert.equal(await s.setIfAbsent('/once', 'first'), true);
    assert.equal(await s.setIfAbsent('/once', 'second'), false);
    assert.equal(await text(s, '/once'), 'first');
  });

  t('atomic: two transactions adding to one counter both commit, with neither read', async (s) => {
    await s.set('/n', '10');
    const a = s.begin();
    const b = s.begin();
    await a.add('/n', 1);
    await b.add('/n', 2);
    await a.max('/top', 4);
    await b.max('/top', 7);
    await a.append('/log', 'a');
    await b.append('/log', 'b');
    await a.setIfAbsent('/first', 'a');
    await b.setIfAbsent('/first', 'b');
    await s.add('/n', 100); // and one outside
    await a.commit();
    await b.commit();
    assert.equal(await text(s, '/n'), '113');
    assert.equal(await text(s, '/top'), '7');
    assert.equal(await text(s, '/log'), 'ab');
    assert.equal(await text(s, '/first'), 'a');
  });

  t('atomic: a transaction that read the counter still validates that read', async (s) => {
    await s.set('/n', '1');
    const tx = s.begin();
    assert.equal((await tx.get('/n'))!.text(), '1');
    await tx.add('/n', 1);
    await s.add('/n', 1);
    await assert.rejects(tx.commit(), is('CONFLICT'));
    assert.equal(await text(s, '/n'), '2');
  });

  t('atomic: a read after an add in the same transaction sees the sum, and validates', async (s) => {
    await s.set('/n', '1');
    const ok = s.begin();
    await ok.add('/n', 5);
    assert.equal((await ok.get('/n'))!.text(), '6');
    await ok.commit();
    const tx = s.begin();
    await tx.add('/n', 1);
    assert.equal((await tx.get('/n'))!.text(), '7');
    await s.add('/n', 10);
    await assert.rejects(tx.commit(), is('CONFLICT'), 'it saw 7, the head would give 17');
    assert.equal(await text(s, '/n'), '16');
  });

  t('atomic: in a transaction, add on a non-integer fails INVALID_ARGUMENT, and that answer is validated too', async (s) => {
    await s.set('/v', 'text');
    const tx = s.begin();
    await assert.rejects(tx.add('/v', 1), is('INVALID_ARGUMENT'));
    await tx.set('/other', 'x');
    await s.set('/v', '3');
    await assert.rejects(tx.commit(), is('CONFLICT'), 'add would now succeed');
    await assert.rejects(s.begin().add('/v', 0.5), is('INVALID_ARGUMENT'));
  });

  t('transaction(): concurrent read-modify-write increments all land; retries are counted', async (s) => {
    await s.set('/count', '0');
    const before = s.stats().txRetries ?? 0;
    const n = 24;
    await Promise.all(Array.from({ length: n }, () => s.transaction(async (tx) => {
      const v = Number((await tx.get('/count'))!.text());
      await new Promise((r) => setImmediate(r)); // let the others read the same value
      await tx.set('/count', String(v + 1));
    })));
    assert.equal(await text(s, '/count'), String(n));
    const st = s.stats();
    assert.ok((st.txRetries ?? 0) > before, 'some ran more than once');
    assert.ok((st.txAttempts ?? 0) >= n + (st.txRetries ?? 0) - before);
  });

  t('transaction(): gives up with CONFLICT carrying attempts and the last conflicting path', async (s) => {
    await s.set('/c', '0');
    let runs = 0;
    const interfere = async (tx: Parameters<Parameters<Store['transaction']>[0]>[0]): Promise<void> => {
      runs++;
      await tx.get('/c');
      await s.add('/c', 1);
      await tx.set('/c', 'never');
    };
    const gaveUp = s.stats().txGaveUp ?? 0;
    const e1 = await s.transaction(interfere, { retries: 2 }).then(() => undefined, (e: unknown) => e);
    assert.ok(LatchkeyError.is(e1, 'CONFLICT'), String(e1));
    assert.equal(e1.path, '/c');
    assert.equal(e1.info?.attempts, 3);
    assert.equal(runs, 3);
    runs = 0;
    const e2 = await s.transaction(interfere, { timeoutMs: 30 }).then(() => undefined, (e: unknown) => e);
    assert.ok(LatchkeyError.is(e2, 'CONFLICT'), String(e2));
    assert.equal(e2.info?.attempts, runs);
    assert.ok(runs >= 1);
    assert.equal(s.stats().txGaveUp, gaveUp + 2);
    await assert.rejects(s.transaction(async () => 1, { timeoutMs: -1 }), is('INVALID_ARGUMENT'));
  });
}

/**
 * The web console in a real browser (Debian's chromium, driven by
 * playwright-core), against a real `latchkey serve --http` process and real
 * client processes. Run by test/integration/console.sh:
 *
 *   node build/test/integration/console-browser.js CHROMIUM SCREENSHOT_DIR
 *
 * Checks (each prints PASS/FAIL; the exit is non-zero on any failure):
 *  - a lock taken by a client process appears with its FIFO waiter queue
 *    (the waiter, another process);
 *  - SIGKILL of the holder: the lock passes to the waiter, marked owner-died;
 *  - a 100,000-child directory lists its first page, and pages on;
 *  - a value and a key containing markup render as text (no script runs);
 *  - with 100,000 held locks the lock view shows one page of 300 in path order and the total, and pages on;
 *  - a read-only token sees the write actions disabled, and its writes are refused;
 * and saves a screenshot of each view into SCREENSHOT_DIR.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Page } from 'playwright-core';
import { connect } from '../../src/client/store.js';

// The functions given to page.evaluate / waitForFunction run in the page; this file is compiled without the DOM library.
declare const document: any;
declare const window: any;

const [chromiumPath = '/usr/bin/chromium', shotDir = 'docs/img'] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(here, '../../src/cli/main.js');
const CLIENT = path.resolve(here, 'console-client.js');
const ADMIN = 'console-admin-token';
const READER = 'console-reader-token';
const XSS_VALUE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">';
const XSS_KEY = '<img src=x onerror=window.__pwned=3>';

let pass = 0;
let fail = 0;
const failed: string[] = [];
async function check(name: string, f: () => Promise<void>): Promise<void> {
  try {
    await f();
    pass++;
    process.stdout.write(`PASS  ${name}\n`);
  } catch (e) {
    fail++;
    failed.push(name);
    process.stdout.write(`FAIL  ${name}\n      ${(e as Error).message.split('\n').join('\n      ')}\n`);
  }
}
function ensure(cond: boolean, what: string): void {
  if (!cond) throw new Error(what);
}

/** A child process whose stdout is collected; `line(re)` waits for a line matching re. */
function child(args: string[]): { proc: ChildProcess; out: () => string; line: (re: RegExp, ms?: number) => Promise<RegExpExecArray> } {
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const line = (re: RegExp, ms = 30_000): Promise<RegExpExecArray> => new Promise((resolve, reject) => {
    const end = Date.now() + ms;
    const t = setInterval(() => {
      const m = re.exec(out);
      if (m !== null) { clearInterval(t); resolve(m); } else if (Date.now() > end || proc.exitCode !== null) {
        clearInterval(t);
        reject(new Error(`no line ${re} from ${args.join(' ')}: stdout ${out} stderr ${err}`));
      }
    }, 20);
  });
  return { proc, out: () => out, line };
}

async function login(page: Page, base: string, token: string): Promise<void> {
  await page.goto(`${base}/`);
  await page.waitForSelector('#login:not([hidden])');
  await page.fill('#token', token);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#who:not(:empty)');
}

async function tab(page: Page, view: string): Promise<void> {
  await page.click(`#tabs button[data-view=${view}]`);
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'lk-console-'));
const procs: ChildProcess[] = [];
const lockConns: Array<Awaited<ReturnType<typeof connect>>> = [];
let browser: Awaited<ReturnType<typeof chromium.launchPersistentContext>> | undefined;
try {
  writeFileSync(path.join(tmp, 'auth.json'), JSON.stringify({ tokens: [
    { token: ADMIN, name: 'operator', grants: [{ prefix: '/', access: 'admin' }] },
    { token: READER, name: 'viewer', grants: [{ prefix: '/', access: 'read' }] },
  ] }));
  // A durable server with TCP (short leases, so a SIGKILLed client's session dies within 1.5 s), its socket and --http.
  const server = child([CLI, 'serve', '--data', path.join(tmp, 'data'), '--listen', '127.0.0.1:0', '--auth', path.join(tmp, 'auth.json'), '--http', '127.0.0.1:0', '--ttl-ms', '1500']);
  procs.push(server.proc);
  await server.line(/^ready$/m);
  const tcp = /^(tcp:\/\/\S+)$/m.exec(server.out())![1]!;
  const base = /^(http:\/\/\S+)\/$/m.exec(server.out())![1]!;
  process.stdout.write(`server ${tcp} ${base}\n`);

  // Data: a 100,000-child directory, a value and a key with markup, a JSON value.
  // The seeding client uses the Unix socket (no lease: its big batches must not race the 1.5 s TCP lease).
  const unix = /^(unix:\/\/\S+)$/m.exec(server.out())![1]!;
  const admin = await connect(unix, { token: ADMIN, reconnect: false });
  const t0 = performance.now();
  for (let i = 0; i < 100_000; i += 2000) {
    await admin.multi(Array.from({ length: 2000 }, (_, j) => ({ op: 'set' as const, path: `/big/n${String(i + j).padStart(6, '0')}`, value: String(i + j) })));
  }
  process.stdout.write(`seeded /big with 100,000 children in ${Math.round(performance.now() - t0)} ms\n`);
  await admin.set('/app/xss', XSS_VALUE);
  await admin.set(`/app/${XSS_KEY}`, 'key with markup');
  await admin.set('/app/config', JSON.stringify({ replicas: 3, region: 'eu-west', flags: ['a', 'b'] }));
  for (let i = 0; i < 50; i++) await admin.set('/app/counter', String(i));

  // Two client processes: the holder, then a waiter queued behind it.
  const holder = child([CLIENT, 'hold', tcp, ADMIN, '/locks/job']);
  procs.push(holder.proc);
  const [, holderSession] = await holder.line(/^held (\S+) (\d+)$/m);
  const waiter = child([CLIENT, 'wait', tcp, ADMIN, '/locks/job']);
  procs.push(waiter.proc);
  const [, waiterSession] = await waiter.line(/^waiting (\S+)$/m);

  const profile = path.join(tmp, 'profile');
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1400, height: 860 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('dialog', (d) => void d.dismiss()); // an alert() from injected markup would land here
  await login(page, base, ADMIN);

  await check('the tree lists the root', async () => {
    await page.waitForSelector('#children li[data-path="/big"]');
    await page.waitForSelector('#children li[data-path="/app"]');
  });

  await check('a 100,000-child directory lists its first page, then pages on', async () => {
    const t = performance.now();
    await page.dblclick('#children li[data-path="/big"]');
    await page.waitForFunction(() => document.getElementById('list-count')!.textContent!.startsWith('200 of 100000'));
    const ms = performance.now() - t;
    ensure(await page.locator('#children li').count() === 200, 'first page is 200 names');
    await page.click('#more');
    await page.waitForFunction(() => document.getElementById('list-count')!.textContent!.startsWith('400 of 100000'));
    ensure((await page.locator('#children li').nth(399).getAttribute('data-path')) === '/big/n000399', 'the second page continues in order');
    process.stdout.write(`      first page of /big shown in ${Math.round(ms)} ms\n`);
    await page.click('#children li[data-path="/big/n000007"]');
    await page.waitForFunction(() => document.querySelector('[data-testid=node-path]')?.textContent === '/big/n000007');
    await page.screenshot({ path: path.join(shotDir, 'console-tree.png') });
  });

  await check('a value and a key containing markup render as text; no script runs', async () => {
    await page.click('#crumbs a:first-child');
    await page.waitForSelector('#children li[data-path="/app"]');
    await page.dblclick('#children li[data-path="/app"]');
    await page.waitForSelector('#children li[data-path="/app/xss"]');
    const keyText = await page.locator(`#children li[data-path="/app/${XSS_KEY}"]`).textContent();
    ensure(keyText === XSS_KEY, `the key shows as text: ${keyText}`);
    await page.click('#children li[data-path="/app/xss"]');
    await page.waitForFunction(() => document.querySelector('[data-testid=node-path]')?.textContent === '/app/xss');
    const shown = await page.locator('[data-testid=value]').textContent();
    ensure(shown === XSS_VALUE, `the value shows as text: ${shown}`);
    ensure(await page.locator('#node script, #node img, #children img').count() === 0, 'no element was made from the stored markup');
    ensure(await page.evaluate(() => window.__pwned) === undefined, 'no injected script ran');
    await page.screenshot({ path: path.join(shotDir, 'console-value.png') });
    // JSON view of a JSON value, hex view.
    await page.click(`#children li[data-path="/app/config"]`);
    await page.waitForFunction(() => document.querySelector('[data-testid=node-path]')?.textContent === '/app/config');
    await page.click('button[data-mode=json]');
    ensure((await page.locator('[data-testid=value]').textContent())!.includes('"replicas": 3'), 'JSON is pretty-printed');
    await page.click('button[data-mode=hex]');
    ensure((await page.locator('[data-testid=value]').textContent())!.startsWith('00000000  7b 22'), 'hex view');
    await page.click('button[data-mode=text]');
    await page.click(`#children li[data-path="/app/counter"]`);
    await page.waitForFunction(() => document.querySelector('[data-testid=node-path]')?.textContent === '/app/counter');
    await page.click('#node button:has-text("history")');
    await page.waitForFunction(() => (document.querySelector('[data-testid=history]')?.children.length ?? 0) >= 50);
  });

  await check('a lock taken by a client process appears with its waiter queue', async () => {
    await tab(page, 'locks');
    await page.waitForFunction(({ h, w }) => {
      const row = document.querySelector('#lock-rows tr[data-path="/locks/job"]');
      return row?.getAttribute('data-session') === h && row.querySelector(`.qnode[data-session="${w}"]`) !== null;
    }, { h: holderSession!, w: waiterSession! });
    await page.screenshot({ path: path.join(shotDir, 'console-locks.png') });
  });

  await check('SIGKILL of the holder: the lock passes to the waiter, marked owner-died', async () => {
    holder.proc.kill('SIGKILL');
    await waiter.line(/^granted \S+ ownerDied=true$/m);
    await page.waitForFunction((w) => {
      const row = document.querySelector('#lock-rows tr[data-path="/locks/job"]');
      return row?.getAttribute('data-session') === w && row.querySelector('[data-testid=owner-died]') !== null;
    }, waiterSession!, { timeout: 20_000 });
    await page.waitForFunction(() => document.getElementById('taints')!.textContent!.includes('/locks/job'));
    await page.screenshot({ path: path.join(shotDir, 'console-owner-died.png') });
  });

  await check('the sessions view lists the client processes with address and lease', async () => {
    await tab(page, 'sessions');
    await page.waitForSelector(`#session-rows tr[data-session="${waiterSession}"]`);
    const row = (await page.locator(`#session-rows tr[data-session="${waiterSession}"]`).textContent())!;
    ensure(row.includes('console-test-wait') && row.includes('tcp') && row.includes('127.0.0.1:') && row.includes('1.5s'), `session row: ${row}`);
    await page.screenshot({ path: path.join(shotDir, 'console-sessions.png') });
  });

  await check('charts and the watch tail update live from the one stream', async () => {
    await tab(page, 'watch');
    await page.fill('#watch-path', '/app');
    await page.click('#watch-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('watch-state')!.textContent!.startsWith('tailing /app'));
    for (let i = 0; i < 30; i++) await admin.set('/app/counter', `tail-${i}`);
    await admin.set('/app/live', '<i>live</i>');
    await page.waitForFunction(() => document.getElementById('watch-tail')!.textContent!.includes('/app/live <i>live</i>'));
    await page.screenshot({ path: path.join(shotDir, 'console-watch.png') });
    await tab(page, 'charts');
    // Load while the charts draw: commits, and transactions that conflict now and then.
    let loading = true;
    const load = (async () => {
      for (let i = 0; loading; i++) {
        const tx = admin.begin();
        await tx.get('/load/hot');
        await tx.set(`/load/${i % 10}`, String(i));
        await Promise.all([admin.set('/load/hot', String(i)), tx.commit().catch(() => {})]);
      }
    })();
    await page.waitForTimeout(4500); // four ticks drawn under load
    await page.screenshot({ path: path.join(shotDir, 'console-charts.png') });
    loading = false;
    await load;
    const rates = (await page.locator('#charts h4').first().textContent())!;
    ensure(/max [1-9]/.test(rates), `the commit chart moved: ${rates}`);
    await tab(page, 'events');
    await page.waitForSelector('#events li[data-kind=session-died]');
    await page.screenshot({ path: path.join(shotDir, 'console-events.png') });
  });

  await check('a read-only token cannot use write actions', async () => {
    const ro = await browser!.newPage();
    await login(ro, base, READER);
    await ro.waitForSelector('#children li[data-path="/app"]');
    await ro.dblclick('#children li[data-path="/app"]');
    await ro.click('#children li[data-path="/app/config"]');
    await ro.waitForSelector('[data-testid=read-only]');
    ensure(await ro.locator('[data-testid=action-set]').isDisabled(), 'set is disabled');
    ensure(await ro.locator('[data-testid=action-delete]').isDisabled(), 'delete is disabled');
    ensure((await ro.locator('#who').textContent())!.includes('read-only'), 'the header says read-only');
    // Past the page: the API refuses the write (the button being disabled is not the guard).
    const status = await ro.evaluate(async (token) => (await fetch('/api/set', { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ path: '/app/config', value: 'hacked' }) })).status, READER);
    ensure(status === 403, `POST /api/set with the read-only token: ${status}`);
    ensure((await admin.get('/app/config'))!.text().includes('replicas'), 'the value is unchanged');
    await ro.screenshot({ path: path.join(shotDir, 'console-read-only.png') });
    await ro.close();
  });

  await check('an operator token can set a value (confirmed) from the page', async () => {
    await tab(page, 'tree');
    await page.click('#crumbs a:first-child');
    await page.dblclick('#children li[data-path="/app"]');
    await page.click('#children li[data-path="/app/config"]');
    await page.waitForFunction(() => document.querySelector('[data-testid=node-path]')?.textContent === '/app/config');
    await page.fill('[data-testid=edit-value]', '{"replicas":5}');
    await page.click('[data-testid=action-set]');
    await page.click('#confirm-ok');
    await page.waitForFunction(() => document.querySelector('[data-testid=value]')?.textContent === '{"replicas":5}');
    ensure((await admin.get('/app/config'))!.text() === '{"replicas":5}', 'the store has the new value');
  });

  await check('with 100,000 held locks the lock view shows one page of 300 in path order, the total, and pages on', async () => {
    const t1 = performance.now();
    // Ten connections (the server allows 10,000 locks per connection), 10,000 locks each.
    const conns = await Promise.all(Array.from({ length: 10 }, () => connect(unix, { token: ADMIN, reconnect: false })));
    lockConns.push(...conns);
    for (let i = 0; i < 100_000; i += 1000) {
      await Promise.all(Array.from({ length: 1000 }, (_, j) => conns[Math.floor(i / 10_000)]!.lock(`/scale/l${String(i + j).padStart(6, '0')}`)));
    }
    process.stdout.write(`took 100,000 locks in ${Math.round(performance.now() - t1)} ms\n`);
    await tab(page, 'locks');
    await page.waitForFunction(() => /^1000\d\d held/.test(document.querySelector('#lock-summary')?.textContent ?? ''), undefined, { timeout: 60_000 });
    const first = await page.$$eval('#lock-rows tr', (rows: any[]) => rows.map((r) => r.getAttribute('data-path')));
    ensure(first.length === 300, `one page of 300 rows: ${first.length}`);
    ensure(first.includes('/scale/l000000'), 'the first lock in path order is shown');
    ensure(first.every((p, i) => i === 0 || first[i - 1] < p || first[i - 1] === p), 'rows in path order');
    const summary = (await page.locator('#lock-summary').textContent())!;
    ensure(/locks 1–300 in path order/.test(summary), `the summary says which locks: ${summary}`);
    await page.screenshot({ path: path.join(shotDir, 'console-locks-100k.png') });
    await page.click('[data-testid=locks-next]');
    await page.waitForFunction(() => /locks 301–600/.test(document.querySelector('#lock-summary')?.textContent ?? ''), undefined, { timeout: 60_000 });
    const second = await page.$$eval('#lock-rows tr', (rows: any[]) => rows.map((r) => r.getAttribute('data-path')));
    ensure(second.length === 300 && second[0] > first[299]!, `the next page follows the first: ${second[0]} after ${first[299]}`);
    await page.click('[data-testid=locks-prev]');
    await page.waitForFunction(() => /locks 1–300/.test(document.querySelector('#lock-summary')?.textContent ?? ''), undefined, { timeout: 60_000 });
  });

  await check('no page errors', async () => {
    ensure(pageErrors.length === 0, pageErrors.join('; '));
  });
  for (const c of lockConns) await c.close();
  await admin.close();
} catch (e) {
  fail++;
  failed.push(`harness: ${(e as Error).message}`);
  process.stdout.write(`FAIL  harness: ${(e as Error).stack ?? String(e)}\n`);
} finally {
  await browser?.close().catch(() => {});
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
}
process.stdout.write(`\nconsole browser tests: ${pass} passed, ${fail} failed\n`);
if (fail > 0) {
  for (const f of failed) process.stdout.write(`  failed: ${f}\n`);
  process.exit(1);
}
process.exit(0);

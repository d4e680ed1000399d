/**
 * Client processes for the remote benchmark (bench/workloads/remote.ts).
 * Times are process.hrtime (CLOCK_MONOTONIC, the same clock in every process
 * of the machine), so events in different processes can be ordered.
 *
 *   LK_ROLE=holder     lock LK_PATH, print "held", wait to be killed
 *   LK_ROLE=contender  on "go" (stdin), lock/release LK_PATH LK_ROUNDS times,
 *                      print JSON [[grantNs, releaseNs], …]
 *   LK_ROLE=herd       open LK_SESSIONS sessions, each waiting for
 *                      /herd/<LK_BASE+i>; print "queued"; when all are
 *                      granted print JSON {granted, lastNs}
 */
import { connect } from '../src/client/store.js';

const url = process.env.LK_URL!;
const role = process.env.LK_ROLE;

function ns(): string {
  return process.hrtime.bigint().toString();
}

async function holder(): Promise<void> {
  const s = await connect(url, { name: 'holder' });
  await s.lock(process.env.LK_PATH!);
  process.stdout.write('held\n');
  await new Promise(() => {});
}

async function contender(): Promise<void> {
  const s = await connect(url);
  const path = process.env.LK_PATH!;
  const rounds = Number(process.env.LK_ROUNDS);
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  process.stdin.destroy(); // read once: do not let the pipe keep this process alive
  const out: [string, string][] = [];
  for (let i = 0; i < rounds; i++) {
    const l = await s.lock(path);
    const g = ns();
    const r = ns();
    out.push([g, r]);
    await l.release();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
  await s.close();
}

async function herd(): Promise<void> {
  const s = await connect(url);
  const n = Number(process.env.LK_SESSIONS);
  const base = Number(process.env.LK_BASE);
  let granted = 0;
  let last = 0n;
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => { resolveAll = r; });
  const waits: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const sess = s.session();
    waits.push(sess.lock(`/herd/${base + i}`).then(() => {
      const t = process.hrtime.bigint();
      if (t > last) last = t;
      if (++granted === n) resolveAll();
    }));
  }
  process.stdout.write('queued\n');
  await all;
  process.stdout.write(JSON.stringify({ granted, lastNs: last.toString() }) + '\n');
  await Promise.all(waits);
  await s.close();
}

switch (role) {
  case 'holder': await holder(); break;
  case 'contender': await contender(); break;
  case 'herd': await herd(); break;
  default: throw new Error(`unknown LK_ROLE ${String(role)}`);
}

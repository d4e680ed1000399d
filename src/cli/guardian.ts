/**
 * The guardian of `latchkey lock -- CMD`: a small process between latchkey
 * and CMD, so that CMD never outlives the lock, even when latchkey is
 * SIGKILLed (Node has no parent-death signal; this is its stand-in).
 *
 *   latchkey ──fd 3 (control: a socketpair)──▶ guardian ──spawn──▶ CMD
 *            ╰──fd 4: latchkey's connection to the server, shared
 *
 * 1. The guardian holds a copy of latchkey's connection (fd 4) and never
 *    reads it. If latchkey dies, the server does not see the connection
 *    close until the guardian exits too; the session then ends by the
 *    server's lease at the earliest, ttl after the last ping — and latchkey
 *    was alive, so at least the kill grace of lease was left (lock.ts).
 * 2. Control (fd 3) EOF means latchkey is gone: the guardian sends CMD
 *    SIGTERM, SIGKILL after the grace, waits for it to exit, then exits
 *    (closing fd 4: the server ends the session at once).
 * 3. Lines latchkey sends: `TERM` (the lease is being given up: SIGTERM,
 *    then SIGKILL after the grace) and `SIG <name>` (a forwarded signal).
 *    Lines the guardian sends: `pid <n>`, `exit <code|-> <signal|->`, or
 *    `error <errno> <message>` when CMD could not start.
 * 4. CMD runs in its own process group (signals reach the commands it
 *    starts too), unless stdin is a terminal: a background group could not
 *    read it. The guardian ignores terminal signals (latchkey forwards them).
 *
 * argv: graceMs, then CMD and its arguments.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';

const [graceArg, file, ...args] = process.argv.slice(2);
const grace = Number(graceArg);
const control = new net.Socket({ fd: 3, readable: true, writable: true });
const group = !process.stdin.isTTY;

for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as const) process.on(s, () => {});

const child = spawn(file!, args, { stdio: 'inherit', detached: group });
let exited = false;
let killTimer: NodeJS.Timeout | undefined;

function send(line: string): void {
  if (!control.destroyed) control.write(line + '\n');
}

function signal(sig: NodeJS.Signals): void {
  if (exited || child.pid === undefined) return;
  try {
    if (group) process.kill(-child.pid, sig);
    else child.kill(sig);
  } catch { /* gone already */ }
}

function terminate(): void {
  signal('SIGTERM');
  killTimer ??= setTimeout(() => signal('SIGKILL'), grace);
}

child.once('spawn', () => send(`pid ${child.pid}`));
child.once('error', (e: NodeJS.ErrnoException) => {
  exited = true;
  send(`error ${e.code ?? '-'} ${e.message}`);
  control.end(() => process.exit(0));
});
child.once('exit', (code, sig) => {
  exited = true;
  if (killTimer !== undefined) clearTimeout(killTimer);
  // CMD's own children in its group go with it (it was the group's reason to exist).
  if (group && child.pid !== undefined) try { process.kill(-child.pid, 'SIGKILL'); } catch { /* none left */ }
  send(`exit ${code ?? '-'} ${sig ?? '-'}`);
  control.end(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
});

let buf = '';
control.setEncoding('utf8');
control.on('data', (chunk: string) => {
  buf += chunk;
  for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    if (line === 'TERM') terminate();
    else if (line.startsWith('SIG ')) signal(line.slice(4) as NodeJS.Signals);
  }
});
// latchkey is gone (note 2).
control.on('end', terminate);
control.on('error', terminate);
control.on('close', terminate);

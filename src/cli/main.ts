#!/usr/bin/env node
/**
 * The `latchkey` command: `latchkey <command> [options]`.
 *
 * One file per command under commands/ (serve.ts, kv.ts for the node
 * commands, lock.ts, watch.ts, txn.ts, top.ts, …); this file is only the
 * table of commands and the dispatcher. A new command is one import and
 * one line in COMMANDS (the benchmark's `bench` goes there too).
 *
 * `--help` / `-h` anywhere before a `--` prints that command's help; the
 * dispatcher handles it so every command has it the same way.
 */
import { type Command, EXIT, EXIT_CODES_HELP, report } from './command.js';
import { checkCmd, repairCmd } from './commands/check.js';
import { exportCmd, importCmd } from './commands/dump.js';
import { getCmd, lsCmd, mkdirCmd, rmCmd, setCmd, statCmd } from './commands/kv.js';
import { lockCmd } from './commands/lock.js';
import { serveCmd } from './commands/serve.js';
import { snapshotCmd, statsCmd } from './commands/stats.js';
import { topCmd } from './commands/top.js';
import { txnCmd } from './commands/txn.js';
import { watchCmd } from './commands/watch.js';

const COMMANDS: readonly Command[] = [
  serveCmd,
  getCmd, setCmd, lsCmd, rmCmd, statCmd, mkdirCmd,
  lockCmd, watchCmd, txnCmd,
  topCmd, statsCmd, snapshotCmd,
  checkCmd, repairCmd,
  exportCmd, importCmd,
  // bench (src/cli/bench.ts) joins here when it lands.
];

function overview(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length));
  return `usage: latchkey <command> [options]     (latchkey <command> --help for each)

commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`).join('\n')}

The client commands connect to --url, else $LATCHKEY_URL, else the socket of
./latchkey-data (unix://$PWD/latchkey-data/latchkey.sock); --token or
$LATCHKEY_TOKEN authenticates.

${EXIT_CODES_HELP}
`;
}

function wantsHelp(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

async function main(): Promise<void> {
  const [name, ...rest] = process.argv.slice(2);
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    const cmd = COMMANDS.find((c) => c.name === rest[0]);
    process.stdout.write(cmd === undefined ? overview() : `${cmd.help}\n`);
    return;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (cmd === undefined) {
    process.stderr.write(`latchkey: unknown command ${name}\n${overview()}`);
    process.exit(EXIT.USAGE);
  }
  if (wantsHelp(rest)) {
    process.stdout.write(`${cmd.help}\n`);
    return;
  }
  let code: number | undefined;
  try {
    code = await cmd.run(rest);
  } catch (e) {
    code = report(name, e);
  }
  // A client command is done: exit now rather than wait for every handle
  // (a reconnect timer, stdin in raw mode) to let go. stdout and stderr are
  // synchronous for files, pipes and terminals on POSIX, so nothing written is lost.
  if (code !== undefined) process.exit(code);
}

main().catch((e: unknown) => {
  process.stderr.write(`latchkey: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(EXIT.ERROR);
});

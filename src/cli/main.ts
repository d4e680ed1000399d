#!/usr/bin/env node
/**
 * The `latchkey` command: `latchkey <command> [options]`.
 *
 * One file per command under commands/ (serve.ts, kv.ts for the node
 * commands, lock.ts, watch.ts, txn.ts, top.ts, …); this file is only the
 * table of commands and the dispatcher. A new command is one line in
 * COMMANDS (`bench` wraps cli/bench.ts, the benchmark suite's runner).
 *
 * `--help` / `-h` anywhere before a `--` prints that command's help; the
 * dispatcher handles it so every command has it the same way.
 */
import { type Command, EXIT, EXIT_CODES_HELP, report } from './command.js';

interface CommandEntry {
  readonly name: string;
  /** One line for `latchkey --help`. */
  readonly summary: string;
  /**
   * Loaded on use: `latchkey get` should not pay for loading the engine,
   * storage and XenStore code that only `serve` needs (start-up time is most
   * of a short command's run time).
   */
  readonly load: () => Promise<Command>;
}

const COMMANDS: readonly CommandEntry[] = [
  { name: 'serve', summary: 'run the server on a data directory (default ./latchkey-data)', load: async () => (await import('./commands/serve.js')).serveCmd },
  { name: 'get', summary: 'print a node\'s value', load: async () => (await import('./commands/kv.js')).getCmd },
  { name: 'set', summary: 'write a node\'s value (from the argument or stdin)', load: async () => (await import('./commands/kv.js')).setCmd },
  { name: 'ls', summary: 'list a node\'s children (-r: the whole subtree as a tree)', load: async () => (await import('./commands/kv.js')).lsCmd },
  { name: 'rm', summary: 'delete a node (-r with its subtree)', load: async () => (await import('./commands/kv.js')).rmCmd },
  { name: 'stat', summary: 'show a node\'s metadata', load: async () => (await import('./commands/kv.js')).statCmd },
  { name: 'add', summary: 'add an integer to a counter, atomically (never conflicts)', load: async () => (await import('./commands/kv.js')).addCmd },
  { name: 'mkdir', summary: 'create an empty node', load: async () => (await import('./commands/kv.js')).mkdirCmd },
  { name: 'lock', summary: 'run a command while holding a lock (like flock(1))', load: async () => (await import('./commands/lock.js')).lockCmd },
  { name: 'watch', summary: 'stream changes under a path until interrupted', load: async () => (await import('./commands/watch.js')).watchCmd },
  { name: 'txn', summary: 'run a script of operations as one transaction', load: async () => (await import('./commands/txn.js')).txnCmd },
  { name: 'top', summary: 'live view: sessions, held locks and their waiters, commit/replay/conflict rates', load: async () => (await import('./commands/top.js')).topCmd },
  { name: 'stats', summary: 'print the server\'s figures (revision, nodes, commits, conflicts, ...)', load: async () => (await import('./commands/stats.js')).statsCmd },
  { name: 'snapshot', summary: 'ask the server to write a snapshot now', load: async () => (await import('./commands/stats.js')).snapshotCmd },
  { name: 'check', summary: 'verify a data directory\'s files offline (read-only)', load: async () => (await import('./commands/check.js')).checkCmd },
  { name: 'repair', summary: 'make a damaged data directory open again (keeps the valid prefix)', load: async () => (await import('./commands/check.js')).repairCmd },
  { name: 'file', summary: 'copy a local file into a big file (put) or out of one (get)', load: async () => (await import('./commands/file.js')).fileCmd },
  { name: 'export', summary: 'write a subtree as JSON lines to stdout', load: async () => (await import('./commands/dump.js')).exportCmd },
  { name: 'import', summary: 'write the nodes of a JSON-lines dump (from stdin)', load: async () => (await import('./commands/dump.js')).importCmd },
  {
    name: 'bench', summary: 'run the benchmark suite (from a source checkout; docs/benchmarks.md)',
    load: async () => {
      const { benchCommand } = await import('./bench.js');
      return {
        help: `usage: latchkey bench [WORKLOAD...] [--quick]

Runs the benchmark suite (bench/ in a source checkout: \`npm run bench\` there),
printing figures; from an installed package it says where to get the suite.
See docs/benchmarks.md.

examples:
  latchkey bench --quick
  latchkey bench remote`,
        run: (argv) => benchCommand(argv),
      };
    },
  },
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
    const entry = COMMANDS.find((c) => c.name === rest[0]);
    process.stdout.write(entry === undefined ? overview() : `${(await entry.load()).help}\n`);
    return;
  }
  const entry = COMMANDS.find((c) => c.name === name);
  if (entry === undefined) {
    process.stderr.write(`latchkey: unknown command ${name}\n${overview()}`);
    process.exit(EXIT.USAGE);
  }
  const cmd = await entry.load();
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

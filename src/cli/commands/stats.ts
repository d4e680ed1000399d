/** `latchkey stats` and `latchkey snapshot`: one admin request each. */
import { CLIENT_OPTIONS, CLIENT_OPTIONS_HELP, type Command, EXIT, UsageError, connectFrom, json, out, parse } from '../command.js';

export const statsCmd: Command = {
  help: `usage: latchkey stats [--json]

Prints the store's figures: revision, nodes, commits, validations (commits
checked against a moved head), replays (of those, committed by replay),
conflicts, open transactions, sessions, group syncs, …

${CLIENT_OPTIONS_HELP}

examples:
  latchkey stats
  latchkey stats --json | jq .conflicts`,
  async run(argv) {
    const { values, positionals } = parse(argv, { ...CLIENT_OPTIONS, json: { type: 'boolean' } });
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
    const store = await connectFrom(values);
    try {
      const s = await store.fetchStats();
      if (values.json) {
        json(s);
      } else {
        const rows = Object.entries(s).filter(([, v]) => v !== undefined);
        const w = Math.max(...rows.map(([k]) => k.length));
        out(rows.map(([k, v]) => `${k.padEnd(w)}  ${typeof v === 'object' ? JSON.stringify(v) : String(v)}\n`).join(''));
      }
    } finally {
      await store.close();
    }
    return EXIT.OK;
  },
};

export const snapshotCmd: Command = {
  help: `usage: latchkey snapshot

Asks the server to write a snapshot of the store now (it also writes them on
its own as the log grows); returns once the snapshot is durable.

${CLIENT_OPTIONS_HELP}

examples:
  latchkey snapshot && latchkey stats`,
  async run(argv) {
    const { values, positionals } = parse(argv, CLIENT_OPTIONS);
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
    const store = await connectFrom(values);
    try {
      await store.snapshot();
    } finally {
      await store.close();
    }
    return EXIT.OK;
  },
};

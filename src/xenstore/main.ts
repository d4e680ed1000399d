#!/usr/bin/env node
/**
 * A small runnable XenStore-only daemon: `node dist/xenstore/main.js --socket
 * PATH [--data DIR]` (`latchkey serve --xenstore-socket PATH` serves the
 * same beside the latchkey protocol).
 * In memory unless --data names a data directory; `--limit NAME=N` sets a
 * limit of src/xenstore/limits.ts. SIGINT/SIGTERM close the listener and the
 * store, then exit 0.
 */
import { parseArgs } from 'node:util';
import { open } from '../engine/open.js';
import { startXenstoreServer } from './server.js';

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        socket: { type: 'string' },
        data: { type: 'string' },
        'domain-dir': { type: 'string' },
        quiet: { type: 'boolean', default: false },
        limit: { type: 'string', multiple: true, default: [] },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 2;
  }
  if (values.help || values.socket === undefined) {
    process.stderr.write('usage: latchkey-xenstore --socket PATH [--data DIR] [--domain-dir DIR] [--limit NAME=N]… [--quiet]\n');
    return values.help ? 0 : 2;
  }
  const limits: Record<string, number> = {};
  for (const l of values.limit) {
    const m = /^([A-Za-z]+)=([0-9]+)$/.exec(l);
    if (m === null) {
      process.stderr.write(`--limit takes NAME=N (e.g. maxTransactions=100), not ${JSON.stringify(l)}\n`);
      return 2;
    }
    limits[m[1]!] = Number(m[2]);
  }
  const store = await open(values.data);
  const log = (m: string): void => { if (!values.quiet) process.stderr.write(m + '\n'); };
  let server;
  try {
    server = await startXenstoreServer(store, {
      socketPath: values.socket, log, limits, ...(values['domain-dir'] === undefined ? {} : { domainDir: values['domain-dir'] }),
    });
  } catch (e) {
    await store.close();
    throw e;
  }
  process.stdout.write(`latchkey: XenStore protocol on ${server.socketPath}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
  await store.close();
  return 0;
}

main().then((code) => { process.exitCode = code; }, (e: unknown) => {
  process.stderr.write(`latchkey-xenstore: ${(e as Error).message}\n`);
  process.exitCode = 1;
});

import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { open } from '../../src/index.js';
import { contractSuite } from './suite.js';

// The same contract on a durable store (fsync'd log in a fresh directory).
contractSuite('disk', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'latchkey-contract-'));
  return { store: await open(dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

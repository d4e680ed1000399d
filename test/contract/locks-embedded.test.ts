import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { open } from '../../src/index.js';
import { lockContractSuite } from './locks.js';

lockContractSuite('memory', async () => ({ store: await open(), cleanup: async () => {} }));

lockContractSuite('disk', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'latchkey-locks-'));
  return { store: await open(dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

import { open } from '../../src/index.js';
import { disk } from './backends.js';
import { lockContractSuite } from './locks.js';

lockContractSuite('memory', async () => ({ store: await open(), cleanup: async () => {} }));
lockContractSuite('disk', disk, { crash: 'also' });

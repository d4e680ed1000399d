import { open } from '../../src/index.js';
import { contractSuite } from './suite.js';

contractSuite('memory', async () => ({ store: await open(), cleanup: async () => {} }));

import { contractSuite } from './suite.js';
import { remote } from './backends.js';

contractSuite('remote-tcp', () => remote('tcp'));

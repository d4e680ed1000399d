import { contractSuite } from './suite.js';
import { remote } from './backends.js';

contractSuite('remote-unix', () => remote('unix'));

import { lockContractSuite } from './locks.js';
import { remote } from './backends.js';

lockContractSuite('remote-unix', () => remote('unix'));
lockContractSuite('remote-tcp', () => remote('tcp'));

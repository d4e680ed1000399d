import { lockContractSuite } from './locks.js';
import { remote } from './backends.js';

lockContractSuite('remote-unix', () => remote('unix'));
lockContractSuite('remote-tcp', () => remote('tcp'));
// Durable servers: the promises that outlive a server crash.
lockContractSuite('remote-unix-disk', () => remote('unix', {}, true), { crash: 'only' });
lockContractSuite('remote-tcp-disk', () => remote('tcp', {}, true), { crash: 'only' });

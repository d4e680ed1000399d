import { contract } from './suite.js';
import { remote } from './backends.js';

contract(remote('tcp'));

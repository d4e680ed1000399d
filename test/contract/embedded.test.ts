import { contract } from './suite.js';
import { embedded } from './backends.js';

contract(embedded);

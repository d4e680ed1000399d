import { disk, remote } from './backends.js';
import { contractSuite } from './suite.js';

// The same contract with every non-empty value in value files (inline
// threshold 0), read back through the value cache: embedded with no cache at
// all (every get is a positional read, checksummed) and remote over a Unix
// socket with a tiny one (reads evict each other).
contractSuite('disk-values', () => disk({ inlineValueBytes: 0, cacheBytes: 0 }));
contractSuite('remote-unix-disk-values', () => remote('unix', {}, true, { inlineValueBytes: 0, cacheBytes: 4096 }));

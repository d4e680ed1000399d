/** Big files and big arrays over any Store (docs/bigfile.md). */
export { openBigFile, openBigArray } from './file.js';
export { parseMeta, DTYPES } from './meta.js';
export { BigFileHandleImpl } from './handle.js';

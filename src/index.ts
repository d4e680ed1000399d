export * from './api.js';
export { LatchkeyError, BugError, ErrorCodes } from './core/errors.js';
export type { ErrorCode } from './core/errors.js';

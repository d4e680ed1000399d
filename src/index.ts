export * from './api.js';
export { LatchkeyError, BugError, ErrorCodes } from './core/errors.js';
export type { ErrorCode } from './core/errors.js';
export { open } from './engine/open.js';
export type { OpenOptions } from './engine/open.js';
export { connect, RemoteStore } from './client/store.js';
export type { ConnectOptions } from './client/store.js';

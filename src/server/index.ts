/** The daemon (`procsock serve`): a sockexec-compatible process server. */
export type { ConnectionState } from './connection.js';
export { resolveServeOptions, SERVE_DEFAULTS, type ServeOptions } from './options.js';
export { Server, type ServerState, serve } from './server.js';

/**
 * Where programs run, as the API takes it: `'local'` (children of this process), a daemon
 * socket path, or a `Transport` of the user's own — resolved here, once, to a transport.
 * The client (run, createExec, connect) and the Shell all take a `Target`.
 */
import { describeValue } from '../core/limits.js';
import { ArgumentError } from '../errors.js';
import { localTransport } from './local.js';
import { daemonTransport } from './socket.js';
import type { Transport } from './transport.js';

/**
 * `'local'` (the default): programs are children of this process.
 * `{ socket: path }` or a path string: programs are run by the daemon listening there.
 * A `Transport`: programs run wherever it starts them.
 */
export type Target = 'local' | { socket: string } | string | Transport;

let defaultLocal: Transport | null = null;
/** The daemon transport last resolved: `run(argv, { socket })` gives the same path call after call. */
let lastDaemon: { path: string; transport: Transport } | null = null;

/** The transport of a target; throws `ArgumentError` for anything else. */
export function resolveTransport(target: Target | undefined): Transport {
  if (target === undefined || target === 'local') {
    defaultLocal ??= localTransport();
    return defaultLocal;
  }
  if (isTransport(target)) return target;
  const path = typeof target === 'string' ? target : (target as { socket?: unknown })?.socket;
  if (typeof path !== 'string' || path === '') {
    throw new ArgumentError(
      `target must be 'local', a socket path, { socket: path } or a transport; got ${describeValue(target)}`,
    );
  }
  if (lastDaemon?.path !== path) lastDaemon = { path, transport: daemonTransport(path) };
  return lastDaemon.transport;
}

export function isTransport(value: unknown): value is Transport {
  return typeof (value as Transport | null)?.prepare === 'function';
}

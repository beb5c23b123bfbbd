/**
 * Where a client runs its programs: as local children, or through a daemon socket. Every
 * client call turns its target into a `ProcessChannel` here, so ez-mode and the session
 * share one way of starting a program.
 */
import type { Socket } from 'node:net';
import type { ProcessChannel } from '../channel/channel.js';
import { LocalChannel } from '../channel/local.js';
import { connectToDaemon, SocketChannel } from '../channel/socket.js';
import { AbortError, ArgumentError } from '../errors.js';

/**
 * `'local'` (the default): programs are children of this process.
 * `{ socket: path }` or a path string: programs are run by the daemon listening there.
 */
export type Target = 'local' | { socket: string } | string;

/** Options that only apply to local programs (a daemon's programs inherit the daemon's). */
export interface LocalOptions {
  /** Working directory of the program. Default: this process's. */
  cwd?: string;
  /** Environment of the program. Default: this process's. */
  env?: NodeJS.ProcessEnv;
  /** Milliseconds between TERM and KILL when a program is stopped. Default 5000. */
  killTimeout?: number;
  /** Start the program in its own process group and signal the whole group. Default false. */
  processGroup?: boolean;
}

export type ResolvedTarget = { kind: 'local' } | { kind: 'socket'; path: string };

export function resolveTarget(target: Target | undefined): ResolvedTarget {
  if (target === undefined || target === 'local') return { kind: 'local' };
  const path = typeof target === 'string' ? target : target?.socket;
  if (typeof path !== 'string' || path === '') {
    throw new ArgumentError(
      `target must be 'local', a socket path, or { socket: path }; got ${describe(target)}`,
    );
  }
  return { kind: 'socket', path };
}

/**
 * Connects first when the target is a daemon, and starts argv. `start` runs at once with
 * the new channel, to write what stdin is known up front: for a daemon, argv and that
 * stdin leave in one write, so a program that exits at once (and a daemon that then
 * hangs up) cannot make a second write fail and lose the reply.
 */
export async function openChannel(
  target: ResolvedTarget,
  argv: readonly string[],
  local: LocalOptions,
  signal?: AbortSignal,
  start?: (channel: ProcessChannel) => void,
): Promise<ProcessChannel> {
  if (target.kind === 'local') {
    throwIfAborted(signal);
    const channel = new LocalChannel(argv, local);
    start?.(channel);
    return channel;
  }
  const socket = await connectSocket(target.path, signal);
  socket.cork();
  try {
    const channel = new SocketChannel(socket, argv);
    start?.(channel);
    return channel;
  } finally {
    socket.uncork();
  }
}

export async function connectSocket(path: string, signal?: AbortSignal): Promise<Socket> {
  throwIfAborted(signal);
  try {
    return await connectToDaemon(path, signal);
  } catch (error) {
    if (signal?.aborted) throw abortError(signal);
    throw error;
  }
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

export function abortError(signal: AbortSignal): AbortError {
  return new AbortError('the operation was aborted; the program was stopped', {
    cause: signal.reason,
  });
}

/** Rejects misuse at once: argv must be a non-empty array of strings. */
export function checkArgv(argv: unknown, what = 'argv'): readonly string[] {
  if (!Array.isArray(argv) || argv.length === 0) {
    throw new ArgumentError(`${what} must be a non-empty array of strings; got ${describe(argv)}`);
  }
  for (const [index, arg] of argv.entries()) {
    if (typeof arg !== 'string') {
      throw new ArgumentError(`${what}[${index}] must be a string; got ${describe(arg)}`);
    }
  }
  if (argv[0] === '') throw new ArgumentError(`${what}[0], the program, must not be empty`);
  return argv as readonly string[];
}

export function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'string') return JSON.stringify(value.slice(0, 40));
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}

/**
 * Every error procsock throws or rejects with is a `ProcsockError` carrying a stable `code`.
 * Match on `code`: messages may be reworded, codes never change.
 *
 * | code                      | class            | when                                                   |
 * |---------------------------|------------------|--------------------------------------------------------|
 * | PROCSOCK_ARGUMENT         | ArgumentError    | a call got an invalid argument (empty argv, bad option) |
 * | PROCSOCK_STATE            | StateError       | a call made in the wrong state (args twice, after close) |
 * | PROCSOCK_PROTOCOL         | ProtocolError    | the peer broke the wire protocol (malformed netstring)   |
 * | PROCSOCK_UNSUPPORTED      | UnsupportedOptionError | the transport cannot honour an option (cwd through a plain daemon) |
 * | PROCSOCK_LIMIT            | LimitError       | a limit was exceeded (maxBuffer, a netstring's length…)  |
 * | PROCSOCK_CONNECT          | ConnectError     | cannot connect to the daemon socket                      |
 * | PROCSOCK_CLOSED           | ClosedError      | the connection ended before the program's exit arrived   |
 * | PROCSOCK_TIMEOUT          | TimeoutError     | `timeout` (whole run) or `idleTimeout` (no data) expired |
 * | PROCSOCK_ABORTED          | AbortError       | the caller's AbortSignal fired                           |
 * | PROCSOCK_SOCKET_PATH      | SocketPathError  | the daemon cannot use its socket path                    |
 * | PROCSOCK_SHELL_TIMEOUT    | ShellTimeoutError| a shell command did not finish in time; shell killed     |
 * | PROCSOCK_SHELL_CRASH      | ShellCrashError  | the shell exited non-zero or by a signal                 |
 * | PROCSOCK_SHELL_EXIT       | ShellExitError   | the shell exited zero without being asked to             |
 * | PROCSOCK_POLICY           | PolicyError      | the daemon's policy options are invalid                  |
 * | PROCSOCK_USAGE            | UsageError       | a command line is malformed (exit status 100)            |
 * | PROCSOCK_SPAWN            | SpawnError       | procsock could not start the program: out of descriptors, memory or processes |
 */

import { getSystemErrorMap } from 'node:util';
import type { ExecResult } from './client/execute.js';

export type ProcsockErrorCode =
  | 'PROCSOCK_ARGUMENT'
  | 'PROCSOCK_STATE'
  | 'PROCSOCK_PROTOCOL'
  | 'PROCSOCK_UNSUPPORTED'
  | 'PROCSOCK_LIMIT'
  | 'PROCSOCK_CONNECT'
  | 'PROCSOCK_CLOSED'
  | 'PROCSOCK_TIMEOUT'
  | 'PROCSOCK_ABORTED'
  | 'PROCSOCK_SOCKET_PATH'
  | 'PROCSOCK_SHELL_TIMEOUT'
  | 'PROCSOCK_SHELL_CRASH'
  | 'PROCSOCK_SHELL_EXIT'
  | 'PROCSOCK_POLICY'
  | 'PROCSOCK_USAGE'
  | 'PROCSOCK_SPAWN';

export abstract class ProcsockError extends Error {
  abstract readonly code: ProcsockErrorCode;
  /**
   * Set on the error that ended a run of `run()` or an exec — its `timeout` or `idleTimeout`
   * (`TimeoutError`), `maxBuffer` (`LimitError`), AbortSignal (`AbortError`): the result of
   * the run until then, the output collected before it was stopped included; its `reason`
   * names the cause and its status says how the program then ended (both null when that was
   * not learnt: a daemon that was hung up on). Undefined on every other error.
   */
  declare result?: ExecResult<string | Buffer>;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }

  override get name(): string {
    return this.constructor.name;
  }
}

export class ArgumentError extends ProcsockError {
  readonly code = 'PROCSOCK_ARGUMENT' as const;
}

export class StateError extends ProcsockError {
  readonly code = 'PROCSOCK_STATE' as const;
}

export class ProtocolError extends ProcsockError {
  readonly code = 'PROCSOCK_PROTOCOL' as const;
}

/**
 * An option the transport cannot carry out, refused before anything runs (never ignored):
 * `option` names it, `transport` says where (e.g. "the sockexec daemon at /run/x.sock").
 */
export class UnsupportedOptionError extends ProcsockError {
  readonly code = 'PROCSOCK_UNSUPPORTED' as const;
  constructor(
    message: string,
    readonly option: string,
    readonly transport: string,
  ) {
    super(message);
  }
}

/** What limit was exceeded: `limit` is the name of the option that sets it (`maxBuffer`…). */
export class LimitError extends ProcsockError {
  readonly code = 'PROCSOCK_LIMIT' as const;
  constructor(
    message: string,
    readonly limit: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * What the two errors about a daemon's Unix socket share: `path` is the socket's. The client
 * that cannot connect to it is a `ConnectError`; the daemon that cannot use it, a
 * `SocketPathError`.
 */
export abstract class SocketError extends ProcsockError {
  constructor(
    message: string,
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** `reason` is the system error code (ENOENT: no socket file, ECONNREFUSED: nobody listening, EACCES…). */
export class ConnectError extends SocketError {
  readonly code = 'PROCSOCK_CONNECT' as const;
  constructor(
    message: string,
    path: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(message, path, options);
  }
}

export class ClosedError extends ProcsockError {
  readonly code = 'PROCSOCK_CLOSED' as const;
}

/**
 * `option` says which limit expired: `'timeout'` (the whole run's wall-clock limit) or
 * `'idleTimeout'` (the longest wait for the next piece of data); `timeout` is its value in ms.
 */
export class TimeoutError extends ProcsockError {
  readonly code = 'PROCSOCK_TIMEOUT' as const;
  constructor(
    message: string,
    readonly timeout: number,
    readonly option: 'timeout' | 'idleTimeout' = 'timeout',
  ) {
    super(message);
  }
}

export class AbortError extends ProcsockError {
  readonly code = 'PROCSOCK_ABORTED' as const;
}

/** The error of an aborted call; the signal's reason is its `cause`. */
export function abortError(signal: AbortSignal): AbortError {
  return new AbortError('the operation was aborted; the program was stopped', {
    cause: signal.reason,
  });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

export class SocketPathError extends SocketError {
  readonly code = 'PROCSOCK_SOCKET_PATH' as const;
}

export class ShellTimeoutError extends ProcsockError {
  readonly code = 'PROCSOCK_SHELL_TIMEOUT' as const;
  /**
   * What the command had printed before it was killed (a `run('text')`: its collected stdout
   * and stderr, as a result would have had them); null for start(), stop() and a commander,
   * whose output went to its parsers.
   */
  readonly stdout: string | null;
  readonly stderr: string | null;
  constructor(
    message: string,
    options: { stdout?: string | null; stderr?: string | null; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.stdout = options.stdout ?? null;
    this.stderr = options.stderr ?? null;
  }
}

/** `exitCode` or `termSignal` tells how the shell ended (both null when the transport failed). */
export class ShellCrashError extends ProcsockError {
  readonly code = 'PROCSOCK_SHELL_CRASH' as const;
  readonly exitCode: number | null;
  readonly termSignal: string | null;
  constructor(
    message: string,
    options: { exitCode?: number | null; termSignal?: string | null; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.exitCode = options.exitCode ?? null;
    this.termSignal = options.termSignal ?? null;
  }
}

export class ShellExitError extends ProcsockError {
  readonly code = 'PROCSOCK_SHELL_EXIT' as const;
}

/** Invalid daemon policy options; the message is fit for the command line. */
export class PolicyError extends ProcsockError {
  readonly code = 'PROCSOCK_POLICY' as const;
}

/** A malformed command line: printed as one line with the usage, exit status 100. */
export class UsageError extends ProcsockError {
  readonly code = 'PROCSOCK_USAGE' as const;
}

/**
 * procsock could not start the program for want of a resource of its own — descriptors for
 * the pipes (EMFILE, ENFILE), memory for the child's plan and stack (ENOMEM), a process
 * (EAGAIN) — so it never ran: not an exit status (unlike 126/127, which mean the program
 * itself cannot be executed). `reason` is the system error code, `syscall` what failed,
 * `errno` its number as Node gives it (negative). Through the daemon: a stderr line and
 * exit status 125.
 */
export class SpawnError extends ProcsockError {
  readonly code = 'PROCSOCK_SPAWN' as const;
  constructor(
    readonly program: string,
    readonly reason: string,
    readonly syscall: string,
    readonly errno: number,
    options?: { cause?: unknown },
  ) {
    super(`cannot start ${program}: ${reason} (${systemErrorText(errno, reason)})`, options);
  }
}

/** The exit status the daemon reports for a `SpawnError` (as env, timeout and docker do for theirs). */
export const SPAWN_ERROR_EXIT_CODE = 125;

/** "too many open files" for EMFILE: the system's wording, as Node knows it. */
function systemErrorText(errno: number, reason: string): string {
  return getSystemErrorMap().get(errno)?.[1] ?? reason;
}

/** Turns a non-Error thrown value or an unknown Error into something printable, for logs. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' ? `${error.message} (${code})` : error.message;
  }
  return String(error);
}

/**
 * How a program is started: the one seam between `LocalChannel` and the operating system.
 *
 * Two backends start programs the same way and report the same things:
 * - `native`: a small N-API addon (`native/spawn.c`) that starts the child without copying
 *   the Node process (clone with CLONE_VM), without waiting for its exec, and learns of its
 *   exit from a pidfd, so a spawn costs a fraction of child_process's and barely blocks the
 *   event loop;
 * - `child_process`: Node's own `child_process.spawn`, used when the addon is not built.
 *
 * Choose with the `spawnBackend` option or the `PROCSOCK_SPAWN` environment variable
 * (`auto` | `native` | `child_process`); `auto` (the default) takes `native` when it loaded.
 */
import type { Terminal } from '../../core/terminal.js';
import { SpawnError } from '../../errors.js';
import type { ChildUsage } from '../usage.js';

export type SpawnBackendName = 'native' | 'child_process';
export type SpawnBackendChoice = 'auto' | SpawnBackendName;
export const SPAWN_BACKEND_CHOICES: readonly SpawnBackendChoice[] = [
  'auto',
  'native',
  'child_process',
];

/** Resource limits applied in the child before exec (soft = hard = the value). */
export interface SpawnLimits {
  /** RLIMIT_CPU, seconds of CPU time. */
  cpuSeconds?: number;
  /** RLIMIT_AS, bytes of address space. */
  addressSpace?: number;
  /** RLIMIT_NOFILE, open descriptors. */
  openFiles?: number;
  /** RLIMIT_NPROC, processes of the user. */
  processes?: number;
}

export interface SpawnRequest {
  /** argv[0] is the program, looked up in the PATH of `env` unless it holds a `/`. */
  argv: readonly string[];
  /**
   * Arguments passed before `argv`: a wrapper's own (the reaper's, see channel/contain.ts).
   * Kept apart so that the program's argv, which its channel holds anyway, is never copied
   * for the child's lifetime: a daemon's program may have 65,536 arguments.
   */
  argvPrefix?: readonly string[];
  /** The file to execute instead of looking argv[0] up (argv[0] is still passed as given). */
  file?: string;
  cwd?: string;
  /** Default: this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Start the child in a process group of its own (setpgid(0, 0)). */
  processGroup: boolean;
  /** Run as this user / group (the supplementary groups are dropped). Needs privilege. */
  uid?: number;
  gid?: number;
  /** Native backend only. */
  rlimits?: SpawnLimits;
  /**
   * Output chunks may be views of a buffer that the next read of the same pipe reuses (see
   * `LocalChannelOptions.lendOutput`). The native backend then also enlarges an output pipe
   * that fills up. `child_process` ignores it (its chunks are always fresh).
   */
  lendOutput?: boolean;
  /**
   * Milliseconds between TERM and KILL should the child outlive the worker thread that
   * started it (a terminated worker's children are stopped like an aborted run, and reaped).
   * Default 5000.
   */
  killGrace?: number;
  /**
   * A fourth pipe, the child's descriptor 3, read as `SpawnedChild.report`: how procsock's
   * reaper (src/channel/contain.ts) reports the run.
   */
  report?: boolean;
  /**
   * Let the child outlive this process. Otherwise the native backend has the kernel KILL it
   * when the thread that started it ends (PR_SET_PDEATHSIG); child_process cannot (see
   * src/channel/contain.ts for what is done instead).
   */
  detached?: boolean;
  /**
   * PTY mode (native backend only; child_process refuses it with `UnsupportedOptionError`):
   * the child leads a new session whose controlling terminal is a new pseudo-terminal, on
   * stdin and stdout (and stderr with `stderr: 'pty'`, when `SpawnedChild.stderr` is null).
   * `stdin` writes to the terminal and its `end()` types the end-of-file character;
   * `stdout` reads the terminal, and ends (not fails) when its last holder closes it.
   */
  terminal?: Terminal;
}

/**
 * A child's output pipe: the part of a `Readable` that `LocalChannel` uses. Node's child
 * streams are one; the native backend's are lighter (no stream machinery per pipe).
 */
export interface ChildOutput {
  /** The pipe's descriptor while it is open, when the backend can tell. */
  readonly fd?: number | undefined;
  readonly destroyed: boolean;
  readonly readableEnded: boolean;
  /** Bytes read but not yet emitted. */
  readonly readableLength: number;
  isPaused(): boolean;
  pause(): this;
  resume(): this;
  destroy(): this;
  /** Whether the pipe keeps the event loop alive (Node's streams and the native ones have it). */
  ref?(): unknown;
  unref?(): unknown;
  on(event: 'data', listener: (chunk: Buffer) => void): this;
  on(event: 'error', listener: (error: Error) => void): this;
  /** Emitted once, after the last 'data', at end of file, error or destroy. */
  on(event: 'close', listener: () => void): this;
}

/** A child's stdin pipe: the part of a `Writable` that `LocalChannel` uses. */
export interface ChildInput {
  readonly writableEnded: boolean;
  write(data: Buffer | string): boolean;
  end(): this;
  destroy(): this;
  ref?(): unknown;
  unref?(): unknown;
  on(event: 'drain', listener: () => void): this;
  on(event: 'error', listener: (error: Error) => void): this;
}

/**
 * Whether an error of a `SpawnedChild` says that it could not be started (ENOENT, EACCES…):
 * its `syscall` is `spawn <file>`, as child_process has it (a failed kill says `kill`).
 */
export function isSpawnFailure(error: unknown): boolean {
  const syscall = (error as NodeJS.ErrnoException | null)?.syscall;
  return typeof syscall === 'string' && syscall.startsWith('spawn');
}

/** Errors of a spawn that mean the system refused procsock a resource, not the program. */
const LAUNCH_FAILURES = new Set(['EMFILE', 'ENFILE', 'ENOMEM', 'EAGAIN']);

/**
 * The `SpawnError` a child's `'error'` amounts to when procsock itself could not start the
 * program for want of descriptors, memory or processes (the native backend emits one as
 * it is; child_process reports those as a spawn failure with that errno); null otherwise.
 */
export function asSpawnError(error: unknown, program: string): SpawnError | null {
  if (error instanceof SpawnError) {
    // Named after what was started, which may be procsock's reaper in front of `program`.
    return error.program === program
      ? error
      : new SpawnError(program, error.reason, error.syscall, error.errno, { cause: error.cause });
  }
  const { code, errno } = (error as NodeJS.ErrnoException | null) ?? {};
  if (!isSpawnFailure(error) || code === undefined || !LAUNCH_FAILURES.has(code)) return null;
  return new SpawnError(program, code, 'spawn', typeof errno === 'number' ? errno : 0, {
    cause: error,
  });
}

/**
 * A started (or failed) child, shaped like the part of Node's `ChildProcess` that
 * `LocalChannel` uses, so `child_process` children serve as they are.
 * A child that could not be started emits one `'error'` (with the errno `code`: ENOENT,
 * EACCES…; see `isSpawnFailure`) and no `'exit'`. With child_process it has no `pid` and the
 * error comes on the next tick; the native backend does not wait for the exec, so its child
 * has the pid of the process that tried, and the error comes when that process is reaped.
 * At `'exit'` its stdin is already destroyed, as child_process does: nobody is left to read it.
 */
export interface SpawnedChild {
  readonly pid?: number | undefined;
  readonly stdin: ChildInput | null;
  readonly stdout: ChildOutput | null;
  readonly stderr: ChildOutput | null;
  /** The descriptor-3 pipe when `report` was asked for. */
  readonly report?: ChildOutput | null;
  /** Set before `'exit'` when the backend learns it (wait4): the child's CPU (and peak RSS, when it is the child's). */
  readonly usage?: ChildUsage | null;
  /** Whether waiting for its exit keeps the event loop alive. */
  ref?(): void;
  unref?(): void;
  /** Signals the child itself (not its group) while it is not yet reaped. */
  kill(signal?: NodeJS.Signals): boolean;
  /**
   * PTY mode: sets the terminal's window size (the kernel sends SIGWINCH to its foreground
   * group); false once the terminal is closed. Absent without a terminal.
   */
  resize?(columns: number, rows: number): boolean;
  on(event: 'error', listener: (error: Error) => void): this;
  on(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
}

export interface SpawnBackend {
  readonly name: SpawnBackendName;
  /** Throws only for invalid arguments (code ERR_INVALID_ARG_VALUE: a NUL byte). */
  spawn(request: SpawnRequest): SpawnedChild;
}

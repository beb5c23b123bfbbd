/**
 * The `native` backend: `native/spawn.c` (prebuilt, or compiled here: see locate.ts) starts the
 * child sharing our memory until it execs, hands back its pid and three pipe descriptors,
 * and calls back when the child has exited and been reaped. The addon also reads the output
 * pipes (`NativeOutput`: a poll and one read per wake-up, into one shared buffer), which
 * costs a fraction of a `net.Socket` per pipe; stdin becomes a `net.Socket` only when
 * something is written to it (`NativeInput`), for its back-pressure.
 */
import { EventEmitter } from 'node:events';
import { Socket } from 'node:net';
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { isMainThread } from 'node:worker_threads';
import { DEFAULT_KILL_TIMEOUT } from '../../core/limits.js';
import { SpawnError } from '../../errors.js';
import type {
  ChildInput,
  ChildOutput,
  SpawnBackend,
  SpawnedChild,
  SpawnLimits,
  SpawnRequest,
} from './backend.js';
import { requireAddon } from './locate.js';

/** The addon's handle of an open output pipe (native/pipe.c). */
type PipeHandle = { readonly __pipe: unique symbol };

interface Addon {
  init(
    onExit: (pid: number, code: number, signal: number, execErrno: number) => void,
    onRead: (token: number, result: number) => void,
    usePidfd: boolean,
    isWorker: boolean,
  ): string;
  spawn(
    fileAndArgv: string,
    argc: number,
    env: string | null,
    envCount: number,
    cwd: string | null,
    flags: number,
    uid: number,
    gid: number,
    rlimits: number[] | null,
    out: Int32Array,
    killGraceMs: number,
  ): number;
  closeFd(fd: number): void;
  releaseFd(fd: number): void;
  guard(pid: number, processGroup: boolean, killGraceMs: number): boolean;
  unguard(pid: number): void;
  peerCredentials(fd: number): PeerCredentials | null;
  readAvailable(fd: number, into: Uint8Array): number;
  shutdownWrite(fd: number): number;
  setPipeSize(fd: number, bytes: number): number;
  setReadBuffer(buffer: Uint8Array): void;
  pipeOpen(fd: number, token: number): PipeHandle;
  pipeRead(handle: PipeHandle, on: boolean): void;
  pipeClose(handle: PipeHandle): void;
}

/** The process on the other end of a Unix socket, as the kernel recorded it at connect. */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

const FLAG_PROCESS_GROUP = 1;
const FLAG_SET_UID = 2;
const FLAG_SET_GID = 4;
/** What the addon's spawn() could not do before the child existed (out[0] then). */
const FAILED_SYSCALL = ['', 'malloc', 'pipe2', 'clone'] as const;

/**
 * Every output pipe is read into one buffer: a chunk is copied, or lent, before the addon's
 * callback returns, and callbacks never overlap. A listener that keeps a lent chunk pauses
 * its channel (see `lendOutput`): that reader then holds the buffer until it is resumed, and
 * the others read into another (a spare, or a new one).
 */
const READ_BUFFER_SIZE = 1024 * 1024;
/** Buffers given back by readers that held one, kept for the next reader that holds one. */
const MAX_SPARE_BUFFERS = 4;
/** A read this long filled a default pipe: lent output then enlarges the pipe to LENT_PIPE_SIZE. */
const PIPE_FILLED = 64 * 1024;
const LENT_PIPE_SIZE = 1024 * 1024;

/** Linux resource numbers (the same on every architecture Node runs on). */
const RLIMIT = { cpuSeconds: 0, processes: 6, openFiles: 7, addressSpace: 9 } as const;

const signalNames = new Map<number, NodeJS.Signals>();
for (const [name, number] of Object.entries(constants.signals)) {
  if (!signalNames.has(number)) signalNames.set(number, name as NodeJS.Signals);
}

/** Children by pid, until the addon reports them reaped. */
const running = new Map<number, NativeChild>();
const spawned = new Int32Array(4);
/** Open output pipes by token, which the addon passes back with each read. */
const readers = new Map<number, NativeOutput>();
let nextToken = 0;
let readBuffer: Buffer = Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
const spareBuffers: Buffer[] = [];

let addon: Addon | null = null;
let loadError: Error | null = null;
/** How exits are learnt: 'pidfd', or 'sigchld' on kernels without pidfd_open. */
let exitWatch = '';

function load(): Addon | null {
  if (addon || loadError) return addon;
  try {
    const required = requireAddon();
    exitWatch = (required as Addon).init(
      onExit,
      onRead,
      process.env.PROCSOCK_NATIVE_PIDFD !== '0',
      !isMainThread,
    );
    (required as Addon).setReadBuffer(readBuffer);
    addon = required as Addon;
  } catch (error) {
    loadError = error as Error;
  }
  return addon;
}

function onExit(pid: number, code: number, signal: number, execErrno: number): void {
  const child = running.get(pid);
  if (!child) return;
  running.delete(pid);
  if (execErrno > 0) child.failed(-execErrno);
  else child.exited(code >= 0 ? code : null, signal > 0 ? (signalNames.get(signal) ?? null) : null);
}

function onRead(token: number, result: number): void {
  readers.get(token)?.read(result);
}

/** Why the addon is not available (null when it is, or was never tried). */
export function nativeLoadError(): Error | null {
  load();
  return loadError;
}

/** 'pidfd' or 'sigchld' once the addon is loaded; '' when it is not. */
export function nativeExitWatch(): string {
  load();
  return exitWatch;
}

/**
 * SO_PEERCRED of a connected Unix socket descriptor; null when the addon is not built or
 * the descriptor is not such a socket.
 */
export function peerCredentials(fd: number): PeerCredentials | null {
  return load()?.peerCredentials(fd) ?? null;
}

/**
 * One non-blocking read of `fd` into `into`: the bytes read (0 at end of file), -EAGAIN when
 * nothing is there now, another -errno on failure; null when the addon is not built.
 */
export function readAvailable(fd: number, into: Uint8Array): number | null {
  return load()?.readAvailable(fd, into) ?? null;
}

/**
 * shutdown(fd, SHUT_WR) at once: 0, or -errno; null when the addon is not built. (Node's
 * socket.end() shuts down a loop turn or two after the last write.)
 */
export function shutdownWrite(fd: number): number | null {
  const native = load();
  // An addon built before shutdownWrite existed (a stale build) has none.
  return typeof native?.shutdownWrite === 'function' ? native.shutdownWrite(fd) : null;
}

export function nativeAvailable(): boolean {
  return load() !== null;
}

class NativeChild extends EventEmitter implements SpawnedChild {
  pid: number | undefined;
  stdin: NativeInput | null = null;
  stdout: NativeOutput | null = null;
  stderr: NativeOutput | null = null;
  #file: string;
  #args: readonly string[];
  #reaped = false;

  constructor(pid: number | undefined, file: string, args: readonly string[]) {
    super();
    this.pid = pid;
    this.#file = file;
    this.#args = args;
  }

  exited(code: number | null, signal: NodeJS.Signals | null): void {
    this.#reaped = true;
    // As child_process does: nobody is left to read stdin, so release it now.
    this.stdin?.destroy();
    this.emit('exit', code, signal);
  }

  /**
   * The child could not exec (`errno` negative): an 'error' as child_process has it, no
   * 'exit'; or, with `syscall`, there never was a child (no descriptors, no memory):
   * a `SpawnError`.
   */
  failed(errno: number, syscall?: string): void {
    this.#reaped = true;
    this.stdin?.destroy();
    const program = this.#args[0] ?? this.#file;
    this.emit(
      'error',
      syscall
        ? new SpawnError(program, getSystemErrorName(errno), syscall, errno)
        : spawnError(errno, this.#file, this.#args),
    );
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    // Once reaped the pid may belong to someone else.
    if (this.pid === undefined || this.#reaped) return false;
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }
}

function invalidArgument(name: string, value: string): Error {
  const error = new TypeError(
    `The argument '${name}' must be a string without null bytes. Received ${JSON.stringify(value)}`,
  ) as TypeError & { code: string };
  error.code = 'ERR_INVALID_ARG_VALUE';
  return error;
}

function checkNul(name: string, value: string): string {
  if (value.includes('\0')) throw invalidArgument(name, value);
  return value;
}

function rlimitTriples(limits: SpawnLimits | undefined): number[] | null {
  if (!limits) return null;
  const triples: number[] = [];
  for (const [key, resource] of Object.entries(RLIMIT)) {
    const value = limits[key as keyof SpawnLimits];
    if (value === undefined) continue;
    const limit = value === Number.POSITIVE_INFINITY ? -1 : Math.floor(value);
    triples.push(resource, limit, limit);
  }
  return triples.length > 0 ? triples : null;
}

/**
 * An output pipe read by the addon. Reading starts at once and stops while paused. Lent
 * output (see `lendOutput`): 'data' carries a view of the shared read buffer — no
 * allocation, no page faults, no garbage per chunk — valid until the listener returns, or,
 * if the listener pauses, until it resumes: the paused reader keeps the buffer meanwhile.
 * A pipe that a read fills (bulk output) is enlarged to LENT_PIPE_SIZE, for 16 times fewer
 * reads and wake-ups; a program that prints a line thus costs no megabyte of pipe, nor any
 * of the user's pipe quota (pipe-user-pages-soft). Otherwise each chunk is a copy.
 */
class NativeOutput extends EventEmitter implements ChildOutput {
  readonly readableLength = 0; // nothing is ever held back: each read is emitted at once
  readableEnded = false;
  #native: Addon;
  #fd: number;
  #handle: PipeHandle | null;
  #token: number;
  #lend: boolean;
  #enlarged = false;
  #paused = false;
  /** The read buffer, taken out of the addon's hands while a paused listener keeps a chunk. */
  #held: Buffer | null = null;

  constructor(native: Addon, fd: number, lend: boolean) {
    super();
    this.#native = native;
    this.#fd = fd;
    this.#lend = lend;
    nextToken = (nextToken % 0x7fffffff) + 1;
    this.#token = nextToken;
    this.#handle = native.pipeOpen(fd, this.#token);
    readers.set(this.#token, this);
    native.pipeRead(this.#handle, true);
  }

  get fd(): number | undefined {
    return this.#handle ? this.#fd : undefined;
  }

  get destroyed(): boolean {
    return this.#handle === null;
  }

  /** From the addon: bytes read into the shared buffer, 0 at end of file, or -errno. */
  read(result: number): void {
    if (result > 0) {
      const view = readBuffer.subarray(0, result);
      if (!this.#lend) {
        this.emit('data', Buffer.from(view));
        return;
      }
      if (result >= PIPE_FILLED && !this.#enlarged) {
        this.#enlarged = true;
        this.#native.setPipeSize(this.#fd, LENT_PIPE_SIZE); // best effort
      }
      const buffer = readBuffer;
      this.emit('data', view);
      if (this.#paused && this.#handle) {
        // The listener keeps the chunk until it resumes us: nobody may read into it till then.
        this.#held = buffer;
        readBuffer = spareBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
        this.#native.setReadBuffer(readBuffer);
      }
      return;
    }
    if (result === 0) this.readableEnded = true;
    else this.emit('error', errnoError(result, 'read'));
    this.destroy();
  }

  isPaused(): boolean {
    return this.#paused;
  }

  pause(): this {
    if (!this.#paused && this.#handle) this.#native.pipeRead(this.#handle, false);
    this.#paused = true;
    return this;
  }

  resume(): this {
    if (this.#paused && this.#handle) this.#native.pipeRead(this.#handle, true);
    this.#paused = false;
    // The listener is done with its chunk: the buffer can be read into again.
    if (this.#held && spareBuffers.length < MAX_SPARE_BUFFERS) spareBuffers.push(this.#held);
    this.#held = null;
    return this;
  }

  /** Stops reading and closes the pipe; 'close' follows on the next tick. */
  destroy(): this {
    if (!this.#handle) return this;
    this.#native.pipeClose(this.#handle);
    this.#handle = null;
    this.#held = null; // a chunk may still be referenced: left to the garbage collector
    readers.delete(this.#token);
    process.nextTick(() => this.emit('close'));
    return this;
  }
}

/**
 * The child's stdin: a bare descriptor until the first write, then a `net.Socket` (for its
 * back-pressure and 'drain'). Most programs run from a daemon get no input at all, and
 * closing a descriptor is all their stdin then costs. The addon holds the bare descriptor
 * (it closes it if the environment goes away first) and closes it — `fs.closeSync` would
 * make a worker warn "closed but not opened in unmanaged mode".
 */
class NativeInput extends EventEmitter implements ChildInput {
  writableEnded = false;
  #native: Addon;
  #fd: number;
  #socket: Socket | null = null;
  #destroyed = false;

  constructor(native: Addon, fd: number) {
    super();
    this.#native = native;
    this.#fd = fd;
  }

  write(data: Buffer | string): boolean {
    if (this.#destroyed) return true; // nobody reads it any more: dropped, as after EPIPE
    return this.#open().write(data);
  }

  end(): this {
    if (this.writableEnded) return this;
    this.writableEnded = true;
    if (this.#socket) this.#socket.end();
    else this.#closeDescriptor();
    return this;
  }

  destroy(): this {
    this.#destroyed = true;
    if (this.#socket) this.#socket.destroy();
    else this.#closeDescriptor();
    return this;
  }

  #open(): Socket {
    if (!this.#socket) {
      this.#native.releaseFd(this.#fd); // the Socket owns it from now on
      const socket = new Socket({ fd: this.#fd, readable: false, writable: true });
      this.#fd = -1;
      socket.on('drain', () => this.emit('drain'));
      socket.on('error', (error) => this.emit('error', error));
      this.#socket = socket;
    }
    return this.#socket;
  }

  #closeDescriptor(): void {
    if (this.#fd >= 0) this.#native.closeFd(this.#fd);
    this.#fd = -1;
  }
}

/** As child_process reports a program it could not start (`errno` negative). */
function spawnError(errno: number, file: string, argv: readonly string[]): Error {
  return Object.assign(errnoError(errno, `spawn ${file}`), {
    path: file,
    spawnargs: argv.slice(1),
  });
}

/** `errno` is negative, as the addon returns it. */
function errnoError(errno: number, syscall: string): NodeJS.ErrnoException {
  const code = getSystemErrorName(errno);
  return Object.assign(new Error(`${syscall} ${code}`), { errno, code, syscall });
}

/** The request's kill grace for the addon (an unsigned 32-bit count of milliseconds). */
function killGrace(request: SpawnRequest): number {
  const grace = request.killGrace ?? DEFAULT_KILL_TIMEOUT;
  return Number.isFinite(grace) ? Math.min(Math.max(Math.floor(grace), 0), 0xffffffff) : 0xffffffff;
}

/**
 * In a worker thread, makes the addon stop and reap a child started by someone else
 * (child_process) should the worker be terminated before the child exits: nothing in
 * JavaScript runs then, and nobody would ever reap it. Returns the function to call at the
 * child's exit (a no-op in the main thread, or without the addon).
 */
export function guardWorkerChild(pid: number, request: SpawnRequest): () => void {
  if (isMainThread) return noop;
  const native = load();
  if (!native?.guard(pid, request.processGroup, killGrace(request))) return noop;
  return () => native.unguard(pid);
}

function noop(): void {}

export const nativeBackend: SpawnBackend = {
  name: 'native',
  spawn(request: SpawnRequest): SpawnedChild {
    const native = load();
    if (!native) throw loadError ?? new Error('the native spawn addon is not available');
    const { argv } = request;
    const file = request.file ?? argv[0]!;
    let fileAndArgv = checkNul('file', file);
    for (const arg of argv) fileAndArgv += `\0${checkNul('args', arg)}`;
    let envText: string | null = null;
    let envCount = 0;
    // Without an env the addon copies the C library's environ. That is the main thread's
    // process.env; a worker's is a copy of its own (and the main thread may be rewriting
    // environ meanwhile): a worker passes it, as child_process would.
    const env = request.env ?? (isMainThread ? undefined : process.env);
    if (env) {
      // As child_process does: every defined variable, in the object's order.
      const pairs: string[] = [];
      for (const key of Object.keys(env)) {
        const value = env[key];
        if (value === undefined) continue;
        pairs.push(`${checkNul('options.env', key)}=${checkNul('options.env', String(value))}`);
      }
      envText = pairs.join('\0');
      envCount = pairs.length;
    }
    const cwd = request.cwd === undefined ? null : checkNul('options.cwd', request.cwd);
    const flags =
      (request.processGroup ? FLAG_PROCESS_GROUP : 0) |
      (request.uid !== undefined ? FLAG_SET_UID : 0) |
      (request.gid !== undefined ? FLAG_SET_GID : 0);
    const errno = native.spawn(
      fileAndArgv,
      argv.length,
      envText,
      envCount,
      cwd,
      flags,
      request.uid ?? -1,
      request.gid ?? -1,
      rlimitTriples(request.rlimits),
      spawned,
      killGrace(request),
    );
    if (errno !== 0) {
      // Nothing was started: out of descriptors for the pipes, of memory, of processes.
      const child = new NativeChild(undefined, file, argv);
      const syscall = FAILED_SYSCALL[spawned[0]!] || 'spawn';
      process.nextTick(() => child.failed(-errno, syscall));
      return child;
    }
    // Started; whether it could exec is known when it is reaped (see native/spawn.c).
    const child = new NativeChild(spawned[0]!, file, argv);
    const lend = request.lendOutput ?? false;
    child.stdin = new NativeInput(native, spawned[1]!);
    child.stdout = new NativeOutput(native, spawned[2]!, lend);
    child.stderr = new NativeOutput(native, spawned[3]!, lend);
    running.set(spawned[0]!, child);
    return child;
  },
};

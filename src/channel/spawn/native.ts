/**
 * The `native` backend: `native/spawn.c` (built at install into build/Release) starts the
 * child sharing our memory until it execs, hands back its pid and three pipe descriptors,
 * and calls back when the child has exited and been reaped. The pipes become `net.Socket`s,
 * so output flows through libuv with the same pause/resume and back-pressure as Node's own
 * child streams.
 */
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { type OnReadOpts, Socket, type SocketConstructorOpts } from 'node:net';
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import type { SpawnBackend, SpawnedChild, SpawnLimits, SpawnRequest } from './backend.js';

interface Addon {
  init(onExit: (pid: number, code: number, signal: number) => void, usePidfd: boolean): string;
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
  ): number;
  peerCredentials(fd: number): PeerCredentials | null;
  readAvailable(fd: number, into: Uint8Array): number;
  setPipeSize(fd: number, bytes: number): number;
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

/** Lent output is read into a buffer of this size at first, grown to LENT_LARGE once filled. */
const LENT_SMALL = 64 * 1024;
const LENT_LARGE = 1024 * 1024;

/** Linux resource numbers (the same on every architecture Node runs on). */
const RLIMIT = { cpuSeconds: 0, processes: 6, openFiles: 7, addressSpace: 9 } as const;

const signalNames = new Map<number, NodeJS.Signals>();
for (const [name, number] of Object.entries(constants.signals)) {
  if (!signalNames.has(number)) signalNames.set(number, name as NodeJS.Signals);
}

/** Children by pid, until the addon reports them reaped. */
const running = new Map<number, NativeChild>();
const spawned = new Int32Array(4);

let addon: Addon | null = null;
let loadError: Error | null = null;
/** How exits are learnt: 'pidfd', or 'sigchld' on kernels without pidfd_open. */
let exitWatch = '';

function load(): Addon | null {
  if (addon || loadError) return addon;
  try {
    // The same relative path from src/channel/spawn and from dist/channel/spawn.
    const required = createRequire(import.meta.url)('../../../build/Release/procsock_spawn.node');
    exitWatch = (required as Addon).init(onExit, process.env.PROCSOCK_NATIVE_PIDFD !== '0');
    addon = required as Addon;
  } catch (error) {
    loadError = error as Error;
  }
  return addon;
}

function onExit(pid: number, code: number, signal: number): void {
  const child = running.get(pid);
  if (!child) return;
  running.delete(pid);
  child.exited(code >= 0 ? code : null, signal > 0 ? (signalNames.get(signal) ?? null) : null);
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

export function nativeAvailable(): boolean {
  return load() !== null;
}

class NativeChild extends EventEmitter implements SpawnedChild {
  pid: number | undefined;
  stdin: Socket | null = null;
  stdout: Socket | null = null;
  stderr: Socket | null = null;
  #reaped = false;

  constructor(pid: number | undefined) {
    super();
    this.pid = pid;
  }

  exited(code: number | null, signal: NodeJS.Signals | null): void {
    this.#reaped = true;
    // As child_process does: nobody is left to read stdin, so release it now.
    this.stdin?.destroy();
    this.emit('exit', code, signal);
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
 * A socket over one of the child's output pipes. Lent: every read goes into the same buffer
 * of this socket (Node's `onread`), and 'data' carries a view of it, valid until the listener
 * returns — no allocation, no page faults, no garbage per chunk (see `lendOutput`). The first
 * time a read fills the buffer (bulk output), the buffer grows from LENT_SMALL to LENT_LARGE
 * and the pipe to as much: 16 times fewer reads and wake-ups. A program that prints a line
 * costs neither a megabyte nor any of the user's pipe quota (pipe-user-pages-soft).
 */
function outputSocket(native: Addon, fd: number, lend: boolean): Socket {
  if (!lend) return new Socket({ fd, readable: true, writable: false });
  let buffer = Buffer.allocUnsafeSlow(LENT_SMALL);
  // Node's Socket takes `onread` (as connect() does), but @types/node does not declare it.
  const options: SocketConstructorOpts & { onread: OnReadOpts } = {
    fd,
    readable: true,
    writable: false,
    onread: {
      // Called once for the first buffer, then after each read for the next one.
      buffer: () => buffer,
      callback: (length: number, into: Uint8Array) => {
        socket.emit('data', Buffer.from(into.buffer, into.byteOffset, length));
        if (length === buffer.length && buffer.length < LENT_LARGE) {
          buffer = Buffer.allocUnsafeSlow(LENT_LARGE);
          native.setPipeSize(fd, LENT_LARGE); // best effort
        }
        return true; // pausing is the listener's call (pause() stops reading at once)
      },
    },
  };
  const socket = new Socket(options);
  return socket;
}

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
    if (request.env) {
      // As child_process does: every defined variable, in the object's order.
      const pairs: string[] = [];
      for (const key of Object.keys(request.env)) {
        const value = request.env[key];
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
    );
    if (errno !== 0) {
      const child = new NativeChild(undefined);
      const code = getSystemErrorName(-errno);
      const error = Object.assign(new Error(`spawn ${file} ${code}`), {
        errno: -errno,
        code,
        syscall: `spawn ${file}`,
        path: file,
        spawnargs: argv.slice(1),
      });
      process.nextTick(() => child.emit('error', error));
      return child;
    }
    const child = new NativeChild(spawned[0]!);
    child.stdin = new Socket({ fd: spawned[1]!, readable: false, writable: true });
    child.stdout = outputSocket(native, spawned[2]!, request.lendOutput ?? false);
    child.stderr = outputSocket(native, spawned[3]!, request.lendOutput ?? false);
    running.set(spawned[0]!, child);
    return child;
  },
};

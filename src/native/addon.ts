/**
 * The one front door to the native addon (`native/*.c`, found by locate.ts): it loads the
 * addon once per thread, wires the addon's two callbacks (a child reaped, an output pipe
 * read) to their registries (exits.ts, reads.ts), and holds the calls that are not about
 * spawning — a socket peer's credentials (the daemon's audit log), a synchronous read of a
 * pipe (the Shell's stderr at its stdout marker), an immediate shutdown. Callers import
 * these from here, never from a spawn backend; the native spawn backend
 * (channel/spawn/native.ts) gets the loaded addon from `loadAddon()`.
 */
import { isMainThread } from 'node:worker_threads';
import { dispatchExit, usageBuffer } from './exits.js';
import { requireAddon } from './locate.js';
import { dispatchRead, initialReadBuffer } from './reads.js';

export { addonReport, nativeUnavailableReason, runtimeLibc } from './locate.js';

/** The addon's handle of an open output pipe (native/pipe.c). */
export type PipeHandle = { readonly __pipe: unique symbol };

/** A spawn request as spawn()'s leading arguments (channel/spawn/native/arguments.ts packs it). */
export type PackedSpawn = [
  fileAndArgv: string,
  argc: number,
  env: string | null,
  envCount: number,
  cwd: string | null,
  flags: number,
  uid: number,
  gid: number,
  rlimits: number[] | null,
];

/** Every call the addon exports (native/module.c's table). */
export interface Addon {
  init(
    onExit: (pid: number, code: number, signal: number, execErrno: number) => void,
    onRead: (token: number, result: number) => void,
    usePidfd: boolean,
    isWorker: boolean,
  ): string;
  spawn(
    ...args: [
      ...request: PackedSpawn,
      out: Int32Array,
      killGraceMs: number,
      window?: [columns: number, rows: number],
    ]
  ): number;
  closeFd(fd: number): void;
  releaseFd(fd: number): void;
  guard(pid: number, processGroup: boolean, killGraceMs: number): boolean;
  unguard(pid: number): void;
  peerCredentials(fd: number): PeerCredentials | null;
  readAvailable(fd: number, into: Uint8Array): number;
  shutdownWrite(fd: number): number;
  cgroupDelegated(path: string): boolean | null;
  /** native/hangup.c: watches a dup of a socket for its peer's full close (not a half-close). */
  hangupWatch(fd: number, onHangup: () => void): HangupHandle;
  hangupUnwatch(handle: HangupHandle): void;
  setPipeSize(fd: number, bytes: number): number;
  setReadBuffer(buffer: Uint8Array): void;
  setUsageBuffer(usage: Float64Array): void;
  /** `terminal`: a pty master, read until EAGAIN per wake-up (a read gives at most 4 KiB). */
  pipeOpen(fd: number, token: number, terminal?: boolean): PipeHandle;
  pipeRead(handle: PipeHandle, on: boolean): void;
  pipeClose(handle: PipeHandle): void;
  pipeRef(handle: PipeHandle, on: boolean): void;
  childRef(pid: number, on: boolean): void;
  /** PTY mode (native/pty.c): stdin's writer on a pty master, and the terminal's settings. */
  ttyWriterOpen(fd: number, onWritable: () => void): TtyHandle;
  ttyWrite(handle: TtyHandle, data: Uint8Array, offset: number): number;
  ttyWaitWritable(handle: TtyHandle): void;
  ttyWriterClose(handle: TtyHandle): void;
  ttyResize(handle: TtyHandle, columns: number, rows: number): number;
  ttyEofChar(handle: TtyHandle): number;
  /** Whether a write waiting for room keeps the event loop alive. */
  ttyRef(handle: TtyHandle, on: boolean): void;
  /** The daemon's native connections (native/conn.c; src/server/native-connections.ts). */
  connInit(
    onEvent: (
      kind: number,
      id: number,
      extra: Buffer | undefined,
      listenerId: number,
    ) => string | undefined,
    record: Float64Array,
    signalNames: string[],
  ): void;
  connListen(path: string, backlog: number): number;
  /** options: native/conn.c's js_conn_accept says which, in order. */
  connAccept(fd: number, id: number, options: number[], reaper: string | null): void;
  /** → how many connections are still served natively (EV_DRAINED tells when none). */
  connUnlisten(id: number): number;
  connRelease(id: number): void;
  connStats(id: number): [served: number, queued: number];
  connSpawn(
    id: number,
    ...args: [...request: PackedSpawn, exitGraceMs: number, out: Int32Array]
  ): number;
  connHandoff(id: number): [fd: number, bytes: Buffer];
  connParse(
    chunks: Buffer[],
    maxArgs: number,
    maxArgLength: number,
    maxArgBytes: number,
  ): { result: 'more' | 'complete' | 'handoff'; used: number; args?: Buffer };
}

/** The addon's handle of a hang-up watch (native/hangup.c). */
export type HangupHandle = { readonly __hangup: unique symbol };

/** The addon's handle of a pty master's writer (native/pty.c). */
export type TtyHandle = { readonly __tty: unique symbol };

/** The process on the other end of a Unix socket, as the kernel recorded it at connect. */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

let addon: Addon | null = null;
let loadError: Error | null = null;
/** How exits are learnt: 'pidfd', or 'sigchld' on kernels without pidfd_open. */
let exitWatch = '';

/** The addon, loaded and initialised on first use; null when it does not load. */
export function loadAddon(): Addon | null {
  if (addon || loadError) return addon;
  try {
    const required = requireAddon() as Addon;
    exitWatch = required.init(
      dispatchExit,
      dispatchRead,
      process.env.PROCSOCK_NATIVE_PIDFD !== '0',
      !isMainThread,
    );
    required.setReadBuffer(initialReadBuffer());
    required.setUsageBuffer(usageBuffer());
    addon = required;
  } catch (error) {
    loadError = error as Error;
  }
  return addon;
}

export function addonAvailable(): boolean {
  return loadAddon() !== null;
}

/** Why the addon is not available (null when it is, or was never tried). */
export function addonLoadError(): Error | null {
  loadAddon();
  return loadError;
}

/** 'pidfd' or 'sigchld' once the addon is loaded; '' when it is not. */
export function addonExitWatch(): string {
  loadAddon();
  return exitWatch;
}

/**
 * SO_PEERCRED of a connected Unix socket descriptor; null when the addon is not built or
 * the descriptor is not such a socket.
 */
export function peerCredentials(fd: number): PeerCredentials | null {
  return loadAddon()?.peerCredentials(fd) ?? null;
}

/**
 * One non-blocking read of `fd` into `into`: the bytes read (0 at end of file), -EAGAIN when
 * nothing is there now, another -errno on failure; null when the addon is not built.
 */
export function readAvailable(fd: number, into: Uint8Array): number | null {
  return loadAddon()?.readAvailable(fd, into) ?? null;
}

/**
 * shutdown(fd, SHUT_WR) at once: 0, or -errno; null when the addon is not built. (Node's
 * socket.end() shuts down a loop turn or two after the last write.)
 */
export function shutdownWrite(fd: number): number | null {
  const native = loadAddon();
  // An addon built before shutdownWrite existed (a stale build) has none.
  return typeof native?.shutdownWrite === 'function' ? native.shutdownWrite(fd) : null;
}

/**
 * Watches the connected Unix socket `fd` for its peer's close WITHOUT reading it: `onHangup`
 * is called once when the peer has closed its end — fully, or only its writing side (a
 * half-close, which the kernel reports at once even with data unread before it) — or the
 * socket failed. Returns the function that stops watching (call it before the socket is
 * closed: the watch holds a dup of it); null when the addon is not built (or is a stale
 * build without the call).
 */
export function watchHangup(fd: number, onHangup: () => void): (() => void) | null {
  const native = loadAddon();
  if (typeof native?.hangupWatch !== 'function') return null;
  const handle = native.hangupWatch(fd, onHangup);
  return () => native.hangupUnwatch(handle);
}

/**
 * Whether systemd marked the cgroup directory `path` as delegated (`Delegate=yes`: the xattr
 * trusted.delegate or user.delegate is "1"); null when that cannot be read or there is no addon.
 */
export function cgroupDelegated(path: string): boolean | null {
  const native = loadAddon();
  return typeof native?.cgroupDelegated === 'function' ? native.cgroupDelegated(path) : null;
}

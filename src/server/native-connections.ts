/**
 * The daemon's plain-protocol connections served in native code (native/conn.c): the addon
 * accepts in batches on a listening socket of its own, keeps the Server's slots and queue
 * (-m, -q), reads and decodes each request, spawns the program, relays stdin and output and
 * writes the reply, on one epoll set. Under sockexec's policy with no audit log a connection
 * costs JavaScript nothing at all; otherwise this side is told only what it must decide or
 * record:
 *
 *   a complete argv       → the policy's plan: spawned natively, or handed off
 *   an exec failure       → its stderr line, as LocalChannel words it
 *   the end               → the audit record (of a connection JavaScript was asked about)
 *   the last one ended    → after NativeListener.close(): the Server's shutdown may finish
 *
 * Anything the native path does not do — the extension's opening, a malformed or over-limit
 * request, a refusal, a spawn that failed — is handed off before anything ran: the client's
 * socket and every byte read from it become a JS `Connection`, which serves it exactly as any
 * client (so its replies, logs and audit records are the JS path's own).
 *
 * The native path is used where it can do everything a connection needs (`nativePathFor`):
 * the native spawn backend on the main thread, no debug log, no output or stdin limit, and
 * when contained, sockexec's open policy without an audit log or a cgroup per run (conn.c
 * starts each program under procsock_reaper itself and reads its report). PROCSOCK_DAEMON_NATIVE=0 turns it off (for A/B measurements).
 */
import { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { isMainThread } from 'node:worker_threads';
import { reaperPath } from '../channel/contain.js';
import { DEFAULT_EXIT_GRACE, execFailure, spawnBackendInUse } from '../channel/local.js';
import { packSpawn } from '../channel/spawn/native/arguments.js';
import { signalName } from '../core/signals.js';
import { type Addon, loadAddon } from '../native/addon.js';
import type { AuditLog, AuditRecord } from '../policy/audit.js';
import { isRefusal } from '../policy/policy.js';
import { planSpawnFields } from './connection.js';
import type { ResolvedServeOptions } from './options.js';

const EV_REQUEST = 2;
const EV_EXEC_ERROR = 3;
const EV_CLOSED = 4;
const EV_DRAINED = 5;

/** native/conn.c's record fields (REC_*), filled in just before EV_CLOSED. */
const REC = {
  pid: 0,
  code: 1,
  signal: 2,
  reason: 3,
  error: 4,
  bytesIn: 5,
  bytesOut: 6,
  user: 7,
  system: 8,
  wall: 9,
  peerPid: 10,
  peerUid: 11,
  peerGid: 12,
  errno: 13,
  /** ms since the accept, at EV_REQUEST */
  elapsed: 14,
} as const;
const record = new Float64Array(new ArrayBuffer(15 * Float64Array.BYTES_PER_ELEMENT));
/** conn.c's R_* codes, as the audit log words them. */
const REASONS = [
  null,
  'exit',
  'signal',
  'deadline',
  'hangup',
  'shutdown',
  'protocol-violation',
  'spawn-failure',
];
const spawned = new Int32Array(5);

/** What a Server gives its native connections and listener. */
export interface NativeHost {
  readonly options: ResolvedServeOptions;
  readonly audit: AuditLog | null;
  /** A native connection became a JS one (its socket and the bytes read so far), in its slot. */
  onHandoff(connection: NativeConnection, socket: Socket, prefix: Buffer, elapsedMs: number): void;
}

let hub: Addon | null = null;
/** The connections JavaScript was asked about (EV_REQUEST), until they end. */
const connections = new Map<number, NativeConnection>();
const listeners = new Map<number, NativeListener>();
let nextListenerId = 1;

function onEvent(
  kind: number,
  id: number,
  extra: Buffer | undefined,
  listenerId: number,
): string | undefined {
  if (kind === EV_EXEC_ERROR) return execErrorMessage(extra!);
  if (kind === EV_REQUEST) {
    const listener = listeners.get(listenerId);
    if (!listener) return undefined;
    const connection = new NativeConnection(id, listener, record[REC.elapsed]!);
    connections.set(id, connection);
    connection.onRequest(extra);
  } else if (kind === EV_CLOSED) {
    connections.get(id)?.onClosed();
  } else if (kind === EV_DRAINED) {
    listeners.get(listenerId)?.drained();
  }
  return undefined;
}

/** `program` could not be executed (the errno in the record): LocalChannel's words for it. */
function execErrorMessage(program: Buffer): string {
  return execFailure(program.toString('utf8'), getSystemErrorName(-record[REC.errno]!))[1];
}

/** The addon, its connection hub initialised; null where the native path is unavailable. */
function nativeHub(): Addon | null {
  if (hub) return hub;
  const addon = loadAddon();
  if (!addon || typeof addon.connInit !== 'function') return null;
  const names: string[] = [''];
  for (let n = 1; n < 65; n++) names.push(signalName(n)?.slice(3) ?? '');
  addon.connInit(onEvent, record, names);
  hub = addon;
  return hub;
}

/** Whether a daemon with these options serves plain connections natively (see the top). */
export function nativePathFor(options: ResolvedServeOptions): boolean {
  if (process.env.PROCSOCK_DAEMON_NATIVE === '0') return false;
  if (!isMainThread || options.log !== null) return false;
  if (options.contain && !containsNatively(options)) return false;
  const policy = options.policy.options;
  if (policy.maxOutputBytes !== undefined || policy.maxStdinBytes !== undefined) return false;
  if (spawnBackendInUse() !== 'native') return false;
  return nativeHub() !== null;
}

/** Whether `listenNative` can be used here (the addon is built): also for the JS path's listener. */
export function nativeListenAvailable(): boolean {
  return nativeHub() !== null;
}

/**
 * A contained daemon's connections are native when every run is the same, sockexec's: the
 * open policy without an audit log (conn.c then runs argv under the reaper itself, as
 * LocalChannel would), and no cgroup per run.
 */
function containsNatively(options: ResolvedServeOptions): boolean {
  const { policy } = options;
  return (
    policy.isOpen &&
    policy.options.audit === undefined &&
    options.cgroup === null &&
    reaperPath() !== null
  );
}

/**
 * Binds and listens on `path` natively (the caller narrows the umask around it): the
 * descriptor, or a negative errno.
 */
export function listenNative(path: string, backlog: number): number {
  return nativeHub()!.connListen(path, backlog);
}

/** A listening socket served natively, with the Server's slots and queue. */
export class NativeListener {
  readonly #id = nextListenerId++;
  readonly host: NativeHost;
  #open = true;
  #resolveDrained: (() => void) | null = null;

  /** Accepts on `fd` (a listening socket, owned from now on) for `host`. */
  constructor(fd: number, host: NativeHost) {
    this.host = host;
    const { options } = host;
    const { limits } = options;
    listeners.set(this.#id, this);
    nativeHub()!.connAccept(
      fd,
      this.#id,
      [
        options.timeout,
        options.requestTimeout,
        options.killTimeout,
        limits.maxArgs,
        limits.maxArgLength,
        limits.maxArgBytes,
        limits.maxDataLength,
        host.audit !== null ? 1 : 0, // the peer's credentials, for the record
        // Nothing to decide or record per argv: conn.c runs it as the JS path would.
        options.policy.isOpen && host.audit === null ? 1 : 0,
        options.processGroup ? 1 : 0,
        DEFAULT_EXIT_GRACE,
        options.maxConnections,
        options.backlog,
      ],
      options.contain ? reaperPath() : null,
    );
  }

  /** Connections served natively now, and clients waiting for a slot. */
  get counts(): { served: number; queued: number } {
    if (!this.#open) return { served: 0, queued: 0 };
    const [served, queued] = hub!.connStats(this.#id);
    return { served, queued };
  }

  /**
   * Stops accepting, closes the listening socket and the waiting clients, and shuts down the
   * connections served natively (Connection.shutdown); settles once they have all ended.
   */
  close(): Promise<void> {
    if (!this.#open) return Promise.resolve();
    this.#open = false;
    const left = hub!.connUnlisten(this.#id);
    if (left === 0) {
      listeners.delete(this.#id);
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.#resolveDrained = resolve;
    });
  }

  /** A handed-off client's Connection has ended: its slot is free. */
  release(): void {
    if (this.#open) hub!.connRelease(this.#id);
  }

  drained(): void {
    listeners.delete(this.#id);
    this.#resolveDrained?.();
  }
}

/**
 * A client served natively that JavaScript was asked about (its argv, for the policy), until
 * it ends or is handed off.
 */
export class NativeConnection {
  readonly id: number;
  readonly #listener: NativeListener;
  readonly #host: NativeHost;
  readonly #acceptedAt: number;
  readonly #startedAt: number;
  #argv: string[] = [];

  constructor(id: number, listener: NativeListener, elapsedMs: number) {
    this.id = id;
    this.#listener = listener;
    this.#host = listener.host;
    this.#acceptedAt = Date.now() - elapsedMs;
    this.#startedAt = performance.now() - elapsedMs;
  }

  /** The argv is complete (or, with no `args`, the request is not the native path's). */
  onRequest(args: Buffer | undefined): void {
    if (args === undefined) {
      this.#handoff();
      return;
    }
    try {
      if (!this.#spawn(args.toString('utf8').split('\0'))) this.#handoff();
    } catch {
      this.#handoff(); // a NUL byte in an env value, say: the JS path reports it
    }
  }

  /** Starts the plan natively; false when the JS path must serve the request instead. */
  #spawn(argv: string[]): boolean {
    this.#argv = argv;
    // An empty name is refused, and refusals are worded by the JS path.
    if (argv[0] === '') return false;
    const { options } = this.#host;
    const plan = options.policy.plan(argv);
    if (isRefusal(plan)) return false;
    const request = {
      argv: plan.argv,
      ...planSpawnFields(plan),
      processGroup: options.processGroup,
    };
    const packed = packSpawn(request, plan.file ?? plan.argv[0]!);
    this.#argv = plan.argv;
    return hub!.connSpawn(this.id, ...packed, DEFAULT_EXIT_GRACE, spawned) === 0;
  }

  #handoff(): void {
    const [fd, prefix] = hub!.connHandoff(this.id);
    connections.delete(this.id);
    const socket = new Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
    socket.pause();
    this.#host.onHandoff(this, socket, prefix, performance.now() - this.#startedAt);
  }

  /** A handed-off client's Connection has closed: its slot is free. */
  handedOffClosed(): void {
    this.#listener.release();
  }

  onClosed(): void {
    connections.delete(this.id);
    this.#host.audit?.write(this.#record());
  }

  #record(): AuditRecord {
    const pid = record[REC.pid]!;
    const code = record[REC.code]!;
    const signal =
      record[REC.signal]! > 0 ? (signalName(record[REC.signal]!)?.slice(3) ?? null) : null;
    const exited = pid >= 0 && (code >= 0 || signal !== null || record[REC.signal]! > 0);
    const wall = record[REC.wall]!;
    const known = (value: number) => (value >= 0 ? value : null);
    return {
      time: new Date(this.#acceptedAt).toISOString(),
      peer:
        record[REC.peerPid]! >= 0
          ? { pid: record[REC.peerPid]!, uid: record[REC.peerUid]!, gid: record[REC.peerGid]! }
          : null,
      argv: this.#argv,
      pid: pid >= 0 ? pid : null,
      exitCode: exited ? (signal === null ? Math.max(code, 0) : null) : null,
      termSignal: exited ? signal : null,
      refused: null,
      reason: REASONS[record[REC.reason]!] ?? null,
      usage:
        wall >= 0
          ? {
              userCPUTime: known(record[REC.user]!),
              systemCPUTime: known(record[REC.system]!),
              maxRSS: null,
              memoryPeak: null,
              wallTime: wall,
            }
          : null,
      descendantsStopped: null,
      error: this.#errorText(record[REC.error]!),
      durationMs: Math.round(performance.now() - this.#startedAt),
      bytesIn: record[REC.bytesIn]!,
      bytesOut: record[REC.bytesOut]!,
    };
  }

  /** conn.c's E_* codes in the JS Connection's words. */
  #errorText(code: number): string | null {
    switch (code) {
      case 1:
        return 'the deadline passed before the request was complete';
      case 2:
        return `the request was not complete within the request timeout (${this.#host.options.requestTimeout} ms)`;
      case 3:
        return 'the client closed its end';
      case 4: {
        const errno = record[REC.errno]!;
        return `socket error: ${errno > 0 ? getSystemErrorName(-errno) : 'unknown'}`;
      }
      case 5:
        return 'protocol violation: malformed stdin netstring';
      case 6:
        return 'the client did not take its reply in time';
      case 8:
        return 'internal error';
      default:
        return null;
    }
  }
}

/**
 * The daemon's plain-protocol connections served in native code (native/conn.c): the addon
 * accepts in batches on a listening socket of its own, reads and decodes each request, spawns
 * the program, relays stdin and output and writes the reply, on one epoll set. This side is
 * told only what JavaScript must decide or record:
 *
 *   accepted descriptors  → the Server's slots and queue (`NativeListener.onAccepted`)
 *   a complete argv       → the policy's plan: spawned natively, or handed off
 *   an exec failure       → its stderr line, as LocalChannel words it
 *   the end               → the audit record; the slot is freed
 *
 * Anything the native path does not do — the extension's opening, a malformed or over-limit
 * request, a refusal, a spawn that failed — is handed off before anything ran: the client's
 * socket and every byte read from it become a JS `Connection`, which serves it exactly as any
 * client (so its replies, logs and audit records are the JS path's own).
 *
 * The native path is used where it can do everything a connection needs (`nativePathFor`):
 * the native spawn backend on the main thread, no containment, no debug log, no output or
 * stdin limit. PROCSOCK_DAEMON_NATIVE=0 turns it off (for A/B measurements).
 */
import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { isMainThread } from 'node:worker_threads';
import { DEFAULT_EXIT_GRACE, execFailure, spawnBackendInUse } from '../channel/local.js';
import { packSpawn } from '../channel/spawn/native/arguments.js';
import { signalName } from '../core/signals.js';
import { type Addon, loadAddon } from '../native/addon.js';
import type { AuditLog, AuditRecord } from '../policy/audit.js';
import { isRefusal } from '../policy/policy.js';
import { planSpawnFields } from './connection.js';
import type { ResolvedServeOptions } from './options.js';

const EV_ACCEPT = 1;
const EV_REQUEST = 2;
const EV_EXEC_ERROR = 3;
const EV_CLOSED = 4;

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
} as const;
const record = new Float64Array(new ArrayBuffer(14 * Float64Array.BYTES_PER_ELEMENT));
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
/** accepted[0] is how many descriptors follow (conn.c's ACCEPT_BATCH at most). */
const ACCEPT_BATCH = 64;
const spawned = new Int32Array(5);

/** What a Server gives its native connections and listener. */
export interface NativeHost {
  readonly options: ResolvedServeOptions;
  readonly audit: AuditLog | null;
  /** Accepted client descriptors, to serve, queue or close. */
  onAccepted(fds: Int32Array, count: number): void;
  /** A native connection has ended (not when handed off: its Connection ends later). */
  onNativeClosed(connection: NativeConnection): void;
  /** A native connection became a JS one (its socket and the bytes read so far). */
  onHandoff(connection: NativeConnection, socket: Socket, prefix: Buffer, elapsedMs: number): void;
}

let hub: Addon | null = null;
const connections = new Map<number, NativeConnection>();
const listeners = new Map<number, NativeHost>();
let nextId = 1;

function onEvent(kind: number, id: number, extra: Buffer | undefined): string | undefined {
  if (kind === EV_ACCEPT) {
    const host = listeners.get(id);
    const accepted = acceptBuffers.get(id);
    if (host && accepted) host.onAccepted(accepted.subarray(1), accepted[0]!);
    return undefined;
  }
  const connection = connections.get(id);
  if (!connection) return undefined;
  if (kind === EV_REQUEST) connection.onRequest(extra);
  else if (kind === EV_EXEC_ERROR) return connection.execErrorMessage(extra!);
  else if (kind === EV_CLOSED) connection.onClosed();
  return undefined;
}

const acceptBuffers = new Map<number, Int32Array>();

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
  if (!isMainThread || options.contain || options.log !== null) return false;
  const policy = options.policy.options;
  if (policy.maxOutputBytes !== undefined || policy.maxStdinBytes !== undefined) return false;
  if (spawnBackendInUse() !== 'native') return false;
  return nativeHub() !== null;
}

/**
 * Binds and listens on `path` natively (the caller narrows the umask around it): the
 * descriptor, or a negative errno.
 */
export function listenNative(path: string, backlog: number): number {
  return nativeHub()!.connListen(path, backlog);
}

export class NativeListener {
  readonly #id = nextId++;
  #open = true;

  /** Accepts on `fd` (a listening socket, owned from now on) for `host`. */
  constructor(fd: number, host: NativeHost) {
    const accepted = new Int32Array(ACCEPT_BATCH + 1);
    listeners.set(this.#id, host);
    acceptBuffers.set(this.#id, accepted);
    nativeHub()!.connAccept(fd, this.#id, accepted);
  }

  /** Stops accepting and closes the listening socket. */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    listeners.delete(this.#id);
    acceptBuffers.delete(this.#id);
    hub!.connUnlisten(this.#id);
  }
}

/** Closes an accepted descriptor that will not be served. */
export function closeAccepted(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Closed already.
  }
}

/** One client served natively, until it ends or is handed off. */
export class NativeConnection {
  readonly id: number;
  /** Made only when someone waits for it (shutdown): most connections end unwatched. */
  #closed: Promise<void> | null = null;
  #resolveClosed: (() => void) | null = null;
  #ended = false;
  readonly #host: NativeHost;
  readonly #acceptedAt = Date.now();
  readonly #startedAt = performance.now();
  #argv: string[] = [];
  /** The JS Connection this became, if it was handed off. */
  #handedOff = false;

  constructor(host: NativeHost) {
    this.id = nextId++;
    this.#host = host;
  }

  /** Serves the accepted client `fd` (owned from now on). Its end may be told at once. */
  start(fd: number): void {
    const host = this.#host;
    const { options } = host;
    const { limits } = options;
    connections.set(this.id, this);
    hub!.connServe(
      fd,
      this.id,
      options.timeout,
      options.requestTimeout,
      options.killTimeout,
      limits.maxArgs,
      limits.maxArgLength,
      limits.maxArgBytes,
      limits.maxDataLength,
      host.audit !== null,
      // Nothing to decide or record per argv: conn.c runs it as the JS path would.
      options.policy.isOpen && host.audit === null,
      options.processGroup,
      DEFAULT_EXIT_GRACE,
    );
  }

  /** Settles once the connection has ended (its Connection, when it was handed off). */
  get closed(): Promise<void> {
    this.#closed ??= this.#ended
      ? Promise.resolve()
      : new Promise((resolve) => {
          this.#resolveClosed = resolve;
        });
    return this.#closed;
  }

  #end(): void {
    this.#ended = true;
    this.#resolveClosed?.();
  }

  /** Daemon shutdown: as Connection.shutdown. */
  shutdown(): void {
    if (!this.#handedOff) hub!.connShutdown(this.id);
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
    this.#handedOff = true;
    const socket = new Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
    socket.pause();
    this.#host.onHandoff(this, socket, prefix, performance.now() - this.#startedAt);
  }

  /** A handed-off client's Connection has closed: so has this. */
  handedOffClosed(): void {
    this.#end();
  }

  /** `program` could not be executed (the errno in the record): LocalChannel's words for it. */
  execErrorMessage(program: Buffer): string {
    return execFailure(program.toString('utf8'), getSystemErrorName(-record[REC.errno]!))[1];
  }

  onClosed(): void {
    connections.delete(this.id);
    const audit = this.#host.audit;
    if (audit) audit.write(this.#record());
    this.#end();
    this.#host.onNativeClosed(this);
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

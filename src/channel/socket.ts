/**
 * The daemon transport: `daemonTransport(path)` connects to a sockexec-protocol daemon
 * (procsock's or the C sockexec), and each program it starts is a `SocketChannel`, one
 * connection. A channel behaves like `LocalChannel`; the differences are those of the
 * protocol: there is no pid, and the only way to stop the program is to hang up (the
 * daemon then sends TERM, and KILL after its grace). The plain protocol carries argv and
 * stdin only; a program that needs more (cwd, env, processGroup, killTimeout, signals) is
 * started through the protocol extension instead (./daemon-extension.ts), which a procsock
 * daemon honours and any other daemon refuses at once: then the channel fails with an
 * `UnsupportedOptionError` saying so, nothing having run.
 */
import { connect, type Socket } from 'node:net';
import { checkByteCount } from '../core/limits.js';
import type { ExitStatus } from '../core/output.js';
import { checkWindowSide } from '../core/terminal.js';
import {
  ArgumentError,
  abortError,
  ClosedError,
  ConnectError,
  type ProcsockError,
  ProtocolError,
  StateError,
  throwIfAborted,
} from '../errors.js';
import {
  encodeExtendedRequest,
  encodeSignalMessage,
  encodeStdinMessage,
  encodeWindowMessage,
  STDIN_END_MESSAGE,
  type WireReason,
  type WireUsage,
} from '../protocol/extension.js';
import { ReplyDecoder } from '../protocol/reply.js';
import { encodeArgs, encodeStdin, STDIN_END } from '../protocol/request.js';
import { ProcessChannel } from './channel.js';
import {
  type ExtendedLaunch,
  extendedLaunch,
  extensionNotSpoken,
  optionRefused,
} from './daemon-extension.js';
import type { Launch, LaunchRequest, ProgramOptionName, Transport } from './transport.js';
import type { EndReason, ResourceUsage } from './usage.js';

/** Every reason the daemon sends a client is an `EndReason` (or ends the call with an error). */
type ReasonsEndingWithAnError = 'unsupported' | 'protocol-violation';
const WIRE_REASONS_ARE_END_REASONS: [
  Exclude<WireReason, EndReason | ReasonsEndingWithAnError>,
] extends [never]
  ? true
  : never = true;
void WIRE_REASONS_ARE_END_REASONS;

/**
 * Longest output netstring a client accepts from a daemon (16 MiB). Output is streamed,
 * never buffered whole, so this bounds nothing in memory by itself; it rejects a peer that
 * announces absurd lengths (procsock's daemon sends at most one pipe read, ≤ 1 MiB, per pair).
 */
export const DEFAULT_MAX_REPLY_DATA = 16 * 1024 * 1024;

/**
 * How long past a run's timeout (plus its kill-timeout) a caller waits for the daemon's
 * reply before it hangs up: the daemon's timer starts at the spawn, after the caller's.
 */
const TIMEOUT_REPLY_MARGIN = 1000;

export interface SocketChannelOptions {
  /** Longest output netstring accepted from the daemon (streamed, not buffered). Default 16 MiB. */
  maxDataLength?: number;
}

/** A channel in the protocol extension: its header, and where it goes (for errors). */
interface Extension extends ExtendedLaunch {
  transport: string;
}

export class SocketChannel extends ProcessChannel {
  readonly kind = 'socket' as const;
  readonly socket: Socket;
  readonly #decoder: ReplyDecoder;
  #status: ExitStatus | null = null;
  #stdinEnded = false;
  readonly #extension: Extension | null;
  #reason: WireReason | null = null;
  #usage: WireUsage | null = null;
  /** Extended: the header field the daemon refused the run for, and what it said on stderr. */
  #refused: string | null = null;
  #said = '';

  /**
   * Sends argv on an already connected socket; the daemon starts the program when it has
   * them. With `extension`, sends the protocol extension's request instead.
   */
  constructor(
    socket: Socket,
    argv: readonly (string | Buffer)[],
    options: SocketChannelOptions = {},
    extension: Extension | null = null,
  ) {
    super();
    this.socket = socket;
    this.#extension = extension;
    this.#decoder = new ReplyDecoder(
      {
        onOutput: (type, data) => {
          // A refusal's reason comes on stderr first: keep its start for the error.
          if (extension && type === 'stderr' && this.#said.length < 1024) {
            this.#said += data.toString('utf8', 0, 1024);
          }
          this.emitOutput(type, data);
        },
        onExit: (status) => {
          this.#status = status;
        },
        onRunEnd: (reason, usage, refused) => {
          this.#reason = reason;
          this.#usage = usage;
          this.#refused = refused;
        },
      },
      {
        maxDataLength: options.maxDataLength ?? DEFAULT_MAX_REPLY_DATA,
        extended: extension !== null,
      },
    );
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => this.emit('drain'));
    socket.on('end', () => this.#onEnd());
    socket.on('error', (error) => {
      // A daemon that does not speak the extension may reset the connection (it did not read
      // all of the request before closing): that is its answer, not a failure of the network.
      if (this.#extension && !this.#decoder.helloReceived) this.#onEnd();
      else this.#fail(closedError('the connection to the daemon failed', error));
    });
    socket.on('close', () => {
      this.#onEnd();
      this.emitClose();
    });
    socket.write(extension ? encodeExtendedRequest(extension.fields) : encodeArgs(argv));
  }

  /**
   * Extended: why the daemon says the run ended. Plain: only `exit` or `signal` — the plain
   * protocol does not tell a deadline's TERM from any other.
   */
  override get reason(): EndReason | null {
    if (this.exitStatus === null || this.#reason === null) return super.reason;
    return this.#reason as EndReason;
  }

  /** Extended: what the daemon says the run cost (its `usage`); null when plain, or when nothing ran. */
  override get usage(): ResourceUsage | null {
    const usage = this.#usage;
    if (usage?.wallTime === undefined) return null;
    return {
      userCPUTime: usage.userCPUTime ?? null,
      systemCPUTime: usage.systemCPUTime ?? null,
      maxRSS: usage.maxRSS ?? null,
      wallTime: usage.wallTime,
    };
  }

  override get descendantsStopped(): number | null {
    return this.#usage?.descendantsStopped ?? null;
  }

  /**
   * Sent the run's timeout: the daemon stops the program at it (TERM, KILL after the
   * kill-timeout) and replies with how it ended, so a caller's own limit waits that long more.
   */
  override get timeoutGrace(): number {
    const fields = this.#extension?.fields;
    if (fields?.timeout === undefined) return 0;
    return (fields.killTimeout ?? 0) + TIMEOUT_REPLY_MARGIN;
  }

  override signal(name: string): boolean {
    if (this.#extension === null) return false;
    if (this.socket.writable && this.exitStatus === null) {
      this.socket.write(encodeSignalMessage(name));
    }
    return true;
  }

  /** Whether the program was started in a terminal (the header's `pty` field). */
  override get terminal(): boolean {
    return this.#extension?.fields.pty !== undefined;
  }

  override resize(columns: number, rows: number): boolean {
    checkWindowSide('columns', columns);
    checkWindowSide('rows', rows);
    if (!this.terminal || !this.socket.writable || this.exitStatus !== null) return false;
    this.socket.write(encodeWindowMessage(columns, rows));
    return true;
  }

  override ref(): void {
    this.socket.ref();
  }

  override unref(): void {
    this.socket.unref();
  }

  #onData(chunk: Buffer): void {
    try {
      this.#decoder.push(chunk);
    } catch (error) {
      this.#fail(error as ProcsockError);
    }
  }

  /** The daemon closes the connection after the exit pair: only then is the program done. */
  #onEnd(): void {
    if (this.#extension && !this.#decoder.helloReceived) {
      this.#fail(extensionNotSpoken(this.#extension.option, this.#extension.transport));
    } else if (this.#extension && this.#refused !== null && this.#status !== null) {
      this.#fail(optionRefused(this.#refused, this.#extension.transport, this.#said));
    } else if (this.#status !== null && this.#decoder.atPairBoundary) {
      this.emitExit(this.#status);
    } else if (this.#status === null) {
      this.#fail(
        new ClosedError('the daemon closed the connection before sending the exit status'),
      );
    } else {
      this.#fail(new ProtocolError('the daemon closed the connection in the middle of a reply'));
    }
  }

  #fail(error: ProcsockError): void {
    if (this.exitStatus !== null || this.destroyed) return;
    this.emitError(error);
    this.socket.destroy();
  }

  write(data: Buffer | string): boolean {
    const buffer = typeof data === 'string' ? Buffer.from(data) : data;
    if (this.#stdinEnded || buffer.length === 0 || !this.socket.writable) return true;
    const parts = this.#extension ? encodeStdinMessage(buffer) : encodeStdin(buffer);
    if (parts.length === 1) return this.socket.write(parts[0]!);
    this.socket.cork();
    let ok = true;
    for (const part of parts) ok = this.socket.write(part);
    this.socket.uncork();
    return ok;
  }

  end(): void {
    if (this.#stdinEnded) return;
    this.#stdinEnded = true;
    if (this.socket.writable) this.socket.write(this.#extension ? STDIN_END_MESSAGE : STDIN_END);
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  protected destroyResources(): void {
    this.socket.destroy();
  }
}

function closedError(message: string, cause: Error): ClosedError {
  const code = (cause as NodeJS.ErrnoException).code;
  return new ClosedError(`${message}${code ? ` (${code})` : ''}: ${cause.message}`, { cause });
}

/**
 * Programs run by the daemon listening at `path`: one connection per program. `prepare()`
 * connects (abortable); the launch then watches the connection until argv is sent, so a
 * daemon that hangs up or talks first is reported by `start()`, not lost.
 */
export function daemonTransport(path: string, options: SocketChannelOptions = {}): Transport {
  if (typeof path !== 'string' || path === '') {
    throw new ArgumentError(`a daemon transport needs a socket path; got ${JSON.stringify(path)}`);
  }
  if (options.maxDataLength !== undefined) checkByteCount('maxDataLength', options.maxDataLength);
  const description = `the sockexec daemon at ${path}`;
  return {
    description,
    prepare: async ({ signal } = {}) => {
      throwIfAborted(signal);
      let socket: Socket;
      try {
        socket = await connectToDaemon(path, signal);
      } catch (error) {
        throw signal?.aborted ? abortError(signal) : error;
      }
      return new DaemonLaunch(socket, options, description);
    },
  };
}

class DaemonLaunch implements Launch {
  readonly socket: Socket;
  readonly #options: SocketChannelOptions;
  readonly #description: string;
  #early: Error | null = null;
  #started = false;
  readonly #onError = (error: Error) => {
    this.#early ??= error;
  };
  readonly #onData = () => {
    this.#early ??= new ProtocolError('the daemon sent data before the args were sent');
    this.socket.destroy();
  };

  constructor(socket: Socket, options: SocketChannelOptions, description: string) {
    this.socket = socket;
    this.#options = options;
    this.#description = description;
    socket.on('error', this.#onError).on('data', this.#onData);
  }

  honours(option: ProgramOptionName): boolean {
    // Through the protocol extension, when the daemon speaks it (if not, the channel says
    // so; the daemon checks containment and the exit grace against its policy) — but never
    // detached: a daemon's run ends with its connection, so it leaves nothing behind.
    return option !== 'detached';
  }

  start(request: LaunchRequest): ProcessChannel {
    if (this.#started) throw new StateError('a launch starts one program; prepare another');
    const extended = extendedLaunch(request);
    const socket = this.socket;
    if (this.#early || socket.destroyed || !socket.readable) {
      throw new ClosedError(
        `the daemon closed the connection before the args were sent${this.#early ? `: ${this.#early.message}` : ''}`,
        { cause: this.#early ?? undefined },
      );
    }
    this.#started = true;
    socket.off('error', this.#onError).off('data', this.#onData);
    // Args and the stdin written in the same tick leave in one write, so a program that ends
    // at once (and a daemon that then hangs up) cannot fail a second write and lose the reply.
    socket.cork();
    process.nextTick(() => socket.uncork());
    return new SocketChannel(
      socket,
      request.argv,
      this.#options,
      extended && { ...extended, transport: this.#description },
    );
  }

  cancel(): Promise<void> {
    const socket = this.socket;
    if (this.#started || socket.closed) return Promise.resolve();
    return new Promise((resolve) => socket.once('close', () => resolve()).destroy());
  }
}

/** Connects to a daemon socket, turning system errors into a `ConnectError` that says what to do. */
export function connectToDaemon(path: string, signal?: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path, signal });
    const onError = (error: NodeJS.ErrnoException) => {
      socket.destroy();
      reject(error.name === 'AbortError' ? error : connectError(path, error));
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

function connectError(path: string, error: NodeJS.ErrnoException): ConnectError {
  const reason = error.code ?? 'EUNKNOWN';
  const what: Record<string, string> = {
    ENOENT: `no daemon socket at ${path}; start one with: procsock serve ${path}${process.getuid?.() === 0 ? ' (as root: procsock serve --allow-root, or --user NAME)' : ''}`,
    ECONNREFUSED: `nothing is listening on ${path} (a stale socket file); restart the daemon`,
    EACCES: `permission denied for ${path}; the socket's owner or mode (procsock serve -M) does not let this user connect`,
    ENOTSOCK: `${path} is not a socket`,
    EAGAIN: `the daemon at ${path} is not accepting more connections right now (its queue is full); retry later`,
  };
  return new ConnectError(
    `cannot connect to the procsock daemon: ${what[reason] ?? `${error.message}`} (${reason})`,
    path,
    reason,
    { cause: error },
  );
}

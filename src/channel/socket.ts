/**
 * The daemon transport: `daemonTransport(path)` connects to a sockexec-protocol daemon
 * (procsock's or the C sockexec), and each program it starts is a `SocketChannel`, one
 * connection. A channel behaves like `LocalChannel`; the differences are those of the
 * protocol: there is no pid, and in the plain protocol the only way to stop the program is to
 * hang up (the daemon then sends TERM, and KILL after its grace, and tells nobody how it
 * ended). The plain protocol carries argv and stdin only; a program that needs more (cwd,
 * env, processGroup, killTimeout, signals, a stop whose end is reported) is
 * started through the protocol extension instead (./daemon-extension.ts), which a procsock
 * daemon honours and any other daemon refuses at once: then the channel fails with an
 * `UnsupportedOptionError` saying so, nothing having run.
 */
import { lstatSync } from 'node:fs';
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
  encodeStopMessage,
  encodeWindowMessage,
  STDIN_END_MESSAGE,
  type StopCause,
  type WireReason,
  type WireUsage,
} from '../protocol/extension.js';
import { JOIN_LIMIT } from '../protocol/netstring.js';
import { ReplyDecoder } from '../protocol/reply.js';
import { encodeArgs, encodeStdin, STDIN_END } from '../protocol/request.js';
import { ProcessChannel } from './channel.js';
import {
  type ExtendedLaunch,
  extendedLaunch,
  extensionNotSpoken,
  optionRefused,
  replayTooLong,
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
/** A client's stop causes are end reasons too: the daemon reports them back as the reason. */
const STOP_CAUSES_ARE_END_REASONS: [Exclude<StopCause, EndReason>] extends [never] ? true : never =
  true;
void STOP_CAUSES_ARE_END_REASONS;

/**
 * Longest output netstring a client accepts from a daemon (16 MiB). Output is streamed,
 * never buffered whole, so this bounds nothing in memory by itself; it rejects a peer that
 * announces absurd lengths (procsock's daemon sends at most one pipe read, ≤ 1 MiB, per pair).
 */
export const DEFAULT_MAX_REPLY_DATA = 16 * 1024 * 1024;

/**
 * After a `stop`, how long the client waits for the daemon's `stopping` (from the last data
 * received: output queued before it still arrives), and past the KILL time it announces for
 * the end, before it hangs up. Only a daemon that stopped answering waits this long.
 */
const STOP_REPLY_MARGIN = 5000;

export interface SocketChannelOptions {
  /** Longest output netstring accepted from the daemon (streamed, not buffered). Default 16 MiB. */
  maxDataLength?: number;
}

/** A channel in the protocol extension: its header, and where it goes (for errors). */
interface Extension extends ExtendedLaunch {
  transport: string;
  /** The daemon's socket path: what it answers the opening is remembered by it. */
  path: string;
  /**
   * The extension is wanted, not needed (see `ExtendedLaunch.wanted`): if the daemon turns the
   * opening down, connect again with this and run the program in the plain protocol.
   */
  reconnect?: () => Promise<Socket>;
}

/** Most stdin a fallible extended channel keeps for a plain replay until the daemon's hello. */
const MAX_REPLAY_BYTES = 1024 * 1024;

/**
 * What each daemon, by socket path, answered the extension's opening last: true, it spoke it.
 * Calls that only want the extension (their own stops) go plain at once to a daemon known not
 * to speak it. A few entries (a process talks to few daemons); the oldest goes first.
 */
const spoken = new Map<string, boolean>();
const MAX_REMEMBERED = 64;

function remember(path: string, speaks: boolean): void {
  if (spoken.get(path) === speaks) return;
  spoken.delete(path);
  spoken.set(path, speaks);
  if (spoken.size > MAX_REMEMBERED) spoken.delete(spoken.keys().next().value!);
}

/** Whether the daemon at `path` spoke the extension when last asked; undefined: never asked. */
export function daemonSpeaksExtension(path: string): boolean | undefined {
  return spoken.get(path);
}

export class SocketChannel extends ProcessChannel {
  readonly kind = 'socket' as const;
  #socket: Socket;
  #decoder: ReplyDecoder;
  readonly #argv: readonly (string | Buffer)[];
  readonly #maxDataLength: number;
  #status: ExitStatus | null = null;
  #stdinEnded = false;
  #extension: Extension | null;
  #reason: WireReason | null = null;
  /** Whether the daemon sent anything on this connection. */
  #replied = false;
  #usage: WireUsage | null = null;
  /** Extended: the header field the daemon refused the run for, and what it said on stderr. */
  #refused: string | null = null;
  #said = '';
  /** After stop(): hangs up if the daemon does not answer (see STOP_REPLY_MARGIN). */
  #backstop: NodeJS.Timeout | null = null;
  /** After stop(): the daemon's `stopping` arrived (the backstop is then its KILL time). */
  #stopping = false;
  /**
   * What is written in the tick the channel opens (the request, the stdin known up front,
   * its end): sent together on the next tick (see `#send`); null once sent.
   */
  #opening: Buffer[] | null;
  #openingBytes: number;
  /**
   * A fallible extended channel (`Extension.reconnect`) until the hello: the stdin sent so far,
   * to send again in the plain protocol if the daemon turns the opening down; while that
   * connection is made, the stdin to send on it. null: nothing kept (or too much to keep).
   */
  #replay: { data: Buffer[]; bytes: number } | null = null;
  /** Between the daemon's refusal of the opening and the plain connection. */
  #reconnecting = false;
  #paused = false;
  #referenced = true;

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
    this.#socket = socket;
    this.#argv = argv;
    this.#extension = extension;
    this.#maxDataLength = options.maxDataLength ?? DEFAULT_MAX_REPLY_DATA;
    if (extension?.reconnect) this.#replay = { data: [], bytes: 0 };
    this.#decoder = this.#replyDecoder();
    this.#attach(socket);
    const request = extension ? encodeExtendedRequest(extension.fields) : encodeArgs(argv);
    this.#opening = [request];
    this.#openingBytes = request.length;
    process.nextTick(() => this.#sendOpening());
  }

  /** The connection to the daemon (a new one, after a fallback to the plain protocol). */
  get socket(): Socket {
    return this.#socket;
  }

  #replyDecoder(): ReplyDecoder {
    return new ReplyDecoder(
      {
        onOutput: (type, data) => {
          // A refusal's reason comes on stderr first: keep its start for the error.
          if (this.#extension && type === 'stderr' && this.#said.length < 1024) {
            this.#said += data.toString('utf8', 0, 1024);
          }
          this.emitOutput(type, data);
        },
        onExit: (status) => {
          this.#status = status;
        },
        onHello: () => {
          // It speaks the extension: nothing to send again, and the next call knows.
          this.#replay = null;
          if (this.#extension) remember(this.#extension.path, true);
        },
        onRunEnd: (reason, usage, refused) => {
          this.#reason = reason;
          this.#usage = usage;
          this.#refused = refused;
        },
        onStopping: (ms) => {
          this.#stopping = true;
          this.#armBackstop(ms + STOP_REPLY_MARGIN);
        },
      },
      { maxDataLength: this.#maxDataLength, extended: this.#extension !== null },
    );
  }

  #attach(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => this.emit('drain'));
    socket.on('end', () => {
      this.#onEnd();
      // The reply is complete, or the daemon broke it off: there is nothing left to tell it,
      // so no shutdown of this side first (allowHalfOpen's end() would cost a round of its own).
      socket.destroy();
    });
    socket.on('error', (error) => {
      // A daemon that does not speak the extension may reset the connection (it did not read
      // all of the request before closing): that is its answer, not a failure of the network.
      if (this.#extension && !this.#decoder.helloReceived) this.#onEnd();
      else {
        const what = this.#replied
          ? 'the connection to the daemon failed'
          : `the daemon closed the connection${this.#unanswered()}`;
        this.#fail(closedError(what, error));
      }
    });
    socket.on('close', () => {
      if (this.#backstop) clearTimeout(this.#backstop);
      this.#onEnd();
      if (!this.#reconnecting) this.emitClose();
    });
  }

  /**
   * The daemon turned the opening down, and the extension was only wanted: nothing ran there
   * (a daemon that does not speak it closes before it runs anything), so the program is
   * started in the plain protocol on a new connection, with the stdin sent so far. The answer
   * is remembered (`remember`), so the daemon's next calls go plain at once.
   */
  #fallBack(): void {
    const { reconnect } = this.#extension!;
    this.#extension = null;
    this.#reconnecting = true;
    const refused = this.#socket;
    refused.removeAllListeners();
    refused.on('error', () => {});
    refused.destroy();
    this.#decoder = this.#replyDecoder();
    reconnect!().then(
      (socket) => {
        const replay = this.#replay!;
        this.#replay = null;
        this.#reconnecting = false;
        this.#socket = socket;
        this.#attach(socket);
        if (this.destroyed) {
          socket.destroy();
          return;
        }
        if (this.#paused) socket.pause();
        if (!this.#referenced) socket.unref();
        const parts = [encodeArgs(this.#argv)];
        for (const data of replay.data) parts.push(...encodeStdin(data));
        if (this.#stdinEnded) parts.push(STDIN_END);
        socket.write(Buffer.concat(parts));
        this.emit('drain');
      },
      (error: ProcsockError) => {
        this.#reconnecting = false;
        this.emitError(error);
        this.emitClose();
      },
    );
  }

  /**
   * Every write to the daemon goes through here. In the opening tick the bytes are kept, and
   * then leave with the request in one write (`#sendOpening`): a program that ends at once
   * (and a daemon that then hangs up) cannot fail a second write and lose the reply.
   */
  #send(data: Buffer): boolean {
    const opening = this.#opening;
    if (opening === null) return this.socket.write(data);
    opening.push(data);
    this.#openingBytes += data.length;
    return this.#openingBytes < this.socket.writableHighWaterMark;
  }

  /** The opening tick is over: its bytes leave, joined when they are few. */
  #sendOpening(): void {
    const opening = this.#opening!;
    this.#opening = null;
    const socket = this.socket;
    if (!socket.writable || this.#reconnecting) return;
    if (opening.length === 1) {
      socket.write(opening[0]!);
    } else if (this.#openingBytes <= JOIN_LIMIT) {
      socket.write(Buffer.concat(opening, this.#openingBytes));
    } else {
      socket.cork();
      for (const part of opening) socket.write(part);
      socket.uncork();
    }
  }

  /**
   * Extended: why the daemon says the run ended. Plain: only `exit` or `signal` — the plain
   * protocol does not tell a deadline's TERM from any other.
   */
  override get reason(): EndReason | null {
    if (this.finalStatus === null || this.#reason === null) return super.reason;
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
      memoryPeak: usage.memoryPeak ?? null,
      wallTime: usage.wallTime,
    };
  }

  override get descendantsStopped(): number | null {
    return this.#usage?.descendantsStopped ?? null;
  }

  override signal(name: string): boolean {
    if (this.#extension === null) return false;
    if (this.socket.writable && this.exitStatus === null) this.#send(encodeSignalMessage(name));
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
    this.#send(encodeWindowMessage(columns, rows));
    return true;
  }

  override ref(): void {
    this.#referenced = true;
    this.socket.ref();
  }

  override unref(): void {
    this.#referenced = false;
    this.socket.unref();
  }

  /**
   * For an error: a daemon that closes before replying at all refused the request unread —
   * sockexec's way with one over its limits — unless the program ran and was stopped quietly.
   */
  #unanswered(): string {
    if (this.#replied) return '';
    return (
      ' without replying anything: either it refused the request unread (what a daemon does with ' +
      'one over its limits: an argument longer than --max-arg-length, 131072 bytes by default, ' +
      'more than --max-args arguments or --max-arg-bytes in all) or it stopped (killed, shut ' +
      'down) while the program ran; its log (procsock serve -d) says which'
    );
  }

  #onData(chunk: Buffer): void {
    this.#replied = true;
    // Stopped, and the daemon is still sending what it had queued: it is alive, wait on.
    if (this.#backstop && !this.#stopping) this.#backstop.refresh();
    try {
      this.#decoder.push(chunk);
    } catch (error) {
      // A daemon that answers the opening with anything but the hello (a sockexec that reports
      // its failure to run the empty program name) does not speak it either: nothing ran.
      if (this.#extension?.reconnect && !this.#decoder.helloReceived) this.#onEnd();
      else this.#fail(error as ProcsockError);
    }
  }

  /** The daemon closes the connection after the exit pair: only then is the program done. */
  #onEnd(): void {
    if (this.#reconnecting) return;
    if (this.#extension && !this.#decoder.helloReceived) {
      remember(this.#extension.path, false);
      if (!this.#extension.reconnect) {
        this.#fail(extensionNotSpoken(this.#extension.option, this.#extension.transport));
      } else if (this.#replay !== null && !this.destroyed) {
        this.#fallBack();
      } else {
        this.#fail(replayTooLong(this.#extension.transport));
      }
    } else if (this.#extension && this.#refused !== null && this.#status !== null) {
      this.#fail(optionRefused(this.#refused, this.#extension.transport, this.#said));
    } else if (this.#status !== null && this.#decoder.atPairBoundary) {
      this.emitExit(this.#status);
    } else if (this.#status === null) {
      this.#fail(
        new ClosedError(
          this.#replied
            ? 'the daemon closed the connection before sending the exit status'
            : `the daemon closed the connection${this.#unanswered()}`,
        ),
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
    if (this.#stdinEnded || buffer.length === 0) return true;
    const replay = this.#replay;
    if (replay !== null) {
      replay.data.push(buffer);
      replay.bytes += buffer.length;
      // Waiting for the plain connection: it is sent there (write on when it is made).
      if (this.#reconnecting) return replay.bytes < this.#socket.writableHighWaterMark;
      // Kept until the hello, within a bound; past it a refusal cannot be made good.
      if (replay.bytes > MAX_REPLAY_BYTES) this.#replay = null;
    }
    if (!this.socket.writable) return true;
    const parts = this.#extension ? encodeStdinMessage(buffer) : encodeStdin(buffer);
    if (parts.length === 1) return this.#send(parts[0]!);
    this.socket.cork();
    let ok = true;
    for (const part of parts) ok = this.#send(part);
    this.socket.uncork();
    return ok;
  }

  end(): void {
    if (this.#stdinEnded) return;
    this.#stdinEnded = true;
    if (this.socket.writable) this.#send(this.#extension ? STDIN_END_MESSAGE : STDIN_END);
  }

  pause(): void {
    this.#paused = true;
    this.socket.pause();
  }

  resume(): void {
    this.#paused = false;
    this.socket.resume();
  }

  protected destroyResources(): void {
    this.socket.destroy();
  }

  /**
   * In the extension: `stop CAUSE`, then read on (output is no longer emitted) until the
   * daemon's reply ends the connection — its end is the result's. The daemon answers with
   * when KILL follows; a daemon that does not answer is hung up on after STOP_REPLY_MARGIN.
   * Plain: a hang-up, the only stop there is (the daemon sends TERM and tells nobody).
   */
  protected override stopResources(cause: StopCause): void {
    const socket = this.socket;
    if (this.#extension === null || !socket.writable) {
      socket.destroy();
      return;
    }
    // With the exit already here, the close follows: nothing to ask.
    if (this.#status === null) this.#send(encodeStopMessage(cause));
    socket.resume();
    this.#armBackstop(STOP_REPLY_MARGIN);
  }

  #armBackstop(ms: number): void {
    if (this.#backstop) clearTimeout(this.#backstop);
    if (this.closed) return;
    this.#backstop = setTimeout(() => this.socket.destroy(), ms);
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
      return new DaemonLaunch(socket, options, description, path);
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

  readonly #path: string;

  constructor(socket: Socket, options: SocketChannelOptions, description: string, path: string) {
    this.socket = socket;
    this.#path = path;
    this.#options = options;
    this.#description = description;
    // Not a 'data' listener: what the daemon says first waits in the socket (see start()).
    socket.on('error', this.#onError);
  }

  honours(option: ProgramOptionName): boolean {
    // Through the protocol extension, when the daemon speaks it (if not, the channel says
    // so; the daemon checks containment and the exit grace against its policy) — but never
    // detached: a daemon's run ends with its connection, so it leaves nothing behind; nor a
    // cgroup: the daemon chooses its runs' cgroups (procsock serve --cgroup); nor a kill signal
    // other than TERM: the protocol has no field for it.
    return option !== 'detached' && option !== 'cgroup' && option !== 'killSignal';
  }

  start(request: LaunchRequest): ProcessChannel {
    if (this.#started) throw new StateError('a launch starts one program; prepare another');
    const path = this.#path;
    const extended = extendedLaunch(request, daemonSpeaksExtension(path), this.#description);
    const socket = this.socket;
    if (socket.readableLength > 0 && !this.#early) {
      this.#early = new ProtocolError('the daemon sent data before the args were sent');
      socket.destroy();
    }
    if (this.#early || socket.destroyed || !socket.readable) {
      throw new ClosedError(
        `the daemon closed the connection before the args were sent${this.#early ? `: ${this.#early.message}` : ''}`,
        { cause: this.#early ?? undefined },
      );
    }
    this.#started = true;
    socket.off('error', this.#onError);
    // Args and the stdin written in the same tick leave in one write (SocketChannel#send).
    return new SocketChannel(
      socket,
      request.argv,
      this.#options,
      extended && {
        ...extended,
        transport: this.#description,
        path,
        reconnect: extended.wanted ? () => connectToDaemon(path) : undefined,
      },
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
    // Node (libuv) cuts a longer path short without a word, and would connect to whatever
    // socket lives at the first 107 bytes: refused instead.
    const bytes = Buffer.byteLength(path);
    if (bytes > MAX_SOCKET_PATH_BYTES) {
      reject(
        new ConnectError(
          `cannot connect to the procsock daemon: the socket path is ${bytes} bytes, and a Unix socket ` +
            `address holds at most ${MAX_SOCKET_PATH_BYTES}: use a shorter path (ENAMETOOLONG)`,
          path,
          'ENAMETOOLONG',
        ),
      );
      return;
    }
    // Not net.connect's own `signal`: that one destroys the socket on abort for as long as it
    // lives, so a call's abort would hang up on the daemon instead of asking it to stop.
    const socket = connect({ path });
    const onAbort = () => {
      socket.destroy();
      reject(abortError(signal!));
    };
    const onError = (error: NodeJS.ErrnoException) => {
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      reject(connectError(path, error));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('error', onError);
    socket.once('connect', () => {
      signal?.removeEventListener('abort', onAbort);
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/** Most bytes of a Unix socket path: sockaddr_un's sun_path holds 108 with the final NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

/** What is at `path` when it is not a socket (connect says ECONNREFUSED for a file too); null otherwise. */
function notASocket(path: string): string | null {
  try {
    const stats = lstatSync(path);
    if (stats.isSocket()) return null;
    return stats.isDirectory() ? 'a directory' : stats.isFile() ? 'a regular file' : 'not a socket';
  } catch {
    return null;
  }
}

function connectError(path: string, error: NodeJS.ErrnoException): ConnectError {
  const reason = error.code ?? 'EUNKNOWN';
  const other = reason === 'ECONNREFUSED' ? notASocket(path) : null;
  if (other !== null) {
    return new ConnectError(
      `cannot connect to the procsock daemon: ${path} is ${other}, not a daemon's socket; give the path the daemon listens on (procsock serve PATH) (${reason})`,
      path,
      reason,
      { cause: error },
    );
  }
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

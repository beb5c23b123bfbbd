/**
 * The duplex session, after lua-resty-exec's `resty.exec.socket`: start a program, write
 * its stdin as you go, receive its output chunk by chunk, then its exit — through a
 * daemon socket or on a local child, with the same API.
 *
 *     const session = await connect(socketPath);   // or connect('local')
 *     session.sendArgs(['cat']);
 *     await session.send('hello');
 *     await session.receive();   // { type: 'stdout', data: <Buffer 68 65 6c 6c 6f> }
 *     session.sendClose();
 *     await session.receive();   // { type: 'exit', exitCode: 0, termSignal: null }
 *     await session.receive();   // { type: 'closed' }, from now on
 *     await session.close();
 *
 * States:
 *
 *     connected ──sendArgs()──► running ──(exit delivered, connection closed)──► finished
 *         │                        │                                               │
 *         └────────────────────────┴─────────────── close() ───────────────────────┴──► closed
 *
 * `connected`: a daemon connection is open (or, locally, nothing yet); only `sendArgs`
 * and `close` are allowed. `running`: stdin may be sent until `sendClose`; output and
 * then exactly one exit are received. `finished`: `receive()` answers `{ type: 'closed' }`.
 * `close()` stops a program still running (TERM, then KILL after the grace; a daemon
 * does this when the connection drops), waits until it is gone, and is idempotent.
 * A call in the wrong state throws `StateError` at once and changes nothing, so misuse
 * never puts a byte on the wire.
 *
 * Output is read one way per session: `receive()` / `for await`, or the `stdout` and
 * `stderr` Readables (the first use of one of them switches to streams).
 */
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { ProcessChannel } from '../channel/channel.js';
import { LocalChannel } from '../channel/local.js';
import { SocketChannel } from '../channel/socket.js';
import { ArgumentError, ClosedError, ProtocolError, StateError, TimeoutError } from '../errors.js';
import type { ExitStatus, OutputChunk, OutputType } from '../protocol/reply.js';
import { DEFAULT_TIMEOUT } from './exec.js';
import { drained, toBuffer } from './execute.js';
import { outputReadables, stdinWritable } from './streams.js';
import {
  abortError,
  checkArgv,
  connectSocket,
  describe,
  type LocalOptions,
  type ResolvedTarget,
  resolveTarget,
  type Target,
  throwIfAborted,
} from './target.js';

export type SessionState = 'connected' | 'running' | 'finished' | 'closed';

/** A piece of output, as it arrived (chunk boundaries carry no meaning). */
export interface ReceivedOutput {
  type: OutputType;
  data: Buffer;
}

/** How the program ended; always after all of its output. */
export interface ReceivedExit {
  type: 'exit';
  exitCode: number | null;
  termSignal: string | null;
}

/** What `receive()` resolves with: output, the exit, or one of the two outcomes without data. */
export type Received =
  | ReceivedOutput
  | ReceivedExit
  /** Nothing arrived within the timeout; the program still runs and receive() may be called again. */
  | { type: 'timeout' }
  /** The program has ended and everything was received: nothing more will come. */
  | { type: 'closed' };

export interface SessionOptions extends LocalOptions {
  /** Default `receive()` timeout in ms; 0 = wait forever. Default 60000. */
  timeout?: number;
  /** Output bytes queued for `receive()` before the program is paused. Default 64 KiB. */
  highWaterMark?: number;
  /** Aborting closes the session (the program is stopped); a waiting receive() rejects with AbortError. */
  signal?: AbortSignal;
}

export interface ReceiveOptions {
  /** Longest wait in ms; 0 = forever. Default: the session's `timeout`. */
  timeout?: number;
}

const DEFAULT_HIGH_WATER_MARK = 64 * 1024;

/** Opens a session: connects to the daemon at `target`, or prepares a local child (`'local'`). */
export async function connect(
  target: Target = 'local',
  options: SessionOptions = {},
): Promise<Session> {
  const resolved = resolveTarget(target);
  checkTimeout(options.timeout, 'timeout');
  const socket =
    resolved.kind === 'socket' ? await connectSocket(resolved.path, options.signal) : null;
  throwIfAborted(options.signal);
  return new Session(resolved, socket, options);
}

interface Waiter {
  resolve(received: Received): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout | null;
}

export class Session {
  readonly target: ResolvedTarget;
  readonly #options: SessionOptions;
  readonly #highWaterMark: number;
  #state: SessionState = 'connected';
  #socket: Socket | null;
  #socketError: Error | null = null;
  #channel: ProcessChannel | null = null;
  #stdinClosed = false;
  #queue: (ReceivedOutput | ReceivedExit)[] = [];
  #queuedBytes = 0;
  #pausedByQueue = false;
  #channelError: Error | null = null;
  #waiter: Waiter | null = null;
  #streams: { stdout: Readable; stderr: Readable } | null = null;
  #stdin: Writable | null = null;
  #receiving = false;
  #closing: Promise<void> | null = null;
  #aborted: Error | null = null;
  readonly #onAbort = () => {
    this.#aborted = abortError(this.#options.signal!);
    this.#waiter?.reject(this.#aborted);
    this.#waiter = null;
    this.close().catch(() => {});
  };

  readonly #onEarlySocketError = (error: Error) => {
    this.#socketError = error;
  };
  readonly #onEarlyData = () => {
    this.#socketError = new ProtocolError('the daemon sent data before the args were sent');
    this.#socket?.destroy();
  };

  /** Use `connect()`. */
  constructor(target: ResolvedTarget, socket: Socket | null, options: SessionOptions) {
    this.target = target;
    this.#socket = socket;
    this.#options = options;
    this.#highWaterMark = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
    // Until argv is sent the connection is ours to watch: note if the daemon drops it.
    socket?.on('error', this.#onEarlySocketError);
    socket?.on('data', this.#onEarlyData);
    options.signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  get state(): SessionState {
    return this.#state;
  }

  /** The daemon connection (null for a local session). */
  get socket(): Socket | null {
    return this.#socket;
  }

  /** The running program's channel, once `sendArgs` started it. */
  get channel(): ProcessChannel | null {
    return this.#channel;
  }

  /** The local program's pid (undefined through a daemon, or before `sendArgs`). */
  get pid(): number | undefined {
    return this.#channel?.kind === 'local' ? (this.#channel as LocalChannel).pid : undefined;
  }

  /** Starts the program. Throws `ArgumentError` for a bad argv, `StateError` if already started or closed. */
  sendArgs(argv: readonly string[]): this {
    this.#expect('connected', 'send the args');
    checkArgv(argv);
    if (this.#socket && (this.#socketError || this.#socket.destroyed || !this.#socket.readable)) {
      throw new ClosedError(
        `the daemon closed the connection before the args were sent${this.#socketError ? `: ${this.#socketError.message}` : ''}`,
      );
    }
    const socket = this.#socket;
    if (socket) {
      socket.off('data', this.#onEarlyData).off('error', this.#onEarlySocketError);
      // Args and whatever stdin is sent in the same tick leave in one write, so a program
      // that ends at once (and a daemon that then hangs up) cannot fail a second write.
      socket.cork();
      process.nextTick(() => socket.uncork());
    }
    const channel = socket ? new SocketChannel(socket, argv) : openLocal(argv, this.#options);
    this.#channel = channel;
    this.#state = 'running';
    channel.on('output', (chunk) => this.#onOutput(chunk));
    channel.on('exit', (status) => this.#enqueue({ type: 'exit', ...status }, 0));
    channel.on('error', (error) => {
      this.#channelError = error;
    });
    channel.on('close', () => this.#onChannelClose());
    return this;
  }

  /**
   * Writes to the program's stdin. Resolves when more may be written (at once, unless
   * the program is not keeping up); never rejects. Empty data does nothing — close stdin
   * with `sendClose()`. Data for a program that has already ended is dropped (it can end
   * at any time, so that is no misuse). Throws `StateError` before `sendArgs`, after
   * `sendClose` or `close`.
   */
  send(data: string | Uint8Array): Promise<void> {
    const channel = this.#runningChannel('send data');
    if (this.#stdinClosed) {
      throw new StateError('cannot send data: stdin is already closed (sendClose was called)');
    }
    if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
      throw new ArgumentError(
        `data must be a string or a Buffer/Uint8Array; got ${describe(data)}`,
      );
    }
    const buffer = toBuffer(data);
    // A program that has ended takes no more input: like the daemon, drop it and carry on.
    if (buffer.length === 0 || channel.closed || channel.write(buffer)) return Promise.resolve();
    return drained(channel);
  }

  /** The same as `send` (lua-resty-exec's name). */
  sendData(data: string | Uint8Array): Promise<void> {
    return this.send(data);
  }

  /** Closes the program's stdin. Idempotent while running; `StateError` before `sendArgs` or after `close`. */
  sendClose(): void {
    const channel = this.#runningChannel('close stdin');
    this.#stdinClosed = true;
    channel.end();
  }

  /**
   * The next thing the program sent: output, then its exit, then `{ type: 'closed' }`
   * forever; `{ type: 'timeout' }` when nothing came in time (the program keeps running).
   * Rejects with the connection's error (`ClosedError`, `ProtocolError`) once, after the
   * output received before it. One receive at a time.
   */
  receive(options: ReceiveOptions = {}): Promise<Received> {
    if (this.#state === 'closed') throw new StateError('cannot receive: the session is closed');
    if (this.#state === 'connected') {
      throw new StateError('cannot receive before the program is started: call sendArgs first');
    }
    if (this.#streams) {
      throw new StateError(
        'cannot receive: output is being read through the stdout/stderr streams',
      );
    }
    if (this.#waiter) throw new StateError('cannot receive: another receive() is still waiting');
    checkTimeout(options.timeout, 'timeout');
    this.#receiving = true;
    const next = this.#take();
    if (next) return next;
    const timeout = options.timeout ?? this.#options.timeout ?? DEFAULT_TIMEOUT;
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: null };
      if (timeout > 0) {
        waiter.timer = setTimeout(() => {
          this.#waiter = null;
          resolve({ type: 'timeout' });
        }, timeout);
      }
      this.#waiter = waiter;
    });
  }

  /**
   * Output chunks and then the exit, until the program is done. A receive timeout (the
   * session's `timeout`) throws `TimeoutError`; the program keeps running. Leaving the
   * loop early does not close the session.
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<ReceivedOutput | ReceivedExit, void, undefined> {
    for (;;) {
      const received = await this.receive();
      if (received.type === 'closed') return;
      if (received.type === 'timeout') {
        const timeout = this.#options.timeout ?? DEFAULT_TIMEOUT;
        throw new TimeoutError(`the program sent nothing for ${timeout} ms`, timeout);
      }
      yield received;
    }
  }

  /** The program's stdin as a Writable (back-pressure honoured; `end()` = `sendClose()`). */
  get stdin(): Writable {
    this.#stdin ??= stdinWritable(this);
    return this.#stdin;
  }

  /** The program's stdout as a Readable; switches the session to streams (no more receive()). */
  get stdout(): Readable {
    return this.#useStreams().stdout;
  }

  /** The program's stderr (and any `unknown` output) as a Readable; switches to streams. */
  get stderr(): Readable {
    return this.#useStreams().stderr;
  }

  /**
   * Resolves with the exit status once the program is done and the session released
   * everything, or null when the session was closed first. Rejects with the connection's error.
   */
  async wait(): Promise<ExitStatus | null> {
    const channel = this.#channel;
    if (!channel)
      throw new StateError('cannot wait before the program is started: call sendArgs first');
    return channel.done();
  }

  /** Stops the program if it still runs, waits until it is gone, releases everything. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#state = 'closed';
    this.#options.signal?.removeEventListener('abort', this.#onAbort);
    const channel = this.#channel;
    if (channel) {
      channel.destroy();
      await channel.done().catch(() => {});
    } else if (this.#socket && !this.#socket.destroyed) {
      const socket = this.#socket;
      await new Promise((resolve) => socket.once('close', resolve).destroy());
    }
    this.#settleWaiter();
  }

  #useStreams(): { stdout: Readable; stderr: Readable } {
    if (this.#streams) return this.#streams;
    const channel = this.#runningChannel('read output streams');
    if (this.#receiving) {
      throw new StateError('cannot switch to streams: output is being read with receive()');
    }
    const queued = this.#queue.filter((item): item is ReceivedOutput => item.type !== 'exit');
    this.#queue = [];
    this.#queuedBytes = 0;
    if (this.#pausedByQueue) {
      this.#pausedByQueue = false;
      channel.resume();
    }
    this.#streams = outputReadables(channel, { initial: queued });
    return this.#streams;
  }

  #onOutput(chunk: OutputChunk): void {
    if (this.#streams) return;
    this.#enqueue({ type: chunk.type, data: chunk.data }, chunk.data.length);
  }

  #enqueue(item: ReceivedOutput | ReceivedExit, bytes: number): void {
    if (this.#waiter) {
      const waiter = this.#waiter;
      this.#waiter = null;
      if (waiter.timer) clearTimeout(waiter.timer);
      waiter.resolve(item);
      return;
    }
    this.#queue.push(item);
    this.#queuedBytes += bytes;
    if (this.#queuedBytes > this.#highWaterMark && !this.#pausedByQueue) {
      this.#pausedByQueue = true;
      this.#channel?.pause();
    }
  }

  #take(): Promise<Received> | null {
    const item = this.#queue.shift();
    if (item) {
      if (item.type !== 'exit') this.#queuedBytes -= item.data.length;
      if (this.#pausedByQueue && this.#queuedBytes <= this.#highWaterMark / 2) {
        this.#pausedByQueue = false;
        this.#channel?.resume();
      }
      return Promise.resolve(item);
    }
    if (this.#channelError) {
      const error = this.#channelError;
      this.#channelError = null;
      return Promise.reject(error);
    }
    if (this.#aborted) return Promise.reject(this.#aborted);
    if (this.#channel?.closed) return Promise.resolve({ type: 'closed' });
    return null;
  }

  #onChannelClose(): void {
    if (this.#state === 'running') this.#state = 'finished';
    this.#settleWaiter();
  }

  /** A waiting receive() learns the end: the error, or closed. */
  #settleWaiter(): void {
    const waiter = this.#waiter;
    if (!waiter) return;
    this.#waiter = null;
    if (waiter.timer) clearTimeout(waiter.timer);
    const next = this.#take() ?? Promise.resolve<Received>({ type: 'closed' });
    next.then(waiter.resolve, waiter.reject);
  }

  #runningChannel(what: string): ProcessChannel {
    if (this.#state === 'closed') throw new StateError(`cannot ${what}: the session is closed`);
    if (!this.#channel) {
      throw new StateError(`cannot ${what} before the program is started: call sendArgs first`);
    }
    return this.#channel;
  }

  #expect(state: SessionState, what: string): void {
    if (this.#state === state) return;
    const why: Record<SessionState, string> = {
      connected: 'the session is not started',
      running: 'the args were already sent (one program per session; connect again for another)',
      finished: 'the args were already sent and the program has ended',
      closed: 'the session is closed',
    };
    throw new StateError(`cannot ${what}: ${why[this.#state]}`);
  }
}

function openLocal(argv: readonly string[], options: SessionOptions): LocalChannel {
  const { cwd, env, killTimeout, processGroup } = options;
  return new LocalChannel(argv, { cwd, env, killTimeout, processGroup });
}

function checkTimeout(value: unknown, name: string): void {
  if (value !== undefined && !(typeof value === 'number' && Number.isFinite(value) && value >= 0)) {
    throw new ArgumentError(
      `${name} must be a number of ms ≥ 0 (0 = none); got ${describe(value)}`,
    );
  }
}

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
 * A call in the wrong state fails with `StateError` and changes nothing, so misuse never
 * puts a byte on the wire: synchronous calls (`sendArgs`, `sendClose`) throw it, calls that
 * return a promise (`send`, `receive`, `wait`) reject with it.
 *
 * The program is started through the target's transport (channel/transport.ts): `connect()`
 * prepares it (connects to the daemon; the program options are checked against what it
 * honours), `sendArgs()` starts it.
 *
 * Output is read one way per session: `receive()` / `for await`, or the `stdout` and
 * `stderr` Readables (the first use of one of them switches to streams).
 */
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { ProcessChannel } from '../channel/channel.js';
import { resolveTransport, type Target } from '../channel/target.js';
import {
  type Launch,
  PROGRAM_OPTION_NAMES,
  type ProgramOptions,
  refuseUnhonoured,
  startChannel,
  type Transport,
} from '../channel/transport.js';
import type { RunOutcome } from '../channel/usage.js';
import { checkByteCount, checkDuration, describeValue, hasDeadline } from '../core/limits.js';
import type { OutputChunk, OutputType } from '../core/output.js';
import { checkSignal } from '../core/signals.js';
import { checkWindowSide } from '../core/terminal.js';
import {
  ArgumentError,
  abortError,
  StateError,
  TimeoutError,
  throwIfAborted,
  UnsupportedOptionError,
} from '../errors.js';
import { drained, toBuffer } from './execute.js';
import {
  checkArgv,
  checkProtocol,
  DEFAULT_IDLE_TIMEOUT,
  EXEC_OPTIONS,
  isExecOption,
  type Protocol,
  programOptions,
} from './options.js';
import { ByteQueue, FlowGate, outputReadables, stdinWritable } from './streams.js';

export type SessionState = 'connected' | 'running' | 'finished' | 'closed';

/** A piece of output, as it arrived (chunk boundaries carry no meaning). */
export interface ReceivedOutput {
  type: OutputType;
  data: Buffer;
}

/**
 * How the program ended, always after all of its output: its status, and the run's
 * `reason`, `usage` and `descendantsStopped`, as in an `ExecResult` (`RunOutcome`).
 */
export interface ReceivedExit extends RunOutcome {
  type: 'exit';
}

/** What `receive()` resolves with: output, the exit, or one of the two outcomes without data. */
export type Received =
  | ReceivedOutput
  | ReceivedExit
  /** Nothing arrived within the timeout; the program still runs and receive() may be called again. */
  | { type: 'timeout' }
  /** The program has ended and everything was received: nothing more will come. */
  | { type: 'closed' };

/** The options of `connect()`: the program's (carried out by the transport) and the session's. */
export interface ConnectOptions extends ProgramOptions {
  /**
   * Default wait of one `receive()` in ms (lua-resty-exec's socket timeout): the longest
   * wait for the next piece of data, not a limit on the run. 0 or Infinity = forever. Default 60000.
   */
  timeout?: number;
  /** Output bytes queued for `receive()` before the program is paused. Default 64 KiB. */
  highWaterMark?: number;
  /** Aborting closes the session (the program is stopped); a waiting receive() rejects with AbortError. */
  signal?: AbortSignal;
  /**
   * Through a daemon: `'procsock'` starts the program in the procsock protocol extension even
   * when no option needs it, so that `signal()` works (a daemon that does not speak it makes
   * the session fail with `UnsupportedOptionError`, nothing run); `'auto'` (default) uses it
   * only for cwd, env, processGroup or killTimeout; `'plain'` never (then `sendArgs` throws
   * `UnsupportedOptionError` for an option that needs it). A local program needs no protocol.
   */
  protocol?: Protocol;
}

export interface ReceiveOptions {
  /** Longest wait in ms; 0 or Infinity = forever. Default: the session's `timeout`. */
  timeout?: number;
}

const DEFAULT_HIGH_WATER_MARK = 64 * 1024;
const SESSION_KEYS = ['timeout', 'highWaterMark', 'signal', 'protocol'];
/** What connect() takes: the program's options and the session's (not ez-mode's stdin, maxBuffer…). */
const CONNECT_KEYS: readonly string[] = [...PROGRAM_OPTION_NAMES, ...SESSION_KEYS];

/**
 * Opens a session: connects to the daemon at `target` (or gets a transport of the user's
 * own ready), or prepares a local child (`'local'`). Never throws: rejects with
 * `ArgumentError` for bad options, `UnsupportedOptionError` for a program option the
 * transport cannot carry out (cwd through a plain daemon), `ConnectError`, `AbortError`.
 */
export async function connect(
  target: Target = 'local',
  options: ConnectOptions = {},
): Promise<Session> {
  const transport = resolveTransport(target);
  const program = checkConnectOptions(options);
  throwIfAborted(options.signal);
  const launch = await transport.prepare({ signal: options.signal });
  try {
    refuseUnhonoured(launch, program, transport);
    throwIfAborted(options.signal);
  } catch (error) {
    await launch.cancel();
    throw error;
  }
  return new Session(transport, launch, options, program);
}

function checkConnectOptions(options: ConnectOptions): ProgramOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ArgumentError(`options must be an object; got ${describeValue(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!CONNECT_KEYS.includes(key)) {
      throw new ArgumentError(
        `unknown connect() option ${JSON.stringify(key)}${isExecOption(key) ? ' (an option of run() and exec calls, not of a session)' : ''}`,
      );
    }
  }
  const { timeout, highWaterMark, signal } = options;
  const program = programOptions(options);
  for (const [name, value] of Object.entries(program)) {
    if (value !== undefined) EXEC_OPTIONS[name as keyof ProgramOptions].check(value, name);
  }
  if (timeout !== undefined) checkDuration('timeout', timeout);
  if (highWaterMark !== undefined) checkByteCount('highWaterMark', highWaterMark);
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new ArgumentError(`signal must be an AbortSignal; got ${describeValue(signal)}`);
  }
  if (options.protocol !== undefined) checkProtocol(options.protocol, 'protocol');
  return program;
}

interface Waiter {
  resolve(received: Received): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout | null;
}

export class Session {
  /** Where the program runs. */
  readonly transport: Transport;
  readonly #launch: Launch;
  readonly #options: ConnectOptions;
  readonly #program: ProgramOptions;
  #state: SessionState = 'connected';
  #channel: ProcessChannel | null = null;
  #stdinClosed = false;
  /** What receive() has not taken yet; made by sendArgs, bounded by highWaterMark. */
  #queue: ByteQueue<ReceivedOutput | ReceivedExit> | null = null;
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

  /** Use `connect()`. */
  constructor(
    transport: Transport,
    launch: Launch,
    options: ConnectOptions,
    program: ProgramOptions,
  ) {
    this.transport = transport;
    this.#launch = launch;
    this.#options = options;
    this.#program = program;
    options.signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  get state(): SessionState {
    return this.#state;
  }

  /** The daemon connection (null for a transport without one, such as a local child). */
  get socket(): Socket | null {
    return this.#launch.socket ?? null;
  }

  /** The running program's channel, once `sendArgs` started it. */
  get channel(): ProcessChannel | null {
    return this.#channel;
  }

  /** The program's pid where the transport knows it (a local child); undefined through a daemon or before `sendArgs`. */
  get pid(): number | undefined {
    return this.#channel?.pid;
  }

  /**
   * Starts the program. Throws `ArgumentError` for a bad argv, `StateError` if already
   * started or closed, `ClosedError` when the daemon hung up before the args were sent.
   */
  sendArgs(argv: readonly string[]): this {
    this.#expect('connected', 'send the args');
    checkArgv(argv);
    const channel = startChannel(
      this.#launch,
      { argv, ...this.#program, protocol: this.#options.protocol },
      this.transport,
    );
    this.#channel = channel;
    this.#queue = new ByteQueue(
      new FlowGate(channel),
      this.#options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK,
      (item) => (item.type === 'exit' ? 0 : item.data.length),
    );
    this.#state = 'running';
    channel.on('output', (chunk) => this.#onOutput(chunk));
    // The channel knows the whole outcome by its exit (a daemon sends reason and usage first).
    channel.on('exit', () => this.#enqueue({ type: 'exit', ...channel.outcome! }));
    channel.on('error', (error) => {
      this.#channelError = error;
    });
    channel.on('close', () => this.#onChannelClose());
    return this;
  }

  /**
   * Writes to the program's stdin. Resolves when more may be written (at once, unless
   * the program is not keeping up). Empty data does nothing — close stdin with
   * `sendClose()`. Data for a program that has already ended is dropped (it can end at any
   * time, so that is no misuse). Rejects with `StateError` before `sendArgs`, after
   * `sendClose` or `close`, and with `ArgumentError` for data that is not bytes or a string.
   */
  send(data: string | Uint8Array): Promise<void> {
    try {
      const channel = this.#runningChannel('send data');
      if (this.#stdinClosed) {
        throw new StateError('cannot send data: stdin is already closed (sendClose was called)');
      }
      if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
        throw new ArgumentError(
          `data must be a string or a Buffer/Uint8Array; got ${describeValue(data)}`,
        );
      }
      const buffer = toBuffer(data);
      // A program that has ended takes no more input: like the daemon, drop it and carry on.
      if (buffer.length === 0 || channel.closed || channel.write(buffer)) return Promise.resolve();
      return drained(channel);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The same as `send` (lua-resty-exec's name). */
  sendData(data: string | Uint8Array): Promise<void> {
    return this.send(data);
  }

  /**
   * Sends the program a signal: `'INT'`, `'SIGINT'` or a number. Locally it is sent at once
   * (to the process group with `processGroup`); through a daemon it needs the protocol
   * extension — connect with `{ protocol: 'procsock' }` (or any option that uses it), else
   * `UnsupportedOptionError`. A program that has already ended gets nothing. Throws
   * `ArgumentError` for a signal this system does not have, `StateError` before `sendArgs`
   * or after `close`.
   */
  signal(signal: string | number): void {
    const channel = this.#runningChannel('send a signal');
    const name = signalName(signal);
    if (!channel.signal(name)) {
      throw new UnsupportedOptionError(
        `signal() cannot be honoured by ${this.transport.description} in the plain sockexec protocol: connect with { protocol: 'procsock' } (a procsock daemon), or run the program locally`,
        'signal',
        this.transport.description,
      );
    }
  }

  /**
   * PTY mode (`pty` option): sets the terminal's window size in character cells, 1 to 65535;
   * the program gets SIGWINCH. Locally it is done at once; through a procsock daemon it is
   * one more message. Throws `UnsupportedOptionError` when the session has no terminal,
   * `ArgumentError` for a bad size, `StateError` before `sendArgs` or after `close`. A program
   * that has already ended gets nothing.
   */
  resize(columns: number, rows: number): void {
    const channel = this.#runningChannel('resize the terminal');
    checkWindowSide('columns', columns);
    checkWindowSide('rows', rows);
    if (!channel.terminal) {
      throw new UnsupportedOptionError(
        'resize() needs a terminal: connect with { pty: true } (or { pty: { columns, rows } })',
        'pty',
        this.transport.description,
      );
    }
    channel.resize(columns, rows);
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
   * output received before it; with `StateError` when called in the wrong state. One
   * receive at a time.
   */
  receive(options: ReceiveOptions = {}): Promise<Received> {
    try {
      return this.#receive(options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #receive(options: ReceiveOptions): Promise<Received> {
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
    if (typeof options !== 'object' || options === null) {
      throw new ArgumentError(`receive() options must be an object; got ${describeValue(options)}`);
    }
    const timeout = checkDuration(
      'timeout',
      options.timeout ?? this.#options.timeout ?? DEFAULT_IDLE_TIMEOUT,
    );
    this.#receiving = true;
    const next = this.#take();
    if (next) return next;
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: null };
      if (hasDeadline(timeout)) {
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
        const timeout = this.#options.timeout ?? DEFAULT_IDLE_TIMEOUT;
        throw new TimeoutError(
          `the program sent nothing for ${timeout} ms (the session's timeout)`,
          timeout,
          'idleTimeout',
        );
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
   * Resolves with how the program ended — `{ exitCode, termSignal, reason, usage,
   * descendantsStopped }`, as the exit item — once it is done and the session released
   * everything, or null when the session was closed first. Rejects with the connection's
   * error, or `StateError` before `sendArgs`.
   */
  async wait(): Promise<RunOutcome | null> {
    const channel = this.#channel;
    if (!channel)
      throw new StateError('cannot wait before the program is started: call sendArgs first');
    return (await channel.done()) === null ? null : channel.outcome;
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
    } else {
      await this.#launch.cancel();
    }
    this.#settleWaiter();
  }

  #useStreams(): { stdout: Readable; stderr: Readable } {
    if (this.#streams) return this.#streams;
    const channel = this.#runningChannel('read output streams');
    if (this.#receiving) {
      throw new StateError('cannot switch to streams: output is being read with receive()');
    }
    const queued = (this.#queue?.takeAll() ?? []).filter(
      (item): item is ReceivedOutput => item.type !== 'exit',
    );
    this.#streams = outputReadables(channel, { initial: queued });
    return this.#streams;
  }

  #onOutput(chunk: OutputChunk): void {
    if (this.#streams) return;
    this.#enqueue({ type: chunk.type, data: chunk.data });
  }

  #enqueue(item: ReceivedOutput | ReceivedExit): void {
    if (this.#waiter) {
      const waiter = this.#waiter;
      this.#waiter = null;
      if (waiter.timer) clearTimeout(waiter.timer);
      waiter.resolve(item);
      return;
    }
    this.#queue?.push(item);
  }

  #take(): Promise<Received> | null {
    const item = this.#queue?.shift();
    if (item) return Promise.resolve(item);
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
    // The program is gone and everything it held released: an abort now has nothing to stop,
    // and a long-lived signal must not keep every finished session alive (as a ChildProcess
    // lets go of its signal at its exit).
    this.#options.signal?.removeEventListener('abort', this.#onAbort);
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

/** `'INT'`, `'SIGINT'` or 2 → `'INT'`; `ArgumentError` for a signal this system does not have. */
function signalName(signal: unknown): string {
  return checkSignal(signal);
}

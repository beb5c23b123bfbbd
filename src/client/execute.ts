/**
 * One ez-mode call, from a started channel to its result: feeds stdin, routes output to
 * callbacks or collects it (at most `maxBuffer` bytes per stream), enforces the wall-clock
 * `timeout`, the between-data `idleTimeout` and the AbortSignal, and settles only after the
 * channel closed (program exited, output all delivered, resources released) — also when it
 * fails, so a rejected call leaves nothing running behind it.
 */
import { constants as bufferConstants } from 'node:buffer';
import { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import type { ProcessChannel } from '../channel/channel.js';
import type { EndReason, ResourceUsage } from '../channel/usage.js';
import { describeValue, hasDeadline } from '../core/limits.js';
import type { OutputChunk, OutputType } from '../core/output.js';
import {
  ArgumentError,
  abortError,
  LimitError,
  type ProcsockError,
  TimeoutError,
} from '../errors.js';
import type { StopCause } from '../protocol/extension.js';
import { drainOrClose } from '../util/drain.js';

export type Encoding = 'utf8' | 'buffer';
/** What output looks like in a given encoding: a string, or a `Buffer` for `'buffer'`. */
export type Output<E extends Encoding> = E extends 'buffer' ? Buffer : string;

/**
 * Called for each chunk of output as it arrives (chunk boundaries carry no meaning; a
 * UTF-8 character is never split in `'utf8'` mode). Returning a promise pauses the
 * program's output until it settles, so a slow sink slows the program instead of
 * buffering; a throw or rejection stops the program and fails the call with that error.
 */
export type OutputCallback<E extends Encoding = Encoding> = (chunk: Output<E>) => unknown;

/** Data for the program's stdin: all at once, or streamed (a `Readable`, an async generator). */
export type StdinSource = string | Uint8Array | AsyncIterable<string | Uint8Array>;

export interface ExecResult<T extends string | Buffer = string> {
  /** The argv that was run. */
  argv: readonly string[];
  /** Collected stdout; empty when a `stdout` callback received it. */
  stdout: T;
  /** Collected stderr; empty when a `stderr` callback received it. */
  stderr: T;
  /** Output whose origin the daemon could not tell (sockexec's `unknown`; normally empty). */
  unknown: T;
  /** Exit status when the program exited normally, else null. */
  exitCode: number | null;
  /** Name of the signal that killed the program (`'TERM'`, `'KILL'`…), else null. */
  termSignal: string | null;
  /**
   * Why the run ended (`EndReason`): `exit` or `signal` by itself, `spawn-failure` when the
   * program could not be executed (its 127/126); through a procsock daemon also the daemon's
   * causes (`deadline`, `output-limit`, `stdin-limit`, `shutdown`, `policy-refused`…), which a
   * plain sockexec daemon cannot tell (there: `exit` or `signal` only). In an error's
   * `result`: the call's own cause (`timeout`, `idle-timeout`, `abort`, `output-limit`).
   */
  reason: EndReason;
  /**
   * What the run cost, in `process.resourceUsage()` units (`userCPUTime`/`systemCPUTime` µs,
   * `maxRSS` KiB) plus `wallTime` ms; a field is null where the backend cannot know it, and
   * the whole is null where nothing ran or nothing is known (a plain sockexec daemon).
   */
  usage: ResourceUsage | null;
  /** Descendants procsock had to stop when the run ended (contained runs); null where not tracked. */
  descendantsStopped: number | null;
}

/** A call's options, checked and merged (see options.ts for their meaning). */
export interface ExecutionPlan {
  argv: readonly string[];
  stdin: StdinSource | null;
  stdout: OutputCallback | null;
  stderr: OutputCallback | null;
  /** The whole run's limit in ms; 0 or Infinity = none. */
  timeout: number;
  /** Longest wait in ms for the next piece of data; 0 or Infinity = none. */
  idleTimeout: number;
  /** false: no idle limit. */
  timeoutFatal: boolean;
  /** Most bytes collected per stream. */
  maxBuffer: number;
  encoding: Encoding;
  signal: AbortSignal | undefined;
}

export function execute(
  channel: ProcessChannel,
  plan: ExecutionPlan,
): Promise<ExecResult<string | Buffer>> {
  return new Execution(channel, plan).result;
}

class Execution {
  readonly result: Promise<ExecResult<string | Buffer>>;
  readonly #channel: ProcessChannel;
  readonly #plan: ExecutionPlan;
  readonly #collected: Record<OutputType, Buffer[]> = { stdout: [], stderr: [], unknown: [] };
  readonly #collectedBytes: Record<OutputType, number> = { stdout: 0, stderr: 0, unknown: 0 };
  /** `maxBuffer`, lowered to what one string (or Buffer) can hold, so collecting never fails later. */
  readonly #maxBuffer: number;
  readonly #decoders: Partial<Record<OutputType, StringDecoder>> = {};
  #failure: Error | null = null;
  /** Set when the call itself stopped the program (its own error, which gets the result). */
  #stopReason: EndReason | null = null;
  /** The idle timer: refreshed by every piece of data. */
  #timer: NodeJS.Timeout | null = null;
  #wallTimer: NodeJS.Timeout | null = null;
  #pendingCallbacks = 0;
  /** Callbacks' promises still pending (made at the first one: most calls have none). */
  #callbacksSettled: Set<Promise<unknown>> | null = null;

  constructor(channel: ProcessChannel, plan: ExecutionPlan) {
    this.#channel = channel;
    this.#plan = plan;
    this.#maxBuffer = Math.min(
      plan.maxBuffer,
      plan.encoding === 'buffer' ? bufferConstants.MAX_LENGTH : bufferConstants.MAX_STRING_LENGTH,
    );
    channel.on('output', (chunk) => this.#onOutput(chunk));
    const onAbort = () => this.#fail(abortError(plan.signal!), 'abort');
    plan.signal?.addEventListener('abort', onAbort, { once: true });
    if (plan.signal?.aborted) onAbort();
    if (hasDeadline(plan.timeout)) {
      this.#wallTimer = setTimeout(
        () => this.#fail(this.#timeoutError('timeout'), 'timeout'),
        plan.timeout,
      );
    }
    this.#armTimer();
    // No stdin (the default): closed at once, without the feeder's promise.
    if (plan.stdin === null) this.#endStdin();
    else this.#feedStdin();
    this.result = this.#settled(onAbort);
  }

  /** `#settle`, then the timers and the abort listener let go (no `.finally`: a promise less). */
  async #settled(onAbort: () => void): Promise<ExecResult<string | Buffer>> {
    try {
      return await this.#settle();
    } finally {
      this.#disarmTimer();
      if (this.#wallTimer) clearTimeout(this.#wallTimer);
      this.#plan.signal?.removeEventListener('abort', onAbort);
    }
  }

  async #settle(): Promise<ExecResult<string | Buffer>> {
    try {
      await this.#channel.done();
    } catch (error) {
      throw this.#withResult(this.#failure) ?? error;
    }
    this.#flushDecoders();
    // The call is done when the consumer is too: wait for callbacks still working.
    const settling = this.#callbacksSettled;
    while (settling && settling.size > 0) await Promise.all(settling);
    // A daemon that was sent the call's timeout stopped the program at it before this timer did.
    if (!this.#failure && this.#channel.reason === 'timeout' && hasDeadline(this.#plan.timeout)) {
      this.#failure = this.#timeoutError('timeout');
      this.#stopReason = 'timeout';
    }
    if (this.#failure) throw this.#withResult(this.#failure);
    return this.#result();
  }

  /** The call's own error (a limit, an abort) carries the result; a callback's error is the caller's. */
  #withResult(failure: Error | null): Error | null {
    if (failure && this.#stopReason !== null) (failure as ProcsockError).result = this.#result();
    return failure;
  }

  /** The result as the channel reports the end, with the call's own cause winning. */
  #result(): ExecResult<string | Buffer> {
    const channel = this.#channel;
    const status = channel.finalStatus;
    const encoding = this.#plan.encoding;
    const collected = this.#collected;
    return {
      argv: this.#plan.argv,
      stdout: joined(collected.stdout, encoding),
      stderr: joined(collected.stderr, encoding),
      unknown: joined(collected.unknown, encoding),
      exitCode: status?.exitCode ?? null,
      termSignal: status?.termSignal ?? null,
      // The channel knows its reason from its exit on, and a call that stopped it has its own.
      reason: this.#stopReason ?? channel.reason ?? 'exit',
      usage: channel.usage,
      descendantsStopped: channel.descendantsStopped,
    };
  }

  #onOutput({ type, data }: OutputChunk): void {
    if (this.#failure) return;
    this.#timer?.refresh();
    const callback = type === 'unknown' ? null : this.#plan[type];
    if (!callback) {
      this.#collect(type, data);
      return;
    }
    this.#deliver(callback, this.#decode(type, data));
  }

  /** Keeps a chunk for the result; past `maxBuffer` bytes the program is stopped instead. */
  #collect(type: OutputType, data: Buffer): void {
    const bytes = this.#collectedBytes[type] + data.length;
    if (bytes > this.#maxBuffer) {
      const limit = this.#maxBuffer;
      // As Node's execFile: the result keeps the output up to the limit (whole characters
      // only, in 'utf8'), so the error says what the program wrote before it was stopped.
      const room = limit - this.#collectedBytes[type];
      const kept = this.#plan.encoding === 'utf8' ? utf8Prefix(data, room) : room;
      if (kept > 0) this.#collected[type].push(data.subarray(0, kept));
      this.#collectedBytes[type] += kept;
      this.#fail(
        new LimitError(
          `${this.#plan.argv[0]} wrote more than ${limit} bytes to ${type} (maxBuffer); it was stopped ` +
            `(raise maxBuffer, or pass a ${type === 'unknown' ? 'stderr' : type} callback to stream the output)`,
          'maxBuffer',
        ),
        'output-limit',
      );
      return;
    }
    this.#collectedBytes[type] = bytes;
    this.#collected[type].push(data);
  }

  #decode(type: OutputType, data: Buffer): string | Buffer {
    if (this.#plan.encoding === 'buffer') return data;
    this.#decoders[type] ??= new StringDecoder('utf8');
    return this.#decoders[type].write(data);
  }

  /** A UTF-8 character cut off by the program's end still reaches the callback. */
  #flushDecoders(): void {
    for (const type of ['stdout', 'stderr'] as const) {
      const rest = this.#decoders[type]?.end();
      if (rest) this.#deliver(this.#plan[type]!, rest);
    }
  }

  #deliver(callback: OutputCallback, chunk: string | Buffer): void {
    if (chunk.length === 0) return;
    let returned: unknown;
    try {
      returned = (callback as (chunk: string | Buffer) => unknown)(chunk);
    } catch (error) {
      this.#fail(error as Error);
      return;
    }
    if (!isPromiseLike(returned)) return;
    // The consumer is busy: hold the program back, and do not blame it for the wait.
    if (this.#pendingCallbacks++ === 0) {
      this.#channel.pause();
      this.#disarmTimer();
    }
    this.#callbacksSettled ??= new Set();
    const pending = this.#callbacksSettled;
    const settled = Promise.resolve(returned).then(
      () => {
        pending.delete(settled);
        if (--this.#pendingCallbacks > 0 || this.#failure || this.#channel.closed) return;
        this.#channel.resume();
        this.#armTimer();
      },
      (error: unknown) => {
        pending.delete(settled);
        this.#fail(error as Error);
      },
    );
    pending.add(settled);
  }

  #endStdin(): void {
    try {
      if (!this.#failure) this.#channel.end();
    } catch (error) {
      this.#fail(error as Error);
    }
  }

  async #feedStdin(): Promise<void> {
    const { stdin } = this.#plan;
    const channel = this.#channel;
    try {
      if (typeof stdin === 'string' || stdin instanceof Uint8Array) {
        channel.write(toBuffer(stdin));
      } else if (stdin instanceof Readable) {
        this.#feedReadable(stdin);
        return;
      } else if (stdin) {
        for await (const piece of stdin) {
          if (this.#failure || channel.closed) return;
          if (typeof piece !== 'string' && !(piece instanceof Uint8Array)) {
            throw new ArgumentError(
              `stdin: an async iterable must yield strings or Buffers/Uint8Arrays; it yielded ${describeValue(piece)} (an object-mode stream?)`,
            );
          }
          if (!channel.write(toBuffer(piece))) await drained(channel);
          // Input the program accepts is progress too: a filter may print only at the end.
          if (this.#pendingCallbacks === 0) this.#timer?.refresh();
        }
      }
      if (!this.#failure) channel.end();
    } catch (error) {
      this.#fail(error as Error);
    }
  }

  /**
   * A Readable is read as a pipe would read it, not through its async iterator: when the run
   * ends first (the program exits without reading it all, a stop), the stream is paused and let
   * go — not destroyed, and not left with a pending read that would take, and drop, the next
   * chunk written to it (an iterator destroys the stream when left, and a later run given the
   * same stream, process.stdin say, lost its first chunk and failed).
   */
  #feedReadable(stream: Readable): void {
    const channel = this.#channel;
    const detach = () => {
      stream.pause();
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      channel.off('close', detach);
    };
    const onData = (piece: unknown) => {
      if (this.#failure || channel.closed) {
        detach();
        return;
      }
      if (typeof piece !== 'string' && !(piece instanceof Uint8Array)) {
        detach();
        this.#fail(
          new ArgumentError(
            `stdin: a stream must give strings or Buffers/Uint8Arrays; it gave ${describeValue(piece)} (an object-mode stream?)`,
          ),
        );
        return;
      }
      if (this.#pendingCallbacks === 0) this.#timer?.refresh();
      if (channel.write(toBuffer(piece))) return;
      stream.pause();
      drained(channel).then(() => {
        if (!this.#failure && !channel.closed && stream.listenerCount('data') > 0) stream.resume();
      });
    };
    const onEnd = () => {
      detach();
      if (!this.#failure) channel.end();
    };
    const onError = (error: Error) => {
      detach();
      this.#fail(error);
    };
    if (stream.readableEnded) {
      onEnd();
      return;
    }
    if (stream.destroyed) {
      this.#fail(
        stream.errored ??
          new ArgumentError('stdin: the stream was destroyed before the run could read it'),
      );
      return;
    }
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onError);
    channel.once('close', detach);
    stream.resume();
  }

  /** The idle timer; while a callback holds the program back it is disarmed (the wait is not the program's). */
  #armTimer(): void {
    const { idleTimeout, timeoutFatal } = this.#plan;
    // A non-fatal idle timeout means "keep waiting", so there is nothing to arm.
    if (!hasDeadline(idleTimeout) || !timeoutFatal || this.#failure) return;
    if (this.#timer) {
      this.#timer.refresh();
      return;
    }
    this.#timer = setTimeout(
      () => this.#fail(this.#timeoutError('idleTimeout'), 'idle-timeout'),
      idleTimeout,
    );
  }

  #timeoutError(option: 'timeout' | 'idleTimeout'): TimeoutError {
    const program = this.#plan.argv[0];
    const ms = this.#plan[option];
    return new TimeoutError(
      option === 'timeout'
        ? `${program} did not finish within ${ms} ms (timeout); it was stopped`
        : `${program} sent no data for ${ms} ms (idleTimeout); it was stopped (raise idleTimeout, or 0 to wait as long as it takes)`,
      ms,
      option,
    );
  }

  #disarmTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /**
   * The first failure wins; the program is stopped and the call rejects once it is gone.
   * `reason`: the call's own cause, for the error's result (output collected so far is kept
   * for it: at most `maxBuffer` per stream).
   */
  #fail(error: Error, reason: StopCause | null = null): void {
    if (this.#failure) return;
    // A callback or stdin source that throws or rejects with nothing (`Promise.reject()`,
    // `throw 0`) still fails the call: it used to resolve as if the program had been killed.
    this.#failure =
      error ||
      new Error(
        `an output callback or the stdin source threw or rejected with ${String(error)}; the program was stopped`,
        { cause: error },
      );
    this.#stopReason = reason;
    this.#disarmTimer();
    if (this.#wallTimer) clearTimeout(this.#wallTimer);
    // The call's own cause: stopped so that the end is still learnt (through a daemon in the
    // extension, the daemon stops it and replies). A callback's error just gives up on it.
    if (reason === null) this.#channel.destroy();
    else this.#channel.stop(reason);
  }
}

/**
 * Collected chunks as one output. A Buffer result is always a copy (a chunk may be a view of
 * a much larger read buffer); a string is decoded from the one chunk there often is.
 */
function joined(chunks: Buffer[], encoding: Encoding): string | Buffer {
  if (encoding === 'buffer') return Buffer.concat(chunks);
  if (chunks.length === 0) return '';
  return (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('utf8');
}

/**
 * How many of `data`'s first `room` bytes end on a UTF-8 character boundary (a character cut
 * by the limit is left out whole). Earlier chunks are not looked at: a character split across
 * chunks that the limit cuts may still lose its tail.
 */
function utf8Prefix(data: Buffer, room: number): number {
  if (room >= data.length) return data.length;
  let end = room;
  // Back over continuation bytes (10xxxxxx) to the start of the character the limit cuts.
  while (end > 0 && end > room - 3 && (data[end]! & 0xc0) === 0x80) end--;
  return end;
}

/** Client data as a Buffer: strings as UTF-8, byte arrays without a copy. */
export function toBuffer(data: string | Uint8Array): Buffer {
  if (typeof data === 'string') return Buffer.from(data);
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Resolves on `'drain'`, or when the channel closes (nothing more can be written then). */
export function drained(channel: ProcessChannel): Promise<void> {
  return channel.closed ? Promise.resolve() : drainOrClose(channel);
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}

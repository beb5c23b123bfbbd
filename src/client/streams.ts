/**
 * Node stream faces of a process channel: a `Writable` for stdin and `Readable`s for
 * stdout and stderr. Back-pressure passes straight through: a full Readable pauses the
 * channel (so the program blocks on its writes), a full channel makes the Writable wait.
 */
import { Readable, Writable } from 'node:stream';
import type { ProcessChannel } from '../channel/channel.js';
import type { OutputChunk } from '../core/output.js';

/** Where a stdin Writable writes: `send` resolves when more may be written, rejects on misuse. */
export interface StdinSink {
  send(data: Buffer): Promise<void>;
  sendClose(): void;
}

/** A program's stdin as a Writable; `end()` closes it. Misuse (no program yet) errors the stream. */
export function stdinWritable(sink: StdinSink): Writable {
  return new Writable({
    decodeStrings: true,
    write(chunk: Buffer, _encoding, callback) {
      sink.send(chunk).then(() => callback(), callback);
    },
    final(callback) {
      try {
        sink.sendClose();
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
  });
}

/**
 * The channel's one flow switch, shared by its consumers: output is paused while any of
 * them is full and resumed once none is, so a consumer nobody reads from blocks the
 * program once it fills, as with a child process's pipes.
 */
export class FlowGate {
  readonly #channel: ProcessChannel;
  readonly #full = new Set<object>();

  constructor(channel: ProcessChannel) {
    this.#channel = channel;
  }

  /** `consumer` can take no more: hold the program back. */
  hold(consumer: object): void {
    if (this.#full.has(consumer)) return;
    this.#full.add(consumer);
    if (this.#full.size === 1) this.#channel.pause();
  }

  /** `consumer` can take more again. */
  release(consumer: object): void {
    if (this.#full.delete(consumer) && this.#full.size === 0) this.#channel.resume();
  }
}

/**
 * Items queued for a reader that takes them one at a time, counted in bytes: above
 * `highWaterMark` the gate holds the program back, at half of it lets it go.
 */
export class ByteQueue<T> {
  readonly #items: T[] = [];
  readonly #gate: FlowGate;
  readonly #highWaterMark: number;
  readonly #size: (item: T) => number;
  #bytes = 0;

  constructor(gate: FlowGate, highWaterMark: number, size: (item: T) => number) {
    this.#gate = gate;
    this.#highWaterMark = highWaterMark;
    this.#size = size;
  }

  push(item: T): void {
    this.#items.push(item);
    this.#bytes += this.#size(item);
    if (this.#bytes > this.#highWaterMark) this.#gate.hold(this);
  }

  shift(): T | undefined {
    const item = this.#items.shift();
    if (item === undefined) return undefined;
    this.#bytes -= this.#size(item);
    if (this.#bytes <= this.#highWaterMark / 2) this.#gate.release(this);
    return item;
  }

  /** Everything queued, emptying the queue (and releasing the program). */
  takeAll(): T[] {
    this.#bytes = 0;
    this.#gate.release(this);
    return this.#items.splice(0);
  }
}

/**
 * Stdout and stderr of the channel as Readables, which end when the program has exited
 * (or error with the channel's error). Output of type `unknown` goes to stderr. One
 * Readable over its high-water mark pauses both, as the channel has one flow switch.
 */
export function outputReadables(
  channel: ProcessChannel,
  options: { highWaterMark?: number; initial?: readonly OutputChunk[] } = {},
): { stdout: Readable; stderr: Readable } {
  const gate = new FlowGate(channel);
  const make = () =>
    new Readable({
      highWaterMark: options.highWaterMark,
      read() {
        gate.release(this);
      },
    });
  const stdout = make();
  const stderr = make();
  const onOutput = ({ type, data }: OutputChunk) => {
    const stream = type === 'stdout' ? stdout : stderr;
    if (!stream.push(data)) gate.hold(stream);
  };
  for (const chunk of options.initial ?? []) onOutput(chunk);
  channel.on('output', onOutput);
  const finish = (error?: Error) => {
    for (const stream of [stdout, stderr]) {
      if (error) stream.destroy(error);
      else stream.push(null);
    }
  };
  const onClose = () => {
    channel.done().then(() => finish(), finish);
  };
  if (channel.closed) onClose();
  else channel.on('close', onClose);
  return { stdout, stderr };
}

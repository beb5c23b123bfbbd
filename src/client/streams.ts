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
 * Stdout and stderr of the channel as Readables, which end when the program has exited
 * (or error with the channel's error). Output of type `unknown` goes to stderr. One
 * Readable over its high-water mark pauses both, as the channel has one flow switch: a
 * stream nobody reads blocks the program once it fills, as with a child process's pipes.
 */
export function outputReadables(
  channel: ProcessChannel,
  options: { highWaterMark?: number; initial?: readonly OutputChunk[] } = {},
): { stdout: Readable; stderr: Readable } {
  const full = new Set<Readable>();
  const make = () =>
    new Readable({
      highWaterMark: options.highWaterMark,
      read() {
        if (full.delete(this) && full.size === 0) channel.resume();
      },
    });
  const stdout = make();
  const stderr = make();
  const onOutput = ({ type, data }: OutputChunk) => {
    const stream = type === 'stdout' ? stdout : stderr;
    if (!stream.push(data) && !full.has(stream)) {
      full.add(stream);
      channel.pause();
    }
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

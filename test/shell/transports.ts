/**
 * The transports the shell suite runs over, as `Transport`s wrapping the real ones, so that
 * every test can also see what the driver wrote (to learn a run's marker) and, for the
 * UTF-8 and marker tests, get the program's output one byte per event.
 */
import { ProcessChannel } from '../../src/channel/channel.js';
import { localTransport } from '../../src/channel/local.js';
import { daemonTransport } from '../../src/channel/socket.js';
import type { Launch, Transport } from '../../src/channel/transport.js';

export interface RecordingTransport {
  transport: Transport;
  /** Everything written to the shell's stdin, in order, across restarts. */
  written: string[];
}

/** The default local transport (as the Shell makes it) or a daemon session at `socket`, with each channel changed by `wrap`. */
function wrapped(
  socket: string | undefined,
  wrap: (channel: ProcessChannel) => ProcessChannel,
): Transport {
  const inner = socket ? daemonTransport(socket) : localTransport();
  return {
    description: inner.description,
    async prepare(options) {
      const launch = await inner.prepare(options);
      const outer: Launch = {
        honours: (option) => launch.honours(option),
        start: (request) => wrap(launch.start(request)),
        cancel: () => launch.cancel(),
      };
      return outer;
    },
  };
}

/**
 * A local child or a daemon session at `socket`, recording what the driver writes; with
 * `byteSplit`, its output also comes one byte per event (a channel that cannot read
 * pending output, so the POSIX preset uses its stderr marker).
 */
export function recordingTransport(
  socket?: string,
  options: { byteSplit?: boolean } = {},
): RecordingTransport {
  const written: string[] = [];
  const transport = wrapped(socket, (channel) => {
    const write = channel.write.bind(channel);
    channel.write = (data) => {
      written.push(String(data));
      return write(data);
    };
    return options.byteSplit ? new ByteSplitChannel(channel) : channel;
  });
  return { transport, written };
}

/** The markers of the POSIX preset's runs (and start-up probes), in the order they were written. */
export function markers(written: readonly string[]): string[] {
  // Each is written as two pieces that printf joins (`printf FORMAT P1 P2 …`), or, to bash's
  // loop, at the start of a run's data: `P1P2SSSK…` (K: the run's kind; after a NUL on an
  // interactive terminal).
  const report =
    /printf (?:"\$__psf"|'%s%s %s %s %s\\n') ([\w-]+) ([\w-]+) |^\0?([\w-]{16})\d{3}[slu]/g;
  return written.flatMap((text) =>
    [...text.matchAll(report)].map((match) => match[3] ?? match[1]! + match[2]!),
  );
}

/** Re-emits another channel's output one byte at a time: every possible chunk boundary. */
export class ByteSplitChannel extends ProcessChannel {
  readonly kind;
  readonly #inner: ProcessChannel;

  constructor(inner: ProcessChannel) {
    super();
    this.kind = inner.kind;
    this.#inner = inner;
    inner.on('output', ({ type, data }) => {
      for (let i = 0; i < data.length; i++) this.emitOutput(type, data.subarray(i, i + 1));
    });
    inner.on('exit', (status) => this.emitExit(status));
    inner.on('error', (error) => this.emitError(error));
    inner.on('close', () => this.emitClose());
    inner.on('drain', () => this.emit('drain'));
  }

  write(data: Buffer | string): boolean {
    return this.#inner.write(data);
  }
  end(): void {
    this.#inner.end();
  }
  pause(): void {
    this.#inner.pause();
  }
  resume(): void {
    this.#inner.resume();
  }
  protected destroyResources(): void {
    this.#inner.destroy();
  }
}

/** Output one byte per event; such a channel cannot read pending output synchronously. */
export function byteSplitTransport(socket?: string): Transport {
  return wrapped(socket, (channel) => new ByteSplitChannel(channel));
}

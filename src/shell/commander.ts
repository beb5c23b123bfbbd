/**
 * Commanders: a command's text together with the code that reads its output, so the two
 * live side by side and can be tested without a shell (feed the parsers some buffers).
 *
 * Parsers get the output as raw chunks (`Buffer`s whose boundaries carry no meaning: a
 * line or a UTF-8 character may be split), then `end()` once all of it was seen. Chunks,
 * not lines, because that is the only shape with no length limit and no copying: a 10 MB
 * line simply arrives as many chunks. Wrap a callback in `lineParser()` to get whole lines;
 * it holds one line until its newline (or the end), so a line's memory is the line's size.
 */
import { StringDecoder } from 'node:string_decoder';
import { LimitError } from '../errors.js';

export interface OutputParser {
  /** The next piece of output, in order. Return value ignored (so a Node `Writable` fits). */
  write(chunk: Buffer): unknown;
  /** All of the command's output has been seen (also on failure, so parsers can flush). */
  end?(): void;
}

export interface Commander {
  /** The command text sent to the shell. It may be a multi-line block. */
  readonly command: string;
  /** Reads the command's stdout; none: it is discarded. */
  readonly stdout?: OutputParser;
  /** Reads the command's stderr; none: it is discarded. */
  readonly stderr?: OutputParser;
}

/**
 * Calls `onLine` with each line (UTF-8, without its `\n`). A last line with no newline is
 * delivered at `end()` — output a command leaves before the sentinel on the same line.
 */
export function lineParser(onLine: (line: string) => void): OutputParser {
  const decoder = new StringDecoder('utf8');
  let partial: string[] = [];
  const take = (text: string) => {
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      partial.push(text.slice(start, nl));
      const line = partial.length === 1 ? partial[0]! : partial.join('');
      partial = [];
      onLine(line);
      start = nl + 1;
    }
    if (start < text.length) partial.push(text.slice(start));
  };
  return {
    write: (chunk: Buffer) => take(decoder.write(chunk)),
    end: () => {
      take(decoder.end());
      if (partial.length > 0) {
        const line = partial.join('');
        partial = [];
        onLine(line);
      }
    },
  };
}

/**
 * Decodes a stream as UTF-8 into one string, characters split across chunks included. With a
 * `maxBuffer` (bytes), a write past it throws `LimitError` and keeps nothing more.
 */
export class TextCollector implements OutputParser {
  readonly #decoder = new StringDecoder('utf8');
  readonly #pieces: string[] = [];
  readonly #maxBuffer: number;
  readonly #name: string;
  #bytes = 0;
  #text: string | null = null;

  constructor(options: { maxBuffer?: number; name?: string } = {}) {
    this.#maxBuffer = options.maxBuffer ?? Number.POSITIVE_INFINITY;
    this.#name = options.name ?? 'output';
  }

  write(chunk: Buffer): void {
    this.#bytes += chunk.length;
    if (this.#bytes > this.#maxBuffer) {
      throw new LimitError(
        `the command's ${this.#name} passed maxBuffer (${this.#maxBuffer} bytes); the rest of ` +
          'its output was read and dropped. Raise maxBuffer, or give run() a commander that streams it',
        'maxBuffer',
      );
    }
    const text = this.#decoder.write(chunk);
    if (text) this.#pieces.push(text);
    this.#text = null;
  }

  end(): void {
    const text = this.#decoder.end();
    if (text) this.#pieces.push(text);
    this.#text = null;
  }

  get text(): string {
    if (this.#text === null) {
      this.#text = this.#pieces.join('');
      this.#pieces.length = 0;
      if (this.#text) this.#pieces.push(this.#text);
    }
    return this.#text;
  }
}

/** Throws away all output. */
export class DiscardCommander implements Commander {
  constructor(readonly command: string) {}
}

/** Where pass-through output goes: a Node `Writable` or anything with `write`, or a callback. */
export type OutputSink = { write(chunk: Buffer): unknown } | ((chunk: Buffer) => void);

function sinkParser(sink: OutputSink): OutputParser {
  return typeof sink === 'function' ? { write: sink } : { write: (chunk) => sink.write(chunk) };
}

/** Forwards the output unchanged, by default to this process's stdout and stderr. */
export class PassThroughCommander implements Commander {
  readonly stdout: OutputParser;
  readonly stderr: OutputParser;

  constructor(
    readonly command: string,
    sinks: { stdout?: OutputSink; stderr?: OutputSink } = {},
  ) {
    this.stdout = sinkParser(sinks.stdout ?? process.stdout);
    this.stderr = sinkParser(sinks.stderr ?? process.stderr);
  }
}

/**
 * Prints each line with a label saying where it came from (`out: …`, `err: …`), by default
 * on this process's stdout.
 */
export class LabellingCommander implements Commander {
  readonly stdout: OutputParser;
  readonly stderr: OutputParser;

  constructor(
    readonly command: string,
    print: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
  ) {
    this.stdout = lineParser((line) => print(`out: ${line}`));
    this.stderr = lineParser((line) => print(`err: ${line}`));
  }
}

/** Keeps the non-empty lines of each stream (`stdoutLines`, `stderrLines`). */
export class RecallCommander implements Commander {
  readonly stdoutLines: string[] = [];
  readonly stderrLines: string[] = [];
  readonly stdout = lineParser((line) => {
    if (line !== '') this.stdoutLines.push(line);
  });
  readonly stderr = lineParser((line) => {
    if (line !== '') this.stderrLines.push(line);
  });

  constructor(readonly command: string) {}

  /** Forgets the lines seen so far (to reuse the commander). */
  reset(): void {
    this.stdoutLines.length = 0;
    this.stderrLines.length = 0;
  }
}

/**
 * Collects each stream as one string; what `shell.run('text')` uses. `maxBuffer` caps each
 * stream (bytes): past it the run rejects with `LimitError`; the shell stays usable.
 */
export class CollectCommander implements Commander {
  readonly stdout: TextCollector;
  readonly stderr: TextCollector;

  constructor(
    readonly command: string,
    options: { maxBuffer?: number } = {},
  ) {
    this.stdout = new TextCollector({ maxBuffer: options.maxBuffer, name: 'stdout' });
    this.stderr = new TextCollector({ maxBuffer: options.maxBuffer, name: 'stderr' });
  }
}

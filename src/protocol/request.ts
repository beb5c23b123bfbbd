/**
 * The client → server half of the sockexec protocol:
 *
 *   argc            one netstring, decimal, ≥ 1
 *   argv[0..argc)   argc netstrings; argv[0] is the program
 *   stdin data*     netstrings written to the program's stdin in order
 *   terminator      the empty netstring `0:,` — closes the program's stdin
 *
 * `RequestDecoder` parses it incrementally for the server and enforces the limits that
 * keep a hostile client from making the daemon allocate; `encodeArgs`/`encodeStdin` write it.
 * Given `onExtended`, it also recognises the protocol extension's opening in place of argc
 * and hands the rest of the stream to the extension's parser (./extension.ts).
 */
import { LimitError, ProtocolError } from '../errors.js';
import { ARG_OVERHEAD, ArgvCollector } from './argv-collector.js';
import {
  EXTENSION_VERSION,
  type ExtendedRequestHandler,
  ExtendedRequestParser,
  MAX_OPENING_LENGTH,
  openingVersion,
} from './extension.js';
import { encodeNetstring, NetstringDecoder, netstringParts } from './netstring.js';

export { ARG_OVERHEAD };

export interface RequestLimits {
  /** Most arguments (argv[0] included) one request may announce. */
  maxArgs: number;
  /** Longest single argument, in bytes (Linux refuses more than 128 KiB per argument). */
  maxArgLength: number;
  /**
   * Most bytes of all arguments together, each argument counting ARG_OVERHEAD bytes more than
   * its length: what it costs the daemon besides its bytes. That bounds a request's memory
   * however it is split — 65,535 empty arguments cost 1 MiB of it.
   */
  maxArgBytes: number;
  /** Longest announced stdin netstring. Stdin is streamed, never buffered whole. */
  maxDataLength: number;
}

export const DEFAULT_REQUEST_LIMITS: Readonly<RequestLimits> = Object.freeze({
  maxArgs: 65_536,
  maxArgLength: 131_072,
  maxArgBytes: 2 * 1024 * 1024,
  maxDataLength: 1024 * 1024 * 1024,
});

export interface RequestHandler {
  /**
   * All arguments have arrived, decoded as UTF-8: start the program. `notUtf8`: the index of
   * the first argument that is not valid UTF-8 (its text has U+FFFD for the bad bytes), or -1.
   */
  onArgs(argv: string[], notUtf8: number): void;
  /** A piece of stdin data, never empty, in order. */
  onStdin(data: Buffer): void;
  /** The terminator arrived: close the program's stdin. Nothing after it is parsed. */
  onStdinEnd(): void;
  /**
   * Present when the extension is spoken: the first netstring was the extension's opening
   * (src/protocol/extension.ts), offering `version`; the handler returned takes the rest.
   * Absent, an opening is a bad argument count, as for any sockexec daemon.
   */
  onExtended?(version: number): ExtendedRequestHandler;
}

export type RequestPhase = 'argc' | 'argv' | 'stdin' | 'done' | 'extended';

/** Longest argc netstring: the digits of the largest count any sane limit allows. */
const MAX_ARGC_DIGITS = 10;

export class RequestDecoder {
  readonly #handler: RequestHandler;
  readonly #limits: RequestLimits;
  readonly #decoder: NetstringDecoder;
  #phase: RequestPhase = 'argc';
  #argc = 0;
  #argv: ArgvCollector | null = null;
  #argBytes = 0;
  #pieces: Buffer[] = [];
  #stdinPieceSeen = false;
  #extended: ExtendedRequestParser | null = null;

  constructor(handler: RequestHandler, limits: Partial<RequestLimits> = {}) {
    this.#handler = handler;
    this.#limits = { ...DEFAULT_REQUEST_LIMITS, ...limits };
    this.#decoder = new NetstringDecoder((piece, last) => this.#onPiece(piece, last), {
      maxLength: handler.onExtended ? MAX_OPENING_LENGTH : MAX_ARGC_DIGITS,
    });
  }

  get phase(): RequestPhase {
    return this.#phase;
  }

  /** True when the input so far ends on a netstring boundary. */
  get atBoundary(): boolean {
    return this.#decoder.atBoundary;
  }

  /** Feeds client bytes; throws `ProtocolError`/`LimitError` on a violation. Input after the terminator is ignored. */
  push(chunk: Buffer): void {
    if (this.#phase === 'done') return;
    try {
      this.#decoder.push(chunk);
    } catch (error) {
      // The terminator came earlier in this chunk: what follows it is ignored, even garbage.
      if ((this.#phase as RequestPhase) !== 'done') throw error;
    }
  }

  #onPiece(piece: Buffer, last: boolean): void {
    switch (this.#phase) {
      case 'extended':
        this.#extended!.onPiece(piece, last);
        return;
      case 'argc':
        this.#collect(piece);
        if (last) this.#startArgv(this.#take().toString('latin1'));
        return;
      case 'argv':
        this.#chargeArgBytes(piece.length + (last ? ARG_OVERHEAD : 0));
        this.#argv!.append(piece);
        if (last) this.#endArg();
        return;
      case 'stdin':
        if (piece.length > 0) {
          this.#stdinPieceSeen = true;
          this.#handler.onStdin(piece);
        }
        if (last) {
          if (!this.#stdinPieceSeen) {
            this.#phase = 'done';
            this.#handler.onStdinEnd();
          }
          this.#stdinPieceSeen = false;
        }
        return;
      case 'done':
        return;
    }
  }

  #startArgv(text: string): void {
    const version = this.#handler.onExtended ? openingVersion(text) : null;
    if (version !== null) {
      const handler = this.#handler.onExtended!(Math.min(version, EXTENSION_VERSION));
      this.#phase = 'extended';
      this.#extended = new ExtendedRequestParser(handler, this.#limits, (length) => {
        this.#decoder.maxLength = length;
      });
      return;
    }
    if (!/^[1-9][0-9]*$/.test(text)) {
      throw new ProtocolError(
        `bad argument count ${JSON.stringify(text)}: expected a decimal number ≥ 1`,
      );
    }
    const argc = Number(text);
    if (argc > this.#limits.maxArgs) {
      throw new LimitError(
        `argument count ${argc} exceeds the limit of ${this.#limits.maxArgs}`,
        'maxArgs',
      );
    }
    this.#argc = argc;
    this.#argv = new ArgvCollector(argc, this.#limits.maxArgBytes);
    this.#phase = 'argv';
    this.#decoder.maxLength = this.#limits.maxArgLength;
  }

  #chargeArgBytes(bytes: number): void {
    this.#argBytes += bytes;
    if (this.#argBytes > this.#limits.maxArgBytes) {
      throw new LimitError(
        `arguments exceed the limit of ${this.#limits.maxArgBytes} bytes in all (each counts ${ARG_OVERHEAD} bytes more than its length)`,
        'maxArgBytes',
      );
    }
  }

  #endArg(): void {
    const collector = this.#argv!;
    collector.endArgument();
    if (collector.count < this.#argc) return;
    this.#argv = null;
    this.#phase = 'stdin';
    this.#decoder.maxLength = this.#limits.maxDataLength;
    this.#handler.onArgs(collector.strings(), collector.firstNotUtf8());
  }

  #collect(piece: Buffer): void {
    if (piece.length > 0) this.#pieces.push(piece);
  }

  /** The argc netstring (at most MAX_ARGC_DIGITS bytes). */
  #take(): Buffer {
    const pieces = this.#pieces;
    this.#pieces = [];
    return Buffer.concat(pieces);
  }
}

/**
 * argc and argv as netstrings, in one buffer. Strings (the usual argv) are framed as one
 * string and encoded at once: one allocation and one encoder call per request.
 */
export function encodeArgs(argv: readonly (string | Buffer)[]): Buffer {
  const argc = String(argv.length);
  let text = `${argc.length}:${argc},`;
  for (const arg of argv) {
    if (typeof arg !== 'string') return encodeMixedArgs(argv);
    text += `${Buffer.byteLength(arg)}:${arg},`;
  }
  return Buffer.from(text);
}

/** encodeArgs with byte arguments among the strings. */
function encodeMixedArgs(argv: readonly (string | Buffer)[]): Buffer {
  return Buffer.concat([encodeNetstring(String(argv.length)), ...argv.map(encodeNetstring)]);
}

/** One stdin netstring as buffers to write in order. An empty chunk encodes to nothing: `0:,` would close stdin. */
export function encodeStdin(data: Buffer): Buffer[] {
  return data.length === 0 ? [] : netstringParts(data);
}

/** The terminator: closes the program's stdin. */
export const STDIN_END: Buffer = encodeNetstring('');

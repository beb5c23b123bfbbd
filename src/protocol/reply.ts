/**
 * The server → client half of the sockexec protocol: pairs of netstrings (type, data).
 *
 *   stdout | stderr | unknown   a chunk of output (boundaries carry no meaning)
 *   exitcode                    decimal status, when the program exited
 *   termsig                     signal name without SIG, when a signal killed it
 *
 * then the server closes the connection.
 */
import { ProtocolError } from '../errors.js';
import { encodeNetstring, NetstringDecoder, netstringParts } from './netstring.js';

export type OutputType = 'stdout' | 'stderr' | 'unknown';

export interface OutputChunk {
  readonly type: OutputType;
  readonly data: Buffer;
}

/** How a program ended: exactly one of the two is set. */
export type ExitStatus =
  | { readonly exitCode: number; readonly termSignal: null }
  | { readonly exitCode: null; readonly termSignal: string };

export function exitedWith(exitCode: number): ExitStatus {
  return { exitCode, termSignal: null };
}

export function killedBy(termSignal: string): ExitStatus {
  return { exitCode: null, termSignal };
}

const TYPE_PREFIX: Record<OutputType, Buffer> = {
  stdout: encodeNetstring('stdout'),
  stderr: encodeNetstring('stderr'),
  unknown: encodeNetstring('unknown'),
};

/**
 * One output pair as buffers to write in order. The payload is referenced, not copied, when
 * it is longer than `joinLimit` bytes (default 4096); shorter, everything is one new buffer.
 */
export function encodeOutput(type: OutputType, data: Buffer, joinLimit?: number): Buffer[] {
  return netstringParts(data, TYPE_PREFIX[type], joinLimit);
}

/** The closing pair: `exitcode` or `termsig`. */
export function encodeExit(status: ExitStatus): Buffer {
  return status.termSignal === null
    ? Buffer.concat([encodeNetstring('exitcode'), encodeNetstring(String(status.exitCode))])
    : Buffer.concat([encodeNetstring('termsig'), encodeNetstring(status.termSignal)]);
}

export interface ReplyHandler {
  /** A piece of output, never empty. */
  onOutput(type: OutputType, data: Buffer): void;
  onExit(status: ExitStatus): void;
}

export interface ReplyLimits {
  /** Longest announced output netstring. Output is streamed, never buffered whole. */
  maxDataLength: number;
}

const MAX_TYPE_LENGTH = 16;
const MAX_STATUS_LENGTH = 32;

type Expecting = 'type' | OutputType | 'exitcode' | 'termsig';

/** Incremental parser of a reply stream, for clients. */
export class ReplyDecoder {
  readonly #handler: ReplyHandler;
  readonly #maxDataLength: number;
  readonly #decoder: NetstringDecoder;
  #expecting: Expecting = 'type';
  #pieces: Buffer[] = [];
  #exited = false;

  constructor(handler: ReplyHandler, limits: Partial<ReplyLimits> = {}) {
    this.#handler = handler;
    this.#maxDataLength = limits.maxDataLength ?? 1024 * 1024 * 1024;
    this.#decoder = new NetstringDecoder((piece, last) => this.#onPiece(piece, last), {
      maxLength: MAX_TYPE_LENGTH,
    });
  }

  /** True when the input so far ends between two pairs (a clean place for the server to close). */
  get atPairBoundary(): boolean {
    return this.#expecting === 'type' && this.#decoder.atBoundary;
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** Throws `ProtocolError`/`LimitError` on a violation. */
  push(chunk: Buffer): void {
    this.#decoder.push(chunk);
  }

  #onPiece(piece: Buffer, last: boolean): void {
    const expecting = this.#expecting;
    if (expecting === 'stdout' || expecting === 'stderr' || expecting === 'unknown') {
      if (piece.length > 0) this.#handler.onOutput(expecting, piece);
      if (last) this.#expect('type');
      return;
    }
    if (piece.length > 0) this.#pieces.push(piece);
    if (!last) return;
    const text = Buffer.concat(this.#pieces).toString('latin1');
    this.#pieces = [];
    if (expecting === 'type') this.#onType(text);
    else this.#onStatus(expecting, text);
  }

  #onType(type: string): void {
    switch (type) {
      case 'stdout':
      case 'stderr':
      case 'unknown':
        this.#expect(type);
        return;
      case 'exitcode':
      case 'termsig':
        if (this.#exited) throw new ProtocolError('the server sent a second exit status');
        this.#expect(type);
        return;
      default:
        throw new ProtocolError(`the server sent an unknown reply type ${JSON.stringify(type)}`);
    }
  }

  #onStatus(kind: 'exitcode' | 'termsig', text: string): void {
    this.#exited = true;
    this.#expect('type');
    if (kind === 'exitcode') {
      if (!/^[0-9]{1,10}$/.test(text)) {
        throw new ProtocolError(`the server sent a bad exit code ${JSON.stringify(text)}`);
      }
      this.#handler.onExit(exitedWith(Number(text)));
    } else {
      if (!/^[A-Z0-9+-]{1,16}$/.test(text)) {
        throw new ProtocolError(`the server sent a bad signal name ${JSON.stringify(text)}`);
      }
      this.#handler.onExit(killedBy(text));
    }
  }

  #expect(next: Expecting): void {
    this.#expecting = next;
    this.#decoder.maxLength =
      next === 'type'
        ? MAX_TYPE_LENGTH
        : next === 'exitcode' || next === 'termsig'
          ? MAX_STATUS_LENGTH
          : this.#maxDataLength;
  }
}

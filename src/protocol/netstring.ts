/**
 * Netstrings (`<decimal length>:<bytes>,`), decoded incrementally and encoded without copies.
 *
 * The decoder never buffers a payload: it hands each payload to its sink as the pieces
 * found in the input chunks (zero-copy `subarray`s), so a netstring of any permitted
 * length costs no memory, and an announced length above `maxLength` is refused while its
 * digits are still arriving — `99999999999:` allocates nothing.
 */
import { LimitError, ProtocolError } from '../errors.js';

/**
 * Receives one netstring's payload, piece by piece. `last` is true exactly once per
 * netstring, after its closing comma has been checked; that final piece may be empty.
 * Throwing from the sink aborts the decoder with that error.
 */
export type NetstringSink = (piece: Buffer, last: boolean) => void;

const EMPTY = Buffer.alloc(0);
const COLON = 0x3a;
const COMMA = 0x2c;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

enum State {
  Length = 0,
  Payload = 1,
  Comma = 2,
  Failed = 3,
}

export interface NetstringDecoderOptions {
  /** Largest announced length accepted; may be changed between netstrings. */
  maxLength: number;
}

export class NetstringDecoder {
  /** Read when a netstring's length digits arrive, so a sink may change it for the next one. */
  maxLength: number;
  readonly #sink: NetstringSink;
  #state = State.Length;
  #length = 0;
  #digits = 0;
  #remaining = 0;
  #error: Error | null = null;

  constructor(sink: NetstringSink, options: NetstringDecoderOptions) {
    this.#sink = sink;
    this.maxLength = options.maxLength;
  }

  /** True between netstrings: no partial netstring is pending. */
  get atBoundary(): boolean {
    return this.#state === State.Length && this.#digits === 0;
  }

  /** Length announced by the netstring being read (0 between netstrings). */
  get announcedLength(): number {
    return this.#length;
  }

  /**
   * Feeds one chunk of input. Calls the sink for every payload piece it completes.
   * Throws `ProtocolError` for malformed input and `LimitError` for a length above
   * `maxLength`; once it has thrown, every later call throws the same error.
   */
  push(chunk: Buffer): void {
    if (this.#error) throw this.#error;
    try {
      this.#consume(chunk);
    } catch (error) {
      this.#state = State.Failed;
      this.#error = error as Error;
      throw error;
    }
  }

  #consume(chunk: Buffer): void {
    const end = chunk.length;
    let i = 0;
    while (i < end) {
      switch (this.#state) {
        case State.Length: {
          const byte = chunk[i++]!;
          if (byte >= DIGIT_0 && byte <= DIGIT_9) {
            if (this.#digits > 0 && this.#length === 0) {
              throw new ProtocolError('malformed netstring: a length must not have leading zeros');
            }
            this.#length = this.#length * 10 + (byte - DIGIT_0);
            this.#digits++;
            if (this.#length > this.maxLength) {
              throw new LimitError(
                `netstring length ${this.#length}${this.#digits > 15 ? '…' : ''} exceeds the limit of ${this.maxLength} bytes`,
                'maxLength',
              );
            }
          } else if (byte === COLON && this.#digits > 0) {
            this.#remaining = this.#length;
            this.#state = this.#remaining === 0 ? State.Comma : State.Payload;
          } else {
            throw new ProtocolError(
              `malformed netstring: expected ${this.#digits === 0 ? 'a digit' : "a digit or ':'"} but got ${describeByte(byte)}`,
            );
          }
          break;
        }
        case State.Payload: {
          const take = Math.min(this.#remaining, end - i);
          const piece = chunk.subarray(i, i + take);
          i += take;
          this.#remaining -= take;
          if (this.#remaining > 0) {
            this.#sink(piece, false);
          } else if (i < end) {
            // The comma is in this chunk: check it first so the sink sees `last` only for valid input.
            const byte = chunk[i++]!;
            if (byte !== COMMA) throw missingComma(byte);
            this.#reset();
            this.#sink(piece, true);
          } else {
            this.#state = State.Comma;
            if (piece.length > 0) this.#sink(piece, false);
          }
          break;
        }
        case State.Comma: {
          const byte = chunk[i++]!;
          if (byte !== COMMA) throw missingComma(byte);
          this.#reset();
          this.#sink(EMPTY, true);
          break;
        }
        case State.Failed:
          throw this.#error;
      }
    }
  }

  #reset(): void {
    this.#state = State.Length;
    this.#length = 0;
    this.#digits = 0;
  }
}

function missingComma(byte: number): ProtocolError {
  return new ProtocolError(
    `malformed netstring: expected ',' after the payload but got ${describeByte(byte)}`,
  );
}

function describeByte(byte: number): string {
  const hex = `0x${byte.toString(16).padStart(2, '0')}`;
  return byte >= 0x20 && byte < 0x7f ? `'${String.fromCharCode(byte)}' (${hex})` : hex;
}

const COMMA_BUFFER = Buffer.from(',');

/** `<length>:` for a payload of `length` bytes. */
export function netstringHeader(length: number): Buffer {
  return Buffer.from(`${length}:`, 'latin1');
}

/** One netstring as one buffer (copies the payload; meant for small payloads). */
export function encodeNetstring(payload: Buffer | string): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const header = `${data.length}:`;
  const out = Buffer.allocUnsafe(header.length + data.length + 1);
  out.write(header, 0, 'latin1');
  data.copy(out, header.length);
  out[out.length - 1] = COMMA;
  return out;
}

/** Payloads up to this size are joined with their framing: one write beats three for them. */
export const JOIN_LIMIT = 4096;

/**
 * One netstring as the buffers to write in order, without copying the payload unless it is
 * at most `joinLimit` bytes long: then all is joined into one buffer.
 */
export function netstringParts(payload: Buffer, prefix?: Buffer, joinLimit = JOIN_LIMIT): Buffer[] {
  const header = netstringHeader(payload.length);
  if (payload.length <= joinLimit) {
    return [
      Buffer.concat(
        prefix ? [prefix, header, payload, COMMA_BUFFER] : [header, payload, COMMA_BUFFER],
      ),
    ];
  }
  return prefix
    ? [Buffer.concat([prefix, header]), payload, COMMA_BUFFER]
    : [header, payload, COMMA_BUFFER];
}

/**
 * A request's arguments while they arrive: their bytes one after another in one buffer,
 * and where each ends in one Uint32Array, both grown by doubling — not an object per
 * argument. 65,535 empty arguments (196 KB on the wire) thus cost 256 KB of offsets here,
 * where a Buffer each cost the daemon 13 MB. The bytes become strings only once the last
 * argument is in (`strings()`).
 */
/**
 * What each argument counts against `maxArgBytes` besides its bytes: what the daemon holds
 * per argument while the program runs — its slot in the argv array (8 bytes) and, with the
 * native backend, the spawn plan's pointer to it and its NUL (9) until the reap, plus
 * allocator slack. Measured with 65,535 empty arguments (bench/argv-memory.ts): 1.45 MB per
 * running connection natively, 0.85 MB with child_process — under the 1.5 MiB they count. So
 * `maxArgBytes` bounds a connection's memory however the request is split, running or not,
 * and 65,536 arguments (`maxArgs`) still fit the default with 512 KiB of text.
 */
import { isUtf8 } from 'node:buffer';

export const ARG_OVERHEAD = 24;

export class ArgvCollector {
  #bytes: Buffer;
  #length = 0;
  #ends: Uint32Array;
  #count = 0;
  readonly #maxBytes: number;
  readonly #argc: number;

  /** `argc` arguments, at most `maxBytes` bytes of them in all (the caller enforces both). */
  constructor(argc: number, maxBytes: number) {
    this.#argc = argc;
    this.#maxBytes = maxBytes;
    this.#bytes = Buffer.allocUnsafe(Math.min(256, maxBytes));
    this.#ends = new Uint32Array(Math.min(16, argc));
  }

  /** Arguments completed so far. */
  get count(): number {
    return this.#count;
  }

  /** Appends a piece of the current argument (copied: pieces are views of socket chunks). */
  append(piece: Buffer): void {
    if (piece.length === 0) return;
    const needed = this.#length + piece.length;
    if (needed > this.#bytes.length) {
      this.#bytes = grown(this.#bytes, this.#length, needed, this.#maxBytes);
    }
    piece.copy(this.#bytes, this.#length);
    this.#length = needed;
  }

  /** Ends the current argument. */
  endArgument(): void {
    if (this.#count === this.#ends.length) {
      const ends = new Uint32Array(Math.min(this.#ends.length * 2, this.#argc));
      ends.set(this.#ends);
      this.#ends = ends;
    }
    this.#ends[this.#count++] = this.#length;
  }

  /**
   * The index of the first argument that is not valid UTF-8, or -1. Such an argument cannot be
   * text without being altered (its bad bytes would become U+FFFD): the daemon refuses it.
   */
  firstNotUtf8(): number {
    let start = 0;
    for (let i = 0; i < this.#count; i++) {
      const end = this.#ends[i]!;
      if (end > start && !isUtf8(this.#bytes.subarray(start, end))) return i;
      start = end;
    }
    return -1;
  }

  /** The arguments as UTF-8 text, as the program will get them. */
  strings(): string[] {
    const argv = new Array<string>(this.#count);
    let start = 0;
    for (let i = 0; i < this.#count; i++) {
      const end = this.#ends[i]!;
      argv[i] = start === end ? '' : this.#bytes.toString('utf8', start, end);
      start = end;
    }
    return argv;
  }
}

function grown(bytes: Buffer, used: number, needed: number, max: number): Buffer {
  let size = bytes.length * 2;
  while (size < needed) size *= 2;
  const next = Buffer.allocUnsafe(Math.min(size, Math.max(max, needed)));
  bytes.copy(next, 0, 0, used);
  return next;
}

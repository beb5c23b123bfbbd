/**
 * Sentinels: how the shell driver knows that all of a command's output has been seen.
 *
 * After each command the driver sends a cheap command with a known output (the sentinel)
 * and reads the output until that known text appears. The matching is done on bytes, by
 * `SentinelScanner`, so it works whatever the chunk boundaries are: inside the marker,
 * inside a multi-byte UTF-8 character, anywhere. Nothing is ever buffered but the few
 * bytes that might be the start of the marker, so a line of any length goes through.
 */
import { ArgumentError } from '../errors.js';

/**
 * A `{command, value}` pair: `command` is cheap and prints `value` followed by a newline.
 * Output before `value` on the same line belongs to the command that ran before it (after
 * `printf foo`, the line reads `foo<value>`), so `value` is matched where it ends a line.
 *
 *     { command: 'version', value: 'fakedb 1.2.3' }
 *     { command: 'rumpelstiltskin', value: 'unknown command: rumpelstiltskin' }   // on stderr
 */
export interface Sentinel {
  readonly command: string;
  readonly value: string;
}

/**
 * A sentinel made fresh for each run from an unpredictable marker, so that no output of a
 * command can be mistaken for it: `(marker) => ({ command: `echo ${marker}`, value: marker })`.
 * The marker is 22 characters from `[A-Za-z0-9_-]`.
 */
export type SentinelFactory = (marker: string) => Sentinel;

export function validateSentinel(sentinel: Sentinel, what: string): Sentinel {
  if (typeof sentinel?.command !== 'string' || sentinel.command.trim() === '') {
    throw new ArgumentError(
      `${what}: the sentinel needs a command (a cheap one with known output)`,
    );
  }
  if (typeof sentinel.value !== 'string' || sentinel.value === '') {
    throw new ArgumentError(
      `${what}: the sentinel needs a non-empty value (what its command prints)`,
    );
  }
  if (sentinel.value.includes('\n')) {
    throw new ArgumentError(
      `${what}: the sentinel value must be one line (it is matched at a line end)`,
    );
  }
  return sentinel;
}

const EMPTY = Buffer.alloc(0);
/** Longest trailer read after a marker (an exit status needs at most 3 digits). */
const MAX_TRAILER = 32;
const NEWLINE = 0x0a;

/**
 * Finds `needle` in a stream of chunks and passes every byte before it on. With
 * `trailer: true` the bytes after the needle up to the next newline are the sentinel's
 * payload (the POSIX preset puts the exit status there), not output.
 */
export class SentinelScanner {
  readonly #needle: Buffer;
  readonly #withTrailer: boolean;
  /** The end of the output so far when it could be the start of the needle: at most needle-1 bytes. */
  #held: Buffer = EMPTY;
  #trailer: Buffer[] | null = null;
  #trailerLength = 0;
  #found = false;
  #payload = '';

  constructor(needle: string | Buffer, options: { trailer?: boolean } = {}) {
    this.#needle = typeof needle === 'string' ? Buffer.from(needle) : needle;
    if (this.#needle.length === 0) throw new ArgumentError('a sentinel needle cannot be empty');
    this.#withTrailer = options.trailer ?? false;
  }

  /** True once the sentinel (and its trailer) has been seen. */
  get found(): boolean {
    return this.#found;
  }

  /** What followed the needle up to the newline (trailer mode), e.g. `"0"`. */
  get payload(): string {
    return this.#payload;
  }

  /**
   * Feeds one chunk. Calls `emit` with the bytes that belong to the command (never empty),
   * in order, and returns true once the sentinel has been seen. Bytes after the sentinel
   * are not the command's and are dropped; so is anything pushed after it was found.
   */
  push(chunk: Buffer, emit: (data: Buffer) => void): boolean {
    if (this.#found) return true;
    if (this.#trailer) return this.#pushTrailer(chunk);
    const data = this.#held.length > 0 ? Buffer.concat([this.#held, chunk]) : chunk;
    this.#held = EMPTY;
    const at = data.indexOf(this.#needle);
    if (at >= 0) {
      if (at > 0) emit(data.subarray(0, at));
      const rest = data.subarray(at + this.#needle.length);
      if (!this.#withTrailer) {
        this.#found = true;
        return true;
      }
      this.#trailer = [];
      return this.#pushTrailer(rest);
    }
    const keep = partialMatchLength(data, this.#needle);
    if (data.length > keep) emit(data.subarray(0, data.length - keep));
    // A copy, so that a large chunk is not kept alive for its last few bytes.
    if (keep > 0) this.#held = Buffer.from(data.subarray(data.length - keep));
    return false;
  }

  #pushTrailer(chunk: Buffer): boolean {
    const end = chunk.indexOf(NEWLINE);
    const piece = end >= 0 ? chunk.subarray(0, end) : chunk;
    const room = MAX_TRAILER - this.#trailerLength;
    this.#trailer!.push(piece.subarray(0, room));
    this.#trailerLength += Math.min(piece.length, room);
    if (end < 0 && this.#trailerLength < MAX_TRAILER) return false;
    this.#payload = Buffer.concat(this.#trailer!).toString('latin1');
    this.#trailer = null;
    this.#found = true;
    return true;
  }
}

/** Length of the longest proper prefix of `needle` that `data` ends with. */
export function partialMatchLength(data: Buffer, needle: Buffer): number {
  const first = needle[0]!;
  let at = data.indexOf(first, Math.max(0, data.length - needle.length + 1));
  while (at !== -1) {
    const length = data.length - at;
    if (data.compare(needle, 0, length, at, data.length) === 0) return length;
    at = data.indexOf(first, at + 1);
  }
  return 0;
}

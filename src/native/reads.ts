/**
 * The open output pipes the addon reads (by token, which it passes back with each read) and
 * the buffers it reads into.
 *
 * The lending contract: every pipe is read into one shared buffer. A chunk is copied, or
 * lent, before the addon's callback returns, and callbacks never overlap. A listener that
 * keeps a lent chunk pauses its reader, which then takes the buffer out of the addon's hands
 * (`keepReadBuffer`) until it is resumed (`returnReadBuffer`); meanwhile every other pipe is
 * read into another buffer: a spare, or a new one.
 */

/** An open output pipe, told of each read. */
export interface PipeReader {
  /** Bytes read into `currentReadBuffer()`, 0 at end of file, or -errno. */
  read(result: number): void;
}

/** The one addon call the pool needs. */
interface ReadBufferTarget {
  setReadBuffer(buffer: Uint8Array): void;
}

const READ_BUFFER_SIZE = 1024 * 1024;
/** Buffers given back by readers that kept one, kept for the next reader that keeps one. */
const MAX_SPARE_BUFFERS = 4;

const readers = new Map<number, PipeReader>();
let nextToken = 0;
let readBuffer: Buffer = Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
const spareBuffers: Buffer[] = [];

/** The buffer the addon reads into first (given to it once, at load). */
export function initialReadBuffer(): Buffer {
  return readBuffer;
}

/** The buffer the read being reported went into. */
export function currentReadBuffer(): Buffer {
  return readBuffer;
}

/** A token to open the addon's pipe with (it comes back with each read). */
export function newReaderToken(): number {
  nextToken = (nextToken % 0x7fffffff) + 1;
  return nextToken;
}

export function addReader(token: number, reader: PipeReader): void {
  readers.set(token, reader);
}

export function removeReader(token: number): void {
  readers.delete(token);
}

/** From the addon (wired by addon.ts). */
export function dispatchRead(token: number, result: number): void {
  readers.get(token)?.read(result);
}

/**
 * A paused listener keeps the chunk just lent: the current buffer is handed to its reader,
 * and the addon reads into another from now on. Returns the kept buffer.
 */
export function keepReadBuffer(addon: ReadBufferTarget): Buffer {
  const kept = readBuffer;
  readBuffer = spareBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
  addon.setReadBuffer(readBuffer);
  return kept;
}

/** The listener is done with a kept chunk: its buffer can be read into again. */
export function returnReadBuffer(buffer: Buffer): void {
  if (spareBuffers.length < MAX_SPARE_BUFFERS) spareBuffers.push(buffer);
}

/**
 * The stdin of a program in PTY mode (native backend): writes to the pseudo-terminal's
 * master through the addon's tty writer (native/pty.c) — Node has no non-blocking stream
 * for a master — with the back-pressure of a pipe: `write` returns false while the
 * terminal's input queue is full, and `'drain'` follows once it has taken everything.
 *
 * Ending input on a terminal is not closing it: closing the master would hang the terminal
 * up (SIGHUP) and lose the output still to come. `end()` types the terminal's end-of-file
 * character (VEOF, ^D unless the program changed it), as a person would: in canonical mode
 * a read of the pending line then returns it, and a read at the start of a line returns end
 * of file. So after input that does not end a line it is typed twice — the first delivers
 * the partial line, the second is the end of file. A program that reads the terminal raw
 * (an editor, readline) sees the character and decides for itself, as from a keyboard.
 */
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import type { Addon, TtyHandle } from '../../../native/addon.js';
import type { ChildInput } from '../backend.js';

const EAGAIN = constants.errno.EAGAIN;
const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

export class TerminalInput extends EventEmitter implements ChildInput {
  writableEnded = false;
  readonly #native: Addon;
  #handle: TtyHandle | null;
  /** What the terminal has not taken yet, in order; the first is written from `#offset`. */
  readonly #queue: Buffer[] = [];
  #offset = 0;
  #waiting = false;
  #owesDrain = false;
  /** Whether the last byte typed ended a line (nothing typed yet counts as one). */
  #atLineStart = true;

  /** Takes over `fd`, a descriptor of the master that spawn() holds for us. */
  constructor(native: Addon, fd: number) {
    super();
    this.#native = native;
    this.#handle = native.ttyWriterOpen(fd, () => {
      this.#waiting = false;
      this.#flush();
    });
    native.releaseFd(fd); // the writer owns it now
  }

  write(data: Buffer | string): boolean {
    if (!this.#handle || this.writableEnded) return true; // nobody reads it any more: dropped
    const buffer = typeof data === 'string' ? Buffer.from(data) : data;
    if (buffer.length === 0) return this.#queue.length === 0;
    this.#queue.push(buffer);
    this.#flush();
    if (this.#queue.length === 0) return true;
    this.#owesDrain = true;
    return false;
  }

  end(): this {
    if (this.writableEnded || !this.#handle) return this;
    this.writableEnded = true;
    const eof = this.#native.ttyEofChar(this.#handle);
    // 0 is _POSIX_VDISABLE: the program turned the character off; nothing can be typed then.
    if (eof > 0) {
      this.#queue.push(Buffer.from(this.#atLineStart ? [eof] : [eof, eof]));
      this.#flush();
    }
    return this;
  }

  /** The child is reaped: the writer owns the master (released at the start), so as destroy(). */
  childReaped(): this {
    return this.destroy();
  }

  destroy(): this {
    if (!this.#handle) return this;
    this.#native.ttyWriterClose(this.#handle);
    this.#handle = null;
    this.#queue.length = 0;
    return this;
  }

  /** Whether a write waiting for room keeps the event loop alive (an idle writer holds nothing). */
  ref(): this {
    if (this.#handle) this.#native.ttyRef(this.#handle, true);
    return this;
  }

  unref(): this {
    if (this.#handle) this.#native.ttyRef(this.#handle, false);
    return this;
  }

  /** The terminal's new window size; false once it is closed. */
  resize(columns: number, rows: number): boolean {
    return this.#handle !== null && this.#native.ttyResize(this.#handle, columns, rows) === 0;
  }

  #flush(): void {
    while (this.#handle && this.#queue.length > 0 && !this.#waiting) {
      const head = this.#queue[0]!;
      const written = this.#native.ttyWrite(this.#handle, head, this.#offset);
      if (written === -EAGAIN) {
        this.#waiting = true;
        this.#native.ttyWaitWritable(this.#handle);
        return;
      }
      if (written < 0) {
        // EIO: every holder of the terminal's slave is gone; the rest is dropped, as after EPIPE.
        const code = getSystemErrorName(written);
        this.destroy();
        this.emit('error', Object.assign(new Error(`write ${code}`), { errno: written, code }));
        return;
      }
      if (written > 0) {
        const last = head[this.#offset + written - 1];
        this.#atLineStart = last === NEWLINE || last === CARRIAGE_RETURN;
      }
      this.#offset += written;
      if (this.#offset >= head.length) {
        this.#queue.shift();
        this.#offset = 0;
      }
    }
    if (this.#queue.length === 0 && this.#owesDrain) {
      this.#owesDrain = false;
      this.emit('drain');
    }
  }
}

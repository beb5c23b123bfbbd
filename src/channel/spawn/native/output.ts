/**
 * An output pipe read by the addon. Reading starts at once and stops while paused. Lent
 * output (`lendOutput`; the contract is in native/reads.ts): 'data' carries a view of the
 * shared read buffer — no allocation, no page faults, no garbage per chunk — valid until the
 * listener returns, or, if the listener pauses, until it resumes: the paused reader keeps the
 * buffer meanwhile. A pipe that a read fills (bulk output) is enlarged to LENT_PIPE_SIZE, for
 * 16 times fewer reads and wake-ups; a program that prints a line thus costs no megabyte of
 * pipe, nor any of the user's pipe quota (pipe-user-pages-soft). Otherwise each chunk is a
 * copy.
 */
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';
import type { Addon, PipeHandle } from '../../../native/addon.js';
import {
  addReader,
  currentReadBuffer,
  keepReadBuffer,
  newReaderToken,
  type PipeReader,
  removeReader,
  returnReadBuffer,
} from '../../../native/reads.js';
import type { ChildOutput } from '../backend.js';
import { errnoError } from './errors.js';

/** A pty master reads EIO once the slave's last holder closed it: that is its end of file. */
const EIO = -constants.errno.EIO;

/** A read this long filled a default pipe: lent output then enlarges the pipe to LENT_PIPE_SIZE. */
const PIPE_FILLED = 64 * 1024;
const LENT_PIPE_SIZE = 1024 * 1024;

export class NativeOutput extends EventEmitter implements ChildOutput, PipeReader {
  readonly readableLength = 0; // nothing is ever held back: each read is emitted at once
  readableEnded = false;
  #native: Addon;
  #fd: number;
  #handle: PipeHandle | null;
  #token: number;
  #lend: boolean;
  /** A pty's master (PTY mode), not a pipe. */
  #terminal: boolean;
  #enlarged = false;
  #paused = false;
  /** The read buffer, taken out of the addon's hands while a paused listener keeps a chunk. */
  #held: Buffer | null = null;

  constructor(native: Addon, fd: number, lend: boolean, terminal = false) {
    super();
    this.#native = native;
    this.#fd = fd;
    this.#lend = lend;
    this.#terminal = terminal;
    this.#enlarged = terminal; // a terminal's buffer is the kernel's: no pipe to enlarge
    this.#token = newReaderToken();
    // Reading starts at once (native/pipe.c).
    this.#handle = native.pipeOpen(fd, this.#token, terminal);
    addReader(this.#token, this);
  }

  get fd(): number | undefined {
    return this.#handle ? this.#fd : undefined;
  }

  get destroyed(): boolean {
    return this.#handle === null;
  }

  /** From the addon: bytes read into the shared buffer, 0 at end of file, or -errno. */
  read(result: number): void {
    if (result > 0) {
      const view = currentReadBuffer().subarray(0, result);
      if (!this.#lend) {
        this.emit('data', Buffer.from(view));
        return;
      }
      if (result >= PIPE_FILLED && !this.#enlarged) {
        this.#enlarged = true;
        this.#native.setPipeSize(this.#fd, LENT_PIPE_SIZE); // best effort
      }
      this.emit('data', view);
      // The listener keeps the chunk until it resumes us: nobody may read into it till then.
      if (this.#paused && this.#handle) this.#held = keepReadBuffer(this.#native);
      return;
    }
    // End of file or an error: the addon has closed the pipe already, and its handle is dead.
    this.#handle = null;
    if (result === 0 || (result === EIO && this.#terminal)) this.readableEnded = true;
    else this.emit('error', errnoError(result, 'read'));
    this.#forget();
  }

  isPaused(): boolean {
    return this.#paused;
  }

  pause(): this {
    if (!this.#paused && this.#handle) this.#native.pipeRead(this.#handle, false);
    this.#paused = true;
    return this;
  }

  resume(): this {
    if (this.#paused && this.#handle) this.#native.pipeRead(this.#handle, true);
    this.#paused = false;
    // The listener is done with its chunk: the buffer can be read into again.
    if (this.#held) returnReadBuffer(this.#held);
    this.#held = null;
    return this;
  }

  /** Stops reading and closes the pipe; 'close' follows on the next tick. */
  /** Whether this pipe keeps the event loop alive (as a socket's ref()/unref()). */
  ref(): this {
    if (this.#handle) this.#native.pipeRef(this.#handle, true);
    return this;
  }

  unref(): this {
    if (this.#handle) this.#native.pipeRef(this.#handle, false);
    return this;
  }

  destroy(): this {
    if (!this.#handle) return this;
    this.#native.pipeClose(this.#handle);
    this.#handle = null;
    this.#forget();
    return this;
  }

  /** The pipe is closed: no more reads, and 'close' on the next tick. */
  #forget(): void {
    this.#held = null; // a chunk may still be referenced: left to the garbage collector
    removeReader(this.#token);
    process.nextTick(() => this.emit('close'));
  }
}

/**
 * The child's stdin: a bare descriptor until the first write, then a `net.Socket` (for its
 * back-pressure and 'drain'). Most programs run from a daemon get no input at all, and
 * closing a descriptor is all their stdin then costs. The addon keeps the bare descriptor
 * with its child and closes it: at closeFd (`end()`, `destroy()`), or itself when the child
 * is reaped (`childReaped()`) or the environment goes away — `fs.closeSync` would make a
 * worker warn "closed but not opened in unmanaged mode".
 */
import { EventEmitter } from 'node:events';
import { Socket } from 'node:net';
import type { Addon } from '../../../native/addon.js';
import type { ChildInput } from '../backend.js';

export class NativeInput extends EventEmitter implements ChildInput {
  writableEnded = false;
  #native: Addon;
  #fd: number;
  #socket: Socket | null = null;
  #destroyed = false;
  #referenced = true;

  constructor(native: Addon, fd: number) {
    super();
    this.#native = native;
    this.#fd = fd;
  }

  write(data: Buffer | string): boolean {
    if (this.#destroyed) return true; // nobody reads it any more: dropped, as after EPIPE
    return this.#open().write(data);
  }

  end(): this {
    if (this.writableEnded) return this;
    this.writableEnded = true;
    if (this.#socket) this.#socket.end();
    else this.#closeDescriptor();
    return this;
  }

  destroy(): this {
    this.#destroyed = true;
    if (this.#socket) this.#socket.destroy();
    else this.#closeDescriptor();
    return this;
  }

  /**
   * The child is reaped: the addon has closed a descriptor still bare (native/spawn.c, one
   * call fewer per run), so only a Socket is left to destroy.
   */
  childReaped(): this {
    if (!this.#socket) this.#fd = -1;
    return this.destroy();
  }

  /** A bare descriptor holds nothing open; the Socket, once there, follows this. */
  ref(): this {
    this.#referenced = true;
    this.#socket?.ref();
    return this;
  }

  unref(): this {
    this.#referenced = false;
    this.#socket?.unref();
    return this;
  }

  #open(): Socket {
    if (!this.#socket) {
      this.#native.releaseFd(this.#fd); // the Socket owns it from now on
      const socket = new Socket({ fd: this.#fd, readable: false, writable: true });
      this.#fd = -1;
      socket.on('drain', () => this.emit('drain'));
      socket.on('error', (error) => this.emit('error', error));
      if (!this.#referenced) socket.unref();
      this.#socket = socket;
    }
    return this.#socket;
  }

  #closeDescriptor(): void {
    if (this.#fd >= 0) this.#native.closeFd(this.#fd);
    this.#fd = -1;
  }
}

/**
 * The process channel: the one abstraction every part of procsock moves data through.
 *
 * A channel is one running program seen from outside: stdin goes in (`write`, `end`);
 * output chunks come out in the order they were read (`'output'`), then exactly one
 * `'exit'`, sent only after all output; then `'close'`, once every resource is released
 * (child reaped, pipes or socket closed). Two implementations: `LocalChannel` (a child
 * process) and `SocketChannel` (a session with a sockexec-protocol daemon); a channel is
 * made by a `Transport` (transport.ts), the one way every caller starts a program.
 *
 * A channel says what it can do through its members, so callers never downcast: `pid` is
 * undefined where the program's pid is not known (through a daemon), and
 * `readPendingOutput()` answers false where output cannot be read synchronously.
 *
 * Events, in order:
 *
 *     output* ──► exit ──► close          the program ran to its end
 *     output* ──► error ──► close         the transport failed (socket only)
 *     destroy() ───────────► close        the owner gave up; nothing else is emitted
 *     stop(cause) ─────────► close        the same, but the end is still learnt (finalStatus)
 *
 * Flow control mirrors `net.Socket`: `write` returns false when stdin is full (wait for
 * `'drain'`), and `pause`/`resume` stop and restart output, so a slow consumer makes the
 * program block on its own writes instead of anything buffering without bound.
 */
import { EventEmitter } from 'node:events';
import type { ExitStatus, OutputChunk, OutputType } from '../core/output.js';
import type { ProcsockError } from '../errors.js';
import type { StopCause } from '../protocol/extension.js';
import { type EndReason, naturalEnd, type ResourceUsage, type RunOutcome } from './usage.js';

export interface ProcessChannelEvents {
  output: [chunk: OutputChunk];
  exit: [status: ExitStatus];
  error: [error: ProcsockError];
  drain: [];
  close: [];
}

export abstract class ProcessChannel extends EventEmitter<ProcessChannelEvents> {
  /** What carries the program (`'local'`, `'socket'`…), for messages and logs: branch on members, not on this. */
  abstract readonly kind: string;
  #exitStatus: ExitStatus | null = null;
  /** The status also when destroyed (the exit is then not emitted, but a local child is still reaped). */
  #finalStatus: ExitStatus | null = null;
  #error: ProcsockError | null = null;
  #destroyed = false;
  #closed = false;
  /** `done()`'s promise, made when first asked for: a channel nobody waits on makes none. */
  #done: Promise<ExitStatus | null> | null = null;
  /**
   * Its resolving functions, kept as they are: a closure made in the executor over them (and
   * over `this`) made V8 keep every run's objects through the scavenges that followed — each
   * new space grew to 16 MB, what it held was promoted, and a mark-compact came every few
   * thousand local spawns (+22k instructions per spawn, bench/README.md's local-spawn note).
   */
  #resolveDone: ((status: ExitStatus | null) => void) | null = null;
  #rejectDone: ((error: ProcsockError) => void) | null = null;

  /** Sends stdin data. Returns false when the caller should wait for `'drain'`. Empty data is a no-op. */
  abstract write(data: Buffer | string): boolean;
  /** Closes the program's stdin. Idempotent. */
  abstract end(): void;
  /** Stops output events until `resume()`; the program blocks once its pipes fill. */
  abstract pause(): void;
  abstract resume(): void;
  /** Releases everything the channel holds; called once by `destroy()`. */
  protected abstract destroyResources(): void;

  /** The program's pid, where this channel knows it (a local child); undefined otherwise. */
  get pid(): number | undefined {
    return undefined;
  }

  /** Whether `readPendingOutput()` can work here (a local child with the addon built). */
  get readsPendingOutput(): boolean {
    return false;
  }

  /**
   * Delivers synchronously, as `'output'` events before returning, what the program has
   * written to `type` and nobody has read yet; true when that was done. A channel that
   * cannot (through a daemon, say) answers false, and the output comes as usual.
   */
  readPendingOutput(_type: 'stdout' | 'stderr'): boolean {
    return false;
  }

  /**
   * Sends the program a signal, by name without `SIG` (`INT`, `TERM`…); true when this
   * channel can (a local child, a daemon session in the protocol extension), false when it
   * cannot (a plain sockexec session). A program that has already ended gets nothing.
   */
  signal(_name: string): boolean {
    return false;
  }

  /** Whether the program runs in a terminal (PTY mode: the `pty` option). */
  get terminal(): boolean {
    return false;
  }

  /**
   * PTY mode: sets the program's terminal window size, in character cells (the program gets
   * SIGWINCH); true when this channel did, false when it cannot (no terminal, a plain
   * sockexec session) or the program has ended. Throws `ArgumentError` for a size that is
   * not from 1 to 65535.
   */
  resize(_columns: number, _rows: number): boolean {
    return false;
  }

  /**
   * Whether the running program keeps this process's event loop alive, as a socket's or a
   * ChildProcess's `ref()`/`unref()`: unref'd, the process may exit while it runs (and then
   * stops it, see `detached`). Referenced by default. A no-op where nothing is held.
   */
  ref(): void {}

  unref(): void {}

  get exitStatus(): ExitStatus | null {
    return this.#exitStatus;
  }

  /**
   * How the program ended — also when the channel was destroyed, where this channel still
   * learnt it (a local child is always reaped; a daemon that was hung up on says nothing).
   */
  get finalStatus(): ExitStatus | null {
    return this.#finalStatus;
  }

  /**
   * Why the run ended (see `EndReason`), from the exit on: a channel reports what it knows —
   * `exit`/`signal`, `spawn-failure` for a program that could not be executed, and through a
   * procsock daemon the daemon's own causes (`deadline`, `output-limit`…). A cause of the
   * owner (its timeout, an abort) is the owner's to report. null before the end.
   */
  get reason(): EndReason | null {
    return this.#finalStatus === null ? null : naturalEnd(this.#finalStatus);
  }

  /** What the run cost, where this channel knows it (see `ResourceUsage`); null otherwise. */
  get usage(): ResourceUsage | null {
    return null;
  }

  /** Descendants procsock had to stop when the run ended (contained runs); null where not tracked. */
  get descendantsStopped(): number | null {
    return null;
  }

  /** Status, reason, usage and descendantsStopped together, from the exit on; null before. */
  get outcome(): RunOutcome | null {
    const status = this.#finalStatus;
    const reason = this.reason;
    if (status === null || reason === null) return null;
    return {
      exitCode: status.exitCode,
      termSignal: status.termSignal,
      reason,
      usage: this.usage,
      descendantsStopped: this.descendantsStopped,
    };
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Gives up on the program: no more events but `'close'`. A local program gets TERM,
   * then KILL after the kill timeout; a daemon session is hung up, and the daemon does the
   * same. Idempotent.
   */
  destroy(): void {
    if (this.#destroyed || this.#closed) return;
    this.#destroyed = true;
    this.destroyResources();
  }

  /**
   * Gives up on the program for a cause of the owner's (its timeout, idle timeout, output
   * limit, an abort) as `destroy()` does — no more events but `'close'` — but so that its end
   * is still learnt where this channel can learn it: by `'close'`, `finalStatus`, `usage` and
   * `descendantsStopped` say how it ended. A local child is stopped and reaped (that is
   * `destroy()`); a daemon session in the protocol extension asks the daemon to stop it (the
   * `stop` message, carrying `cause`) and waits for its reply; a plain sockexec session can
   * only hang up. Idempotent, and a no-op after `destroy()`.
   */
  stop(cause: StopCause): void {
    if (this.#destroyed || this.#closed) return;
    this.#destroyed = true;
    this.stopResources(cause);
  }

  /** What `stop()` does past the common part; by default what `destroy()` does. */
  protected stopResources(_cause: StopCause): void {
    this.destroyResources();
  }

  /**
   * Settles on `'close'`: with the exit status, or `null` when the channel was destroyed;
   * rejects with the channel's error. Never rejects for a non-zero exit.
   */
  done(): Promise<ExitStatus | null> {
    if (this.#done) return this.#done;
    if (this.#closed) {
      this.#done = this.#error ? Promise.reject(this.#error) : Promise.resolve(this.#exitStatus);
    } else {
      this.#done = new Promise((resolve, reject) => {
        this.#resolveDone = resolve;
        this.#rejectDone = reject;
      });
    }
    return this.#done;
  }

  protected emitOutput(type: OutputType, data: Buffer): void {
    if (!this.#destroyed && this.#exitStatus === null && data.length > 0) {
      this.emit('output', { type, data });
    }
  }

  protected emitExit(status: ExitStatus): void {
    if (this.#finalStatus !== null || this.#error) return;
    this.#finalStatus = status;
    if (this.#destroyed) return;
    this.#exitStatus = status;
    this.emit('exit', status);
  }

  protected emitError(error: ProcsockError): void {
    if (this.#destroyed || this.#exitStatus !== null || this.#error) return;
    this.#error = error;
    // An 'error' event with no listener throws; a channel error is also reported by done().
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  protected emitClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#error) this.#rejectDone?.(this.#error);
    else this.#resolveDone?.(this.#exitStatus);
    this.#resolveDone = null;
    this.#rejectDone = null;
    this.emit('close');
  }
}

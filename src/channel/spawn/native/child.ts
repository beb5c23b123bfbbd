/**
 * A child the addon started: its pid, its pipes (three, or four with the report pipe), its
 * exit as child_process has it, and what it cost.
 */
import { EventEmitter } from 'node:events';
import { loadAddon } from '../../../native/addon.js';
import type { ExitListener } from '../../../native/exits.js';
import type { ChildUsage } from '../../usage.js';
import type { SpawnedChild } from '../backend.js';
import { execError, startError } from './errors.js';
import type { NativeInput } from './input.js';
import type { NativeOutput } from './output.js';
import { TerminalInput } from './terminal.js';

export class NativeChild extends EventEmitter implements SpawnedChild, ExitListener {
  pid: number | undefined;
  stdin: NativeInput | TerminalInput | null = null;
  stdout: NativeOutput | null = null;
  stderr: NativeOutput | null = null;
  report: NativeOutput | null = null;
  /** wait4's CPU figures, set at the reap (see exits.ts for why not the peak RSS). */
  usage: ChildUsage | null = null;
  #file: string;
  /** The request's, for error reports only: never copied (see `SpawnRequest.argvPrefix`). */
  #argv: readonly string[];
  #argvPrefix: readonly string[];
  #reaped = false;

  constructor(
    pid: number | undefined,
    file: string,
    argv: readonly string[],
    argvPrefix: readonly string[] = [],
  ) {
    super();
    this.pid = pid;
    this.#file = file;
    this.#argv = argv;
    this.#argvPrefix = argvPrefix;
  }

  exited(code: number | null, signal: NodeJS.Signals | null, usage: ChildUsage): void {
    this.#reaped = true;
    this.usage = usage;
    // As child_process does: nobody is left to read stdin, so release it now.
    this.stdin?.childReaped();
    this.emit('exit', code, signal);
  }

  /**
   * The child could not exec (`errno` negative): an 'error' as child_process has it, no
   * 'exit'; or, with `syscall`, there never was a child (no descriptors, no memory):
   * a `SpawnError`.
   */
  failed(errno: number, syscall?: string): void {
    this.#reaped = true;
    this.stdin?.childReaped();
    const args = [...this.#argvPrefix, ...this.#argv];
    this.emit(
      'error',
      syscall ? startError(errno, syscall, this.#file, args) : execError(errno, this.#file, args),
    );
  }

  /** PTY mode: the terminal's window size (through stdin's writer, which holds the master). */
  resize(columns: number, rows: number): boolean {
    return this.stdin instanceof TerminalInput && this.stdin.resize(columns, rows);
  }

  /** Whether waiting for its exit keeps the event loop alive (as ChildProcess ref()/unref()). */
  ref(): void {
    if (this.pid !== undefined && !this.#reaped) loadAddon()?.childRef(this.pid, true);
  }

  unref(): void {
    if (this.pid !== undefined && !this.#reaped) loadAddon()?.childRef(this.pid, false);
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    // Once reaped the pid may belong to someone else.
    if (this.pid === undefined || this.#reaped) return false;
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }
}

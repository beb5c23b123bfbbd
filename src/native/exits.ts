/**
 * Children the addon started, by pid, until it reports them reaped (its `onExit` callback,
 * wired by addon.ts). The exit's signal number becomes Node's name here (core/signals.ts).
 */
import { signalName } from '../core/signals.js';

/** What the native spawn backend's child is told at its reap. */
export interface ExitListener {
  exited(code: number | null, signal: NodeJS.Signals | null): void;
  /** The child could not exec: `errno` is negative, as Node has it. */
  failed(errno: number): void;
}

const running = new Map<number, ExitListener>();

/** Tells `listener` of the exit of `pid`, once. */
export function watchExit(pid: number, listener: ExitListener): void {
  running.set(pid, listener);
}

/** From the addon: `code` -1 when killed, `signal` 0 when not, `execErrno` > 0 when exec failed. */
export function dispatchExit(pid: number, code: number, signal: number, execErrno: number): void {
  const child = running.get(pid);
  if (!child) return;
  running.delete(pid);
  if (execErrno > 0) child.failed(-execErrno);
  else child.exited(code >= 0 ? code : null, signal > 0 ? (signalName(signal) ?? null) : null);
}

/**
 * Children the addon started, by pid, until it reports them reaped (its `onExit` callback,
 * wired by addon.ts). The exit's signal number becomes Node's name here (core/signals.ts),
 * and what wait4 said the child cost is read from the buffer the addon writes it in.
 */
import type { ChildUsage } from '../channel/usage.js';
import { signalName } from '../core/signals.js';

/** What the native spawn backend's child is told at its reap. */
export interface ExitListener {
  exited(code: number | null, signal: NodeJS.Signals | null, usage: ChildUsage): void;
  /** The child could not exec: `errno` is negative, as Node has it. */
  failed(errno: number): void;
}

const running = new Map<number, ExitListener>();

/**
 * The reaped child's user and system CPU (µs) and peak RSS (KiB), -1 when unknown: wait4's,
 * written by the addon just before onExit (setUsageBuffer). Off the V8 heap: it never moves.
 */
const reapedUsage = new Float64Array(new ArrayBuffer(3 * Float64Array.BYTES_PER_ELEMENT));

/** The buffer to give the addon's setUsageBuffer. */
export function usageBuffer(): Float64Array {
  return reapedUsage;
}

/**
 * The CPU of the child just reaped. Not its peak RSS: a CLONE_VM child's exec folds the
 * shared memory's peak — this Node process's — into it, so that figure is ours, not the program's.
 */
function reapedCPU(): ChildUsage {
  return {
    userCPUTime: known(reapedUsage[0]!),
    systemCPUTime: known(reapedUsage[1]!),
    maxRSS: null,
  };
}

function known(value: number): number | null {
  return value >= 0 ? value : null;
}

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
  else {
    const name = signal > 0 ? (signalName(signal) ?? null) : null;
    child.exited(code >= 0 ? code : null, name, reapedCPU());
  }
}

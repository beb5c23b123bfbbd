/**
 * What a run cost, in the units of Node's `process.resourceUsage()`: CPU time in
 * microseconds, peak resident set size in kibibytes; plus the wall time in milliseconds.
 * A field is null when the backend cannot know it (see the README's "Accounting").
 */
export interface ResourceUsage {
  /** User CPU time of the program and the descendants it (or procsock's reaper) waited for, µs. */
  userCPUTime: number | null;
  /** System CPU time, likewise, µs. */
  systemCPUTime: number | null;
  /** Largest peak RSS among them (not a sum), KiB. */
  maxRSS: number | null;
  /** From the start to the exit being reported, ms. */
  wallTime: number;
}

/** CPU and memory as a wait4() reports them for one reaped child. */
export type ChildUsage = Pick<ResourceUsage, 'userCPUTime' | 'systemCPUTime' | 'maxRSS'>;

export const UNKNOWN_CHILD_USAGE: ChildUsage = Object.freeze({
  userCPUTime: null,
  systemCPUTime: null,
  maxRSS: null,
});

/**
 * Why a run ended. `exit`/`signal`: by itself; the others: procsock stopped it (or, for
 * `spawn-failure`, it never ran). `timeout`, `idle-timeout` and `abort` are the client's
 * limits; `deadline`, `hangup` and `shutdown` the daemon's; `output-limit` either's.
 */
export type EndReason =
  | 'exit'
  | 'signal'
  | 'timeout'
  | 'idle-timeout'
  | 'abort'
  | 'output-limit'
  | 'deadline'
  | 'hangup'
  | 'shutdown'
  | 'spawn-failure';

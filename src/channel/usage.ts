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
  /**
   * Peak memory of the run's cgroup (its `memory.peak`: every process of the run together, page
   * cache included), KiB — a run in a cgroup of its own with the memory controller enabled for
   * it (a contained run given a `cgroup`, or a daemon's contained run in its delegated cgroup);
   * null anywhere else. Not comparable with `maxRSS`, the largest single process's peak.
   */
  memoryPeak: number | null;
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
 * Why a run ended — the same words locally, through the daemon (the protocol extension's
 * `reason`) and in the daemon's audit log. `exit`/`signal`: by itself; `spawn-failure`: it
 * never ran (no such program, cannot execute, no such cwd); `policy-refused`: the daemon's
 * policy refused it, nothing ran; the others: procsock stopped it, and that cause is the
 * reason even if the program then exited with a status of its own. `timeout` (the run's
 * own wall-clock limit), `idle-timeout` and `abort` are the client's; `deadline` (the
 * daemon's `-t`), `stdin-limit`, `hangup` and `shutdown` the daemon's; `output-limit`
 * either's (`maxBuffer`, or the daemon's output cap).
 */
export type EndReason =
  | 'exit'
  | 'signal'
  | 'timeout'
  | 'idle-timeout'
  | 'abort'
  | 'output-limit'
  | 'stdin-limit'
  | 'deadline'
  | 'hangup'
  | 'shutdown'
  | 'spawn-failure'
  | 'policy-refused';

/**
 * How a run ended, as every result reports it (ExecResult, a Session's exit, the daemon's
 * audit record): the status, why, and what it cost.
 */
export interface RunOutcome {
  /** Exit status when the program exited by itself, else null. */
  readonly exitCode: number | null;
  /**
   * The signal that killed it (`'TERM'`, `'KILL'`…), else null. Both are null only in the
   * result of a call that failed where the end was not learnt (a daemon that was hung up on).
   */
  readonly termSignal: string | null;
  readonly reason: EndReason;
  /** null where nothing ran or the transport cannot know (a plain sockexec daemon). */
  readonly usage: ResourceUsage | null;
  /**
   * How many processes besides the program procsock had to stop when the run ended (a
   * contained run); null where that is not tracked (an uncontained run, a plain daemon).
   */
  readonly descendantsStopped: number | null;
}

/** `exit` or `signal`: how a program that nothing stopped ended. */
export function naturalEnd(status: { termSignal: string | null }): 'exit' | 'signal' {
  return status.termSignal === null ? 'exit' : 'signal';
}

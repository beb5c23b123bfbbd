/**
 * The one place for time and size limits: what a duration option may be, the longest
 * timer Node can arm, the grace between TERM and KILL, and the default cap on collected
 * output. Every layer (channel, client, shell, daemon, command line) checks its limits
 * with these, so a duration means the same everywhere.
 */
import { ArgumentError } from '../errors.js';

/**
 * Longest delay a Node timer takes (2^31 - 1 ms, about 24.8 days). Node fires a longer one
 * after 1 ms (with a warning), so a longer finite limit is refused rather than armed.
 */
export const MAX_TIMER = 2 ** 31 - 1;

/**
 * Milliseconds between TERM and KILL when procsock stops a program it started (client,
 * session, shell). The daemon's `-k` keeps sockexec's own default (10 s) for compatibility.
 */
export const DEFAULT_KILL_TIMEOUT = 5000;

/**
 * Default `maxBuffer`: bytes of one stream collected into a result before the program is
 * stopped. 64 MiB: Node's 1 MiB is its most reported trap (it fails ordinary `git log`s),
 * execa's 100 MB lets a few concurrent runaways take gigabytes; 64 MiB is 64× Node's, far
 * below V8's longest string (512 MiB) even for both streams, and `yes` reaches it in well
 * under a second. Output that must be larger is streamed to a callback, or raised explicitly.
 */
export const DEFAULT_MAX_BUFFER = 64 * 1024 * 1024;

/**
 * Checks a duration option in milliseconds: a number from `min` (default 0) to `MAX_TIMER`,
 * or `Infinity`. 0 and Infinity mean "no limit" where `min` allows 0. Returns it; throws
 * `ArgumentError` naming the option.
 */
export function checkDuration(name: string, value: unknown, min = 0): number {
  if (
    typeof value !== 'number' ||
    Number.isNaN(value) ||
    value < min ||
    (value > MAX_TIMER && value !== Number.POSITIVE_INFINITY)
  ) {
    const none = min === 0 ? ' (0 or Infinity = none)' : '';
    throw new ArgumentError(
      `${name} must be a number of milliseconds from ${min} to ${MAX_TIMER}, or Infinity${none}; got ${describeValue(value)}`,
    );
  }
  return value;
}

/** Whether a checked duration is a deadline to arm: above 0 and finite. */
export function hasDeadline(ms: number): boolean {
  return ms > 0 && ms <= MAX_TIMER;
}

/** Checks a byte count option: a whole number ≥ `min` (default 1), or Infinity (no limit). */
export function checkByteCount(name: string, value: unknown, min = 1): number {
  if (
    typeof value !== 'number' ||
    !(Number.isSafeInteger(value) || value === Number.POSITIVE_INFINITY) ||
    value < min
  ) {
    throw new ArgumentError(
      `${name} must be a whole number of bytes ≥ ${min}, or Infinity (no limit); got ${describeValue(value)}`,
    );
  }
  return value;
}

/** A value as an error message shows it: short, never the whole of a long string. */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'string') return JSON.stringify(value.slice(0, 40));
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}

/**
 * Signal names as the wire carries them: without the `SIG` prefix (`TERM`, `KILL`), exactly
 * as the C sockexec sends them.
 */
import { constants } from 'node:os';
import { ArgumentError } from '../errors.js';
import { describeValue } from './limits.js';

const byNumber = new Map<number, string>();
for (const [name, number] of Object.entries(constants.signals)) {
  // Node lists aliases (SIGIOT = SIGABRT, SIGPOLL = SIGIO); keep the first, canonical name.
  if (!byNumber.has(number)) byNumber.set(number, name.slice(3));
}

/** `SIGTERM` or 15 → `TERM`. An unknown number gives its decimal form. */
export function wireSignalName(signal: NodeJS.Signals | number): string {
  if (typeof signal === 'number') return byNumber.get(signal) ?? String(signal);
  return signal.startsWith('SIG') ? signal.slice(3) : signal;
}

/** `TERM` → 15, or undefined when this system has no such signal. */
export function signalNumber(name: string): number | undefined {
  const full = (name.startsWith('SIG') ? name : `SIG${name}`) as NodeJS.Signals;
  return constants.signals[full];
}

/** 15 → `SIGTERM` (Node's name, as `'exit'` events carry it); undefined for an unknown number. */
export function signalName(signal: number): NodeJS.Signals | undefined {
  const name = byNumber.get(signal);
  return name === undefined ? undefined : (`SIG${name}` as NodeJS.Signals);
}

/**
 * A signal given by a caller — a name with or without `SIG` (`'INT'`, `'SIGTERM'`) or a number
 * — as its wire name (`INT`); `ArgumentError` naming `what` for one this system does not have.
 */
export function checkSignal(signal: unknown, what = 'signal'): string {
  const name =
    typeof signal === 'number'
      ? wireSignalName(signal)
      : typeof signal === 'string'
        ? wireSignalName(signal as NodeJS.Signals)
        : '';
  if (name === '' || signalNumber(name) === undefined || !/^[A-Z][A-Z0-9+-]*$/.test(name)) {
    throw new ArgumentError(
      `${what} must be a signal name ('INT', 'SIGTERM'…) or number this system has; got ${describeValue(signal)}`,
    );
  }
  return name;
}

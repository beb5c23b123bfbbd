/**
 * PTY mode's option, checked and normalised in one place for every layer (client, channel,
 * daemon, command line): `pty: true`, or `pty: { columns, rows, stderr }`.
 *
 * The program gets a new session whose controlling terminal is a new pseudo-terminal, on
 * its stdin and stdout; its stderr stays on a pipe of its own unless `stderr: 'pty'`.
 */
import { ArgumentError } from '../errors.js';
import { describeValue } from './limits.js';

/** Where the program's stderr goes in PTY mode. */
export type PtyStderr = 'pipe' | 'pty';

export interface PtyOptions {
  /** Window width in character cells, 1 to 65535. Default 80. */
  columns?: number;
  /** Window height in character cells, 1 to 65535. Default 24. */
  rows?: number;
  /**
   * `'pipe'` (default): stderr stays a pipe of its own, delivered as `stderr` output.
   * `'pty'`: stderr is the terminal too, so it comes mixed into `stdout`, as on a screen.
   */
  stderr?: PtyStderr;
  /**
   * Start the terminal in raw mode (as `stty raw -echo`, set before the program runs): no
   * echo, no line editing, no signal characters, no `\r`/`\n` translation — bytes pass
   * unchanged both ways. The program may change the modes. Default false: the kernel's
   * usual terminal (echo, lines, ^C, `\n` shown as `\r\n`).
   */
  raw?: boolean;
}

/** The `pty` option as callers give it. */
export type PtyOption = boolean | PtyOptions;

/** A terminal, decided: what the spawn and the wire need. */
export interface Terminal {
  columns: number;
  rows: number;
  stderr: PtyStderr;
  raw: boolean;
}

export const DEFAULT_COLUMNS = 80;
export const DEFAULT_ROWS = 24;
/** The kernel keeps a window size in 16 bits per side. */
export const MAX_WINDOW_SIDE = 0xffff;

/** Checks one side of a window size; returns it. */
export function checkWindowSide(name: string, value: unknown): number {
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > MAX_WINDOW_SIDE) {
    throw new ArgumentError(
      `${name} must be a whole number of character cells from 1 to ${MAX_WINDOW_SIDE}; got ${describeValue(value)}`,
    );
  }
  return value as number;
}

const PTY_KEYS = new Set(['columns', 'rows', 'stderr', 'raw']);

/**
 * The terminal a `pty` option asks for, or null for none (`false`, `undefined`). Throws
 * `ArgumentError` naming `name` for anything else.
 */
export function resolveTerminal(value: unknown, name = 'pty'): Terminal | null {
  if (value === undefined || value === false) return null;
  if (value === true) {
    return { columns: DEFAULT_COLUMNS, rows: DEFAULT_ROWS, stderr: 'pipe', raw: false };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ArgumentError(
      `${name} must be true, false or { columns, rows, stderr, raw }; got ${describeValue(value)}`,
    );
  }
  for (const key of Object.keys(value)) {
    if (!PTY_KEYS.has(key)) {
      throw new ArgumentError(
        `unknown ${name} option ${JSON.stringify(key)} (use columns, rows, stderr, raw)`,
      );
    }
  }
  const { columns, rows, stderr, raw } = value as PtyOptions;
  if (raw !== undefined && typeof raw !== 'boolean') {
    throw new ArgumentError(`${name}.raw must be a boolean; got ${describeValue(raw)}`);
  }
  if (stderr !== undefined && stderr !== 'pipe' && stderr !== 'pty') {
    throw new ArgumentError(`${name}.stderr must be 'pipe' or 'pty'; got ${describeValue(stderr)}`);
  }
  return {
    columns: columns === undefined ? DEFAULT_COLUMNS : checkWindowSide(`${name}.columns`, columns),
    rows: rows === undefined ? DEFAULT_ROWS : checkWindowSide(`${name}.rows`, rows),
    stderr: stderr ?? 'pipe',
    raw: raw ?? false,
  };
}

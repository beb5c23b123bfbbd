/**
 * Framing: what the driver writes to the shell for one command, and how it recognises the
 * end of that command's output on stdout and stderr. Two kinds:
 *
 * - `SentinelFraming`, for any program: the command, then the sentinel commands, each
 *   ended by the terminator (`;` for SQL shells) and a newline.
 * - `PosixFraming` (posix.ts), for sh, bash, dash and zsh: no hand-written sentinels.
 * - The REPL presets (repl.ts): Python, Node and SQLite.
 */
import { randomBytes } from 'node:crypto';
import type { ExitStatus } from '../core/output.js';
import type { ProcsockError } from '../errors.js';
import type { Sentinel, SentinelFactory } from './sentinel.js';
import { SentinelScanner, validateSentinel } from './sentinel.js';

export interface Frame {
  /** Text to write to the shell's stdin. */
  readonly input: string;
  readonly stdout: SentinelScanner;
  /** Null when stderr has no sentinel (it is then drained, not parsed — but see below). */
  readonly stderr: SentinelScanner | null;
  /**
   * Stderr has no sentinel but is the command's all the same: everything on it until the
   * stdout sentinel, and then what is still in the pipe, read at once (the shell wrote it
   * before the stdout sentinel). Needs a channel that can read its pipe now
   * (`LocalChannel.readPendingOutput`).
   */
  readonly stderrUntilStdout?: boolean;
  /** The command's exit status, once the stdout sentinel was seen; null if not reported. */
  exitCode(): number | null;
}

export interface Framing {
  /** The argv that launches the program (given as `[program, ...args]`). */
  launch(argv: readonly string[]): readonly string[];
  /**
   * Sent once after launch, before the first frame. `pendingReads`: the channel can read what
   * is left in a pipe at once (`LocalChannel.readPendingOutput`), so stderr needs no marker.
   */
  setup(pendingReads: boolean): string;
  /** Frames a command; `null` frames only the sentinels (the start-up probe). */
  frame(command: string | null): Frame;
  /** What `stop()` writes before end-of-file: the final command, terminated, or nothing. */
  finalInput(command: string | undefined): string;
  /** A non-zero exit after `stop()` that is still a clean stop (sqlite3 ends with 1 after any error). */
  cleanStop?(status: ExitStatus | null): boolean;
  /** Once the start-up probe was answered: why the program cannot run as asked (start() fails), or null. */
  refusal?(): ProcsockError | null;
}

const MARKER_BYTES = 16;
let markerPool = Buffer.alloc(0);
let markerAt = 0;

/**
 * Random bits from crypto as URL-safe base64 (safe unquoted in any shell): by default 128 bits,
 * 22 characters.
 */
export function freshMarker(bytes = MARKER_BYTES): string {
  if (markerAt + bytes > markerPool.length) {
    markerPool = randomBytes(MARKER_BYTES * 256);
    markerAt = 0;
  }
  const marker = markerPool.toString('base64url', markerAt, markerAt + bytes);
  markerAt += bytes;
  return marker;
}

export type SentinelSpec = Sentinel | SentinelFactory;

export class SentinelFraming implements Framing {
  setup(): string {
    return '';
  }

  launch(argv: readonly string[]): readonly string[] {
    return argv;
  }

  readonly #terminator: string;
  readonly #stdout: SentinelSpec;
  readonly #stderr: SentinelSpec | null;

  constructor(terminator: string, stdout: SentinelSpec, stderr: SentinelSpec | null) {
    this.#terminator = terminator;
    this.#stdout = stdout;
    this.#stderr = stderr;
    // Fail at construction, not at the first run, when a sentinel is malformed.
    resolveSentinel(stdout, 'the stdout sentinel');
    if (stderr) resolveSentinel(stderr, 'the stderr sentinel');
  }

  finalInput(command: string | undefined): string {
    return command === undefined ? '' : this.terminate(command);
  }

  /**
   * Adds the terminator where it ends the statement: not after a dot-command (sqlite3's
   * `.print x;` would print `x;`), and on a line of its own after a `--` comment.
   */
  terminate(command: string): string {
    const text = command.trimEnd();
    const lastLine = text.slice(text.lastIndexOf('\n') + 1);
    if (!this.#terminator || text.endsWith(this.#terminator) || lastLine.startsWith('.')) {
      return `${text}\n`;
    }
    return `${text}${lastLine.includes('--') ? '\n' : ''}${this.#terminator}\n`;
  }

  frame(command: string | null): Frame {
    const stdout = resolveSentinel(this.#stdout, 'the stdout sentinel');
    const stderr = this.#stderr ? resolveSentinel(this.#stderr, 'the stderr sentinel') : null;
    // The stderr sentinel goes first, so that after the last one $? is the stdout sentinel's.
    const input =
      (command === null ? '' : this.terminate(command)) +
      (stderr ? this.terminate(stderr.command) : '') +
      this.terminate(stdout.command);
    const stdoutScanner = new SentinelScanner(`${stdout.value}\n`);
    const stderrScanner = stderr ? new SentinelScanner(`${stderr.value}\n`) : null;
    return { input, stdout: stdoutScanner, stderr: stderrScanner, exitCode: () => null };
  }
}

function resolveSentinel(spec: SentinelSpec, what: string): Sentinel {
  return validateSentinel(typeof spec === 'function' ? spec(freshMarker()) : spec, what);
}

/** Single-quotes text for a POSIX shell: `it's` → `'it'\\''s'`. */
export function quote(command: string): string {
  return `'${command.replaceAll("'", `'\\''`)}'`;
}

/**
 * Framing: what the driver writes to the shell for one command, and how it recognises the
 * end of that command's output on stdout and stderr. Two kinds:
 *
 * - `SentinelFraming`, for any program: the command, then the sentinel commands, each
 *   ended by the terminator (`;` for SQL shells) and a newline.
 * - `PosixFraming`, for sh, bash, dash and zsh: no hand-written sentinels. Each run gets a
 *   fresh random marker M and is sent as ONE line:
 *
 *       eval '<command>' </dev/null;__procsock_end M
 *
 *   `eval` of a quoted string keeps the command in one piece (a multi-line block, an
 *   unclosed quote or a syntax error in it cannot swallow the sentinel). `</dev/null` gives
 *   the command an empty stdin, so `read x` and `cat` get end-of-file at once instead of
 *   reading the driver's next lines. `__procsock_end` (defined at start) takes `$?` first,
 *   prints `M` on stderr and `M <status>` on stdout, then returns that status, so the next
 *   command's `$?` is the real one. Reserved names: `__procsock_end`. A shell run locally
 *   gets no stderr marker: when `M <status>` arrives, the command's stderr is all written, and
 *   the driver reads what it has not yet read of it from the pipe at once
 *   (`LocalChannel.readPendingOutput`) — a write and a wake-up less per run.
 */
import { randomBytes } from 'node:crypto';
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
  /** Sent once after launch, before the first frame. */
  readonly setup: string;
  /** Frames a command; `null` frames only the sentinels (the start-up probe). */
  frame(command: string | null): Frame;
  /** What `stop()` writes before end-of-file: the final command, terminated, or nothing. */
  finalInput(command: string | undefined): string;
}

const MARKER_BYTES = 16;
let markerPool = Buffer.alloc(0);
let markerAt = 0;

/** 128 random bits as 22 URL-safe base64 characters (safe unquoted in any shell). */
export function freshMarker(): string {
  if (markerAt + MARKER_BYTES > markerPool.length) {
    markerPool = randomBytes(MARKER_BYTES * 256);
    markerAt = 0;
  }
  const marker = markerPool.toString('base64url', markerAt, markerAt + MARKER_BYTES);
  markerAt += MARKER_BYTES;
  return marker;
}

export type SentinelSpec = Sentinel | SentinelFactory;

export class SentinelFraming implements Framing {
  readonly setup = '';
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

  terminate(command: string): string {
    const text = command.trimEnd();
    const terminated =
      this.#terminator && !text.endsWith(this.#terminator) ? text + this.#terminator : text;
    return `${terminated}\n`;
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

const END_FUNCTION = '__procsock_end';

/**
 * What becomes of a POSIX command's stderr: `'capture'` (its own marker, so it is cut
 * exactly per run), `'merge'` (`2>&1`: into stdout, in the order written), or `'drain'`
 * (read and dropped). The last two save a marker and a wake-up per run.
 */
export type PosixStderr = 'capture' | 'merge' | 'drain';

export class PosixFraming implements Framing {
  readonly setup: string;
  readonly #stderr: PosixStderr;
  readonly #redirects: string;
  readonly #stderrMarker: boolean;

  /**
   * `stderrMarker: false` (capture only): no marker on stderr; the driver reads what is left in
   * the stderr pipe once it sees the stdout marker (`Frame.stderrUntilStdout`). That saves the
   * shell a write and the driver a wake-up per run. Default true.
   */
  constructor(stderr: PosixStderr = 'capture', options: { stderrMarker?: boolean } = {}) {
    this.#stderr = stderr;
    this.#stderrMarker = stderr === 'capture' && (options.stderrMarker ?? true);
    this.#redirects = stderr === 'merge' ? ' </dev/null 2>&1' : ' </dev/null';
    const toStderr = this.#stderrMarker ? `printf '%s\\n' "$1" >&2; ` : '';
    this.setup = `${END_FUNCTION}() { set -- "$1" "$?"; ${toStderr}printf '%s %s\\n' "$1" "$2"; return "$2"; }\n`;
  }

  /**
   * At end-of-file a shell exits with `$?`, which this framing keeps equal to the last
   * command's status; `true` first, so a healthy shell stopped after `false` exits 0.
   */
  finalInput(command: string | undefined): string {
    if (command === undefined) return 'true\n';
    return command.endsWith('\n') ? command : `${command}\n`;
  }

  frame(command: string | null): Frame {
    const marker = freshMarker();
    const input =
      command === null
        ? `${END_FUNCTION} ${marker}\n`
        : `eval ${quote(command)}${this.#redirects};${END_FUNCTION} ${marker}\n`;
    const stdout = new SentinelScanner(`${marker} `, { trailer: true });
    const stderr = this.#stderrMarker ? new SentinelScanner(`${marker}\n`) : null;
    return {
      input,
      stdout,
      stderr,
      stderrUntilStdout: this.#stderr === 'capture' && !this.#stderrMarker,
      exitCode: () => {
        const status = Number.parseInt(stdout.payload, 10);
        return Number.isInteger(status) ? status : null;
      },
    };
  }
}

/** Single-quotes text for a POSIX shell: `it's` → `'it'\\''s'`. */
export function quote(command: string): string {
  return `'${command.replaceAll("'", `'\\''`)}'`;
}

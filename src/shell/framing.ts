/**
 * Framing: what the driver writes to the shell for one command, and how it recognises the
 * end of that command's output on stdout and stderr. Two kinds:
 *
 * - `SentinelFraming`, for any program: the command, then the sentinel commands, each
 *   ended by the terminator (`;` for SQL shells) and a newline.
 * - `PosixFraming`, for sh, bash, dash and zsh: no hand-written sentinels. The shell is
 *   launched through `<shell> -c LAUNCHER <shell> <args…>`: given a pipe on stdin (the native
 *   backend's), it execs `<shell> <args…> /dev/fd/3 3<&0 </dev/null`, reading the driver's
 *   lines as a script on a descriptor of its own, with /dev/null as its stdin — that of every
 *   command — so `read x` and `cat` get end-of-file at once instead of reading the driver's
 *   next lines (and `$0` is `/dev/fd/3`). The start-up probe reports which way it went. Given
 *   a socket (child_process's stdin; /dev/fd/3 cannot open one), the shell reads its stdin
 *   and each command is sent with `</dev/null`, which costs bash a fifth of its time per run
 *   (a redirection saves and restores descriptors and re-syncs the input it reads from).
 *   Each run gets a fresh random marker M and is sent as ONE line:
 *
 *       eval '<command>';echo M $?              (eval '<command>' </dev/null;… on a socket)
 *
 *   `eval` of a quoted string keeps the command in one piece (a multi-line block, an
 *   unclosed quote or a syntax error in it cannot swallow the sentinel), and `echo` reports
 *   its status. `echo` leaves `$?` at 0, so a command that follows a failed one is sent as
 *   `__procsock_status N;eval '<command>';…` (a function defined at start that returns N):
 *   every command sees the previous one's status as `$?`. (A function that took `$?`,
 *   printed and returned it cost bash a quarter of its time per run.) Reserved: the names
 *   `__procsock_status` and `__procsock_fd3` (unset at start). A shell run locally gets no stderr marker: when `M <status>`
 *   arrives, the command's stderr is all written, and the driver reads what it has not yet
 *   read of it from the pipe at once (`LocalChannel.readPendingOutput`) — a write and a
 *   wake-up less per run. Otherwise `;echo M >&2` follows.
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
  /** The argv that launches the program (given as `[program, ...args]`). */
  launch(argv: readonly string[]): readonly string[];
  /** Sent once after launch, before the first frame. */
  readonly setup: string;
  /** Frames a command; `null` frames only the sentinels (the start-up probe). */
  frame(command: string | null): Frame;
  /** What `stop()` writes before end-of-file: the final command, terminated, or nothing. */
  finalInput(command: string | undefined): string;
}

const MARKER_BYTES = 16;
/**
 * The POSIX preset's markers: 96 bits, 16 characters. bash reads the framed line one byte
 * per read(), so every character costs it a system call; 2^96 stays unguessable.
 */
const POSIX_MARKER_BYTES = 12;
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
  readonly setup = '';

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

/** Sets `$?` (defined at start): `__procsock_status N` returns N. */
const RESTORE_FUNCTION = '__procsock_status';
/** Set (exported, 1) by the launcher when the shell reads its commands on fd 3. */
const FD3_VARIABLE = '__procsock_fd3';
const STDIN_REDIRECT = ' </dev/null';
/**
 * `sh -c` program: on a pipe (`/dev/fd/3` cannot open a socket, which is what child_process
 * gives a child's stdin), the shell reads its commands as a script on fd 3, with /dev/null as
 * stdin; otherwise it reads them on stdin and each command gets `</dev/null`.
 */
const LAUNCHER =
  `if [ -p /dev/fd/0 ]; then export ${FD3_VARIABLE}=1; ` +
  'exec "$0" "$@" /dev/fd/3 3<&0 </dev/null; fi; exec "$0" "$@"';

/**
 * What becomes of a POSIX command's stderr: `'capture'` (its own marker, so it is cut
 * exactly per run), `'merge'` (`2>&1`: into stdout, in the order written), or `'drain'`
 * (read and dropped). The last two save a marker and a wake-up per run.
 */
export type PosixStderr = 'capture' | 'merge' | 'drain';

export class PosixFraming implements Framing {
  readonly setup: string;
  readonly #stderr: PosixStderr;
  readonly #stderrMarker: boolean;
  /** The status of the last command run: the next one starts with it as `$?`. */
  #lastStatus: () => number | null = () => 0;
  /** Commands need `</dev/null` unless the start-up probe says the shell reads fd 3. */
  #redirect = STDIN_REDIRECT;
  #probe: SentinelScanner | null = null;

  /**
   * `stderrMarker: false` (capture only): no marker on stderr; the driver reads what is left in
   * the stderr pipe once it sees the stdout marker (`Frame.stderrUntilStdout`). That saves the
   * shell a write and the driver a wake-up per run. Default true.
   */
  constructor(stderr: PosixStderr = 'capture', options: { stderrMarker?: boolean } = {}) {
    this.#stderr = stderr;
    this.#stderrMarker = stderr === 'capture' && (options.stderrMarker ?? true);
    this.setup =
      // The launcher's copy of the driver's pipe: commands must not inherit it.
      'exec 3<&-\n' +
      (stderr === 'merge' ? 'exec 2>&1\n' : '') +
      `${RESTORE_FUNCTION}() { return "$1"; }\n`;
  }

  /** See the top: given a pipe, the shell reads it as a script on fd 3; stdin is /dev/null. */
  launch(argv: readonly string[]): readonly string[] {
    const [program, ...args] = argv as [string, ...string[]];
    return [program, '-c', LAUNCHER, program, ...args];
  }

  /**
   * The final command sees the last status as `$?`, as every command does; with none, `true`,
   * so a healthy shell stopped after `false` exits 0 (at end-of-file a shell exits with `$?`).
   */
  finalInput(command: string | undefined): string {
    if (command === undefined) return 'true\n';
    return `${this.#restore()}${command.endsWith('\n') ? command : `${command}\n`}`;
  }

  frame(command: string | null): Frame {
    if (this.#probe) {
      // "<status> 1": the launcher gave the shell its commands on fd 3.
      this.#redirect = this.#probe.payload.endsWith(' 1') ? '' : STDIN_REDIRECT;
      this.#probe = null;
    }
    let marker = freshMarker(POSIX_MARKER_BYTES);
    while (marker.startsWith('-')) marker = freshMarker(POSIX_MARKER_BYTES); // never an echo option
    const toStderr = this.#stderrMarker ? `;echo ${marker} >&2` : '';
    const input =
      command === null
        ? `echo ${marker} $? \${${FD3_VARIABLE}-0};unset ${FD3_VARIABLE}${toStderr}\n`
        : `${this.#restore()}eval ${quote(command)}${this.#redirect};echo ${marker} $?${toStderr}\n`;
    const stdout = new SentinelScanner(`${marker} `, { trailer: true });
    const stderr = this.#stderrMarker ? new SentinelScanner(`${marker}\n`) : null;
    const exitCode = () => {
      const status = Number.parseInt(stdout.payload, 10);
      return Number.isInteger(status) ? status : null;
    };
    // A new shell (the start-up probe) starts at 0; then each command's status carries over.
    this.#lastStatus = command === null ? () => 0 : exitCode;
    if (command === null) {
      this.#probe = stdout;
      this.#redirect = STDIN_REDIRECT;
    }
    return {
      input,
      stdout,
      stderr,
      stderrUntilStdout: this.#stderr === 'capture' && !this.#stderrMarker,
      exitCode,
    };
  }

  /** After the report `$?` is 0: a command that follows a failed one gets its status back. */
  #restore(): string {
    const status = this.#lastStatus() ?? 0;
    return status === 0 ? '' : `${RESTORE_FUNCTION} ${status};`;
  }
}

/** Single-quotes text for a POSIX shell: `it's` → `'it'\\''s'`. */
export function quote(command: string): string {
  return `'${command.replaceAll("'", `'\\''`)}'`;
}

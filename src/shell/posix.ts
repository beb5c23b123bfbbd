/**
 * The POSIX preset's framing, for sh, bash, dash and zsh, made to survive the state users
 * build up in their shells: `set -euo pipefail`, ERR/DEBUG/RETURN/EXIT traps, `set -vx`,
 * history, aliases of any name, functions shadowing builtins, a hostile `IFS`.
 *
 * Launch: `<shell> -c LAUNCHER <shell> <args…>`. Given a pipe on stdin (the native backend's),
 * the launcher execs `<shell> <args…> /dev/fd/3 3<&0 </dev/null`: the shell reads the driver's
 * lines as a script on a descriptor of its own and /dev/null is its stdin — every command's —
 * so `read x` and `cat` get end-of-file at once. Given a socket (child_process's stdin;
 * /dev/fd/3 cannot open one) it reads stdin, and each command gets `</dev/null`. The launcher
 * always sets `__procsock_fd3` (1 or 0), so a value inherited from the environment cannot lie.
 *
 * bash runs a read–eval loop of ours instead (see bashLoop): each run is only data, a block
 * `P1 P2 SSS K <command…>` (marker pieces, the status to restore as `$?`, the kind) read with
 * one `read -N`. The loop is parsed once, at start-up and on the first
 * line of the script, so its `eval` numbers the user's lines from 1 as `bash -c` would
 * (`bash: line 2: …` for an error on the command's second line, in functions it defines
 * too, and in syntax errors), and no alias defined later can reach it. A short command costs
 * bash one `read` system call, where the one-line frame below costs one per byte: see
 * bench/README.md, Shell. dash and zsh
 * number their lines per `eval` already and get one line per run, with a fresh random
 * marker M = P1P2 (two 8-character pieces):
 *
 *     [R N||]E '<command>
 *     __pss=$?';P "$__psf" P1 P2 "$?" "$__pss"[;P "$__psg" P1 P2 >&7]
 *
 * - E and P are `eval` and `printf` in a form neither an alias nor a function can capture:
 *   `\builtin eval`/`\builtin printf` in bash and zsh (the backslash quotes the word, so no
 *   alias expands; `builtin` skips functions), `\eval`/`\command printf` elsewhere (dash's
 *   special builtins cannot be functions; `command` skips functions). The start-up probe says
 *   which shell it is. The one name left is a function called `builtin` (`command` in dash).
 * - The marker is never in what the shell reads or traces: printf joins the pieces at run
 *   time, so `set -v`, `set -x`, a DEBUG trap printing `$BASH_COMMAND` or `history 1` show
 *   `P1 P2`, never `P1P2`. Every word is quoted or random, so zsh's global aliases miss too.
 * - `__pss=$?` ends the evaluated text: the command's status is kept, and `eval` returns 0,
 *   so a failure `set -e` exempts (`[ -f x ] && y`, `! true`) stays exempt and an ERR trap
 *   fires only for the user's own commands. A syntax error stops the text before it: then
 *   `eval`'s own status is the run's (hence both are printed; the driver picks).
 * - `R N||` (`\__procsock_status N`, a function returning N) gives the next command the last
 *   one's status as `$?`, after a failure only; on the left of `||` it trips neither `set -e`
 *   nor an ERR trap. Statuses are quoted: an `IFS` with digits cannot split them.
 * - Through the daemon (any channel but a local one on the native backend) a stderr marker
 *   follows, on a copy of the shell's stderr made at start (descriptor 7, closed for the
 *   command by `7>&-` on its eval), so `exec 2>/dev/null` or `exec 2>&1` in a run does not
 *   swallow it. Run locally, the driver reads the rest of the stderr pipe when the stdout
 *   marker arrives instead.
 *
 * Reserved names: `__procsock_status`, `__procsock_fd3`, `__pss`, `__psf`, `__psg`, and in
 * bash `__psl`, `__psh`, `__psr`, `__psfd` (and `__psj`, `__pstty` on an interactive terminal:
 * see TERMINAL_SYNC); and descriptor 7 when stderr has a marker.
 */
import { ArgumentError, type ProcsockError } from '../errors.js';
import type { Frame, Framing } from './framing.js';
import { freshMarker, quote } from './framing.js';
import { SentinelScanner } from './sentinel.js';

/** Sets `$?` (defined at start): `__procsock_status N` returns N. */
const RESTORE_FUNCTION = '__procsock_status';
/** Set (exported, 1 or 0) by the launcher: whether the shell reads its commands on fd 3. */
const FD3_VARIABLE = '__procsock_fd3';
const STDIN_REDIRECT = ' </dev/null';
/** Where the stderr marker goes: the shell's stderr as it was at start. */
const STDERR_COPY = 7;
/** 6 random bytes: 8 base64url characters per piece, 96 bits per marker. */
const PIECE_BYTES = 6;

/**
 * `sh -c` program: on a pipe (`/dev/fd/3` cannot open a socket, which is what child_process
 * gives a child's stdin), the shell reads its commands as a script on fd 3, with /dev/null as
 * stdin; otherwise it reads them on stdin and each command gets `</dev/null`.
 */
const LAUNCHER =
  // A terminal (PTY mode) is read through /dev/fd/3 too: a shell reading stdin from one would
  // be interactive (dash: prompts on stderr).
  `if [ -p /dev/fd/0 ] || [ -t 0 ]; then export ${FD3_VARIABLE}=1; ` +
  `exec "$0" "$@" /dev/fd/3 3<&0 </dev/null; fi; export ${FD3_VARIABLE}=0; exec "$0" "$@"`;

/**
 * The launcher on an interactive terminal (ShellOptions.pty.interactive): the shell reads its
 * commands from the terminal on fd 3, and the terminal stays its stdin — every command's.
 */
const TERMINAL_LAUNCHER = `export ${FD3_VARIABLE}=1; exec "$0" "$@" /dev/fd/3 3<&0`;

/** Characters per marker piece (base64 of PIECE_BYTES). */
const PIECE_CHARS = (PIECE_BYTES * 4) / 3;
/** A bash run's header: the marker's two pieces, a 3-digit status to restore, the run's kind. */
const BASH_HEADER = 2 * PIECE_CHARS + 4;
/**
 * Every bash run starts with one block of this many characters, read with one `read -N`; a
 * short command (with the `__pss=$?` tail) fits in it, padded with blanks after the tail.
 */
const BASH_BLOCK = 64;
/** Ends every command bash evaluates: the command's status, and `eval` returns 0 (see the top). */
const BASH_TAIL = '\n__pss=$?';
/** The final run's (stop()) tail: the shell exits with the command's status. */
const BASH_FINAL_TAIL = '\n\\builtin exit "$?"';
/**
 * A command whose last line ends in a backslash continues on the next line, which is the
 * framing's tail: `echo a \` would print `a __pss=0` and lose its status. An empty line
 * after it ends the continuation, as in a script (`echo a` then a blank line). Other commands
 * are left alone, so the common run's block stays as short.
 */
function closeContinuation(command: string): string {
  return /(^|[^\\])(\\\\)*\\$/.test(command) ? `${command}\n` : command;
}

/** Characters whose count in bash's locale is not their count here: such a run is read to a NUL. */
const NON_ASCII = /[^\x00-\x7f]/;
/**
 * `read -N` and `-u` for the loop: `-t` overrides a TMOUT (the read builtin's default timeout,
 * often exported on hardened hosts; it would end the loop, and the shell, when idle) without
 * an assignment in front of the builtin, which costs bash as much as reading 150 characters.
 */
const BASH_READ = `\\builtin read "-r\${TMOUT:+t99999999}"`;
/**
 * Interactive terminal: bash's loop first reads (and drops) what a run left unread of the
 * input typed for it, up to the NUL the driver sends before every run — typed input holds
 * no NUL (Shell#write refuses one), so the NUL is where the driver's bytes start again —
 * and after each command it puts back the terminal's modes (a program may have changed
 * them: echo, canonical lines), saved at start as `$__pstty`.
 */
const TERMINAL_SYNC = `${BASH_READ} -d '' -u "$__psfd" __psj && `;
const TERMINAL_MODES =
  ';\\\\builtin command -p stty \\"\\$__pstty\\" 0</dev/tty 2>/dev/null||\\\\builtin :';

/**
 * bash's read–eval loop. Per run: print the last run's report (the probe's before the first), read
 * the run's first block (`read -N`: one system call for the block, where reading to a
 * delimiter takes one per byte), restore the last status as `$?` (`false`, or the function
 * for other statuses, each on the left of `&&`, so neither `set -e` nor an ERR trap sees it;
 * no function call for 0 or 1, so a RETURN trap under `set -T` stays quiet), then `eval` the
 * command, which ends with `__pss=$?` (eval returns 0: see the top). The block's `read` also
 * empties `__pss` (`-N` gives a second name nothing), so a run whose tail did not run (a
 * `break` or `continue` in it) reports no status.
 * The block's kind (after the status) says where the command is: `s`, in the block; `l`, in
 * the next N characters (N in the block), read with a second `read -N`; `u`, up to a NUL (the
 * command is not ASCII, so its length in characters depends on bash's locale: read to a
 * delimiter, which counts bytes). A short run with status 0 or 1 takes the first two branches
 * of one `case`; the rest is in the third.
 * Every word that names a builtin is `\builtin`: a function of the user's cannot capture it;
 * aliases never reach the loop, which is parsed before any exists.
 *
 * The report is in the inner loop's condition, so a `continue` in a command still reports;
 * a `break` ends the inner loop, the outer one starts it again (the report follows); a
 * `break N` that ends both starts the loop anew through `eval`. stop()'s final command
 * ends with `exit "$?"` (at end of input `__pss` has been emptied by the read).
 */
function bashLoop(stderrMarker: boolean, commandStdin: string, terminal: boolean): string {
  const pieces = `"\${__psh:0:${PIECE_CHARS}}" "\${__psh:${PIECE_CHARS}:${PIECE_CHARS}}"`;
  const toStderr = stderrMarker
    ? `\\builtin printf "$__psg" ${pieces} "$?" >&${STDERR_COPY}; `
    : '';
  const evalStatus = stderrMarker ? '' : ' "$?"';
  const closeCopy = stderrMarker ? ` ${STDERR_COPY}>&-` : '';
  const status = `\${__psh:${2 * PIECE_CHARS}:3}`;
  const kind = `\${__psh:${2 * PIECE_CHARS + 3}:1}`;
  // The marker's place in a pattern: the common runs are told apart on the whole block.
  const anyMarker = '?'.repeat(2 * PIECE_CHARS);
  const rest =
    `case ${kind} in ` +
    `l) ${BASH_READ} -N "\${__psh:${BASH_HEADER}}" -u "$__psfd" __psr && __psh=\${__psh:0:${BASH_HEADER}}$__psr;; ` +
    `u) IFS= ${BASH_READ} -d '' -u "$__psfd" __psr && __psh=\${__psh:0:${BASH_HEADER}}$__psr;; esac; ` +
    `case ${status} in 000) ;; 001) \\builtin false && \\builtin :;; ` +
    `*) \\${RESTORE_FUNCTION} "${status}" && \\builtin :;; esac`;
  return (
    `while while ${toStderr}\\builtin printf "$__psf" ${pieces}${evalStatus} "$__pss"; ` +
    `${terminal ? TERMINAL_SYNC : ''}${BASH_READ} -N ${BASH_BLOCK} -u "$__psfd" __psh __pss; do ` +
    `case $__psh in ${anyMarker}000s*) ;; ${anyMarker}001s*) \\builtin false && \\builtin :;; ` +
    `*) ${rest};; esac; ` +
    `\\builtin eval "\${__psh:${BASH_HEADER}}${terminal ? TERMINAL_MODES : ''}"${commandStdin}${closeCopy}; done; ` +
    `\\builtin [ -n "$__psh" ]; do \\builtin :; done; ` +
    // After a `break N` that ended both loops; `&&`, so the report's `$?` is 0.
    `\\builtin [ -n "$__psh" ] && \\builtin eval "$__psl"; \\builtin exit "\${__pss:-2}"`
  );
}

/**
 * bash's start-up, `eval`ed on the first line of the script (after the probe): finds the
 * descriptor bash reads its script on (moved high, close-on-exec: commands do not inherit
 * it; 255 unless the descriptor limit is lower) and closes the launcher's copy, or, reading
 * stdin (a socket), reads that with `</dev/null` for each command; then starts the loop.
 */
function bashStart(stderrMarker: boolean, terminal: boolean): string {
  return (
    `case \${${FD3_VARIABLE}-0} in 1) __psfd=255; ` +
    'while \\builtin [ "$__psfd" -gt 3 ] && ! \\builtin [ /dev/fd/$__psfd -ef /dev/fd/3 ]; ' +
    'do __psfd=$((__psfd - 1)); done; ' +
    `\\builtin [ "$__psfd" -gt 3 ] && exec 3<&-; __psl=${quote(bashLoop(stderrMarker, '', terminal))};; ` +
    `*) __psfd=0; __psl=${quote(bashLoop(stderrMarker, STDIN_REDIRECT, terminal))};; esac; ` +
    `\\builtin unset ${FD3_VARIABLE}; \\builtin eval "$__psl"`
  );
}

/**
 * How the framing names `eval`, `printf` and `false` so that no alias or function captures
 * them. Both words are quoted in bash and zsh: zsh's global aliases expand in any position.
 */
interface Dialect {
  readonly eval: string;
  readonly printf: string;
  readonly false: string;
}
const BUILTIN_DIALECT: Dialect = {
  eval: '\\builtin \\eval',
  printf: '\\builtin \\printf',
  false: '\\builtin \\false',
};
const POSIX_DIALECT: Dialect = {
  eval: '\\command \\eval',
  printf: '\\command \\printf',
  false: '\\command \\false',
};

/**
 * What becomes of a POSIX command's stderr: `'capture'` (its own, cut exactly per run),
 * `'merge'` (`2>&1`: into stdout, in the order written), or `'drain'` (read and dropped).
 */
export type PosixStderr = 'capture' | 'merge' | 'drain';

export class PosixFraming implements Framing {
  readonly #stderr: PosixStderr;
  /** Interactive terminal (ShellOptions.pty.interactive): commands read the terminal. */
  readonly #terminal: boolean;
  /** Set by the probe when the shell cannot run on an interactive terminal (not bash). */
  #refusal: ProcsockError | null = null;
  #stderrMarker: boolean;
  /** The status of the last command run: the next one starts with it as `$?`. */
  #lastStatus: () => number | null = () => 0;
  /** Commands need `</dev/null` unless the start-up probe says the shell reads fd 3. */
  #redirect = STDIN_REDIRECT;
  #dialect: Dialect = POSIX_DIALECT;
  /** bash (the probe says): runs are data for its read–eval loop (BASH_LOOP). */
  #loop = false;
  #probe: SentinelScanner | null = null;

  /** `terminal`: an interactive terminal, the commands' stdin (bash only: see TERMINAL_SYNC). */
  constructor(stderr: PosixStderr = 'capture', terminal = false) {
    this.#stderr = stderr;
    this.#terminal = terminal;
    this.#stderrMarker = stderr === 'capture';
  }

  /**
   * With `pendingReads` (capture only) stderr gets no marker: the driver reads what is left in
   * the stderr pipe once it sees the stdout marker (`Frame.stderrUntilStdout`), which saves
   * the shell a write and the driver a wake-up per run.
   */
  setup(pendingReads: boolean): string {
    this.#stderrMarker = this.#stderr === 'capture' && !pendingReads;
    // One line with the probe (frame(null)), which starts bash's loop: its first line.
    return (
      (this.#stderr === 'merge' ? 'exec 2>&1;' : '') +
      (this.#stderrMarker ? `exec ${STDERR_COPY}>&2;` : '') +
      // `builtin` where there is one: bash and zsh let a function be called `return`.
      `${RESTORE_FUNCTION}() { \${BASH_VERSION+builtin}\${ZSH_VERSION+builtin} \\return "$1"; };` +
      "__pss=0 __psf='%s%s %s %s\\n' __psg='%s%s %s\\n';" +
      (this.#terminal ? '__pstty=$(\\command -p stty -g);' : '')
    );
  }

  /** See the top: given a pipe, the shell reads it as a script on fd 3; stdin is /dev/null. */
  launch(argv: readonly string[]): readonly string[] {
    const [program, ...args] = argv as [string, ...string[]];
    return [program, '-c', this.#terminal ? TERMINAL_LAUNCHER : LAUNCHER, program, ...args];
  }

  /**
   * The final command sees the last status as `$?`, as every command does; with none, `true`,
   * so a healthy shell stopped after `false` exits 0 (at end-of-file a shell exits with `$?`).
   */
  finalInput(command: string | undefined): string {
    if (this.#probe) this.#readProbe(this.#probe.payload);
    if (this.#loop)
      return this.#bashRun(
        freshMarker(PIECE_BYTES),
        freshMarker(PIECE_BYTES),
        command ?? 'true',
        BASH_FINAL_TAIL,
      );
    if (command === undefined) return 'true\n';
    return `${this.#restore()}${command.endsWith('\n') ? command : `${command}\n`}`;
  }

  /**
   * A run of bash's loop: the header (marker pieces, the status to restore, the kind), then the
   * command with its tail: in the block (`s`), after a length (`l`), or up to a NUL (`u`).
   */
  #bashRun(p1: string, p2: string, command: string, tail = BASH_TAIL): string {
    const status = Math.min(Math.max(this.#lastStatus() ?? 0, 0), 255);
    // On an interactive terminal a NUL first: where the driver's bytes start (TERMINAL_SYNC).
    const header = `${this.#terminal ? '\0' : ''}${p1}${p2}${String(status).padStart(3, '0')}`;
    const text = closeContinuation(command) + tail;
    const room = BASH_BLOCK - BASH_HEADER;
    if (NON_ASCII.test(text)) return `${header}u${''.padEnd(room)}${text}\0`;
    if (text.length <= room) return `${header}s${text.padEnd(room)}`;
    return `${header}l${String(text.length).padStart(room)}${text}`;
  }

  frame(command: string | null): Frame {
    if (this.#probe) this.#readProbe(this.#probe.payload);
    if (command?.includes('\0')) {
      throw new ArgumentError(
        'a shell command cannot contain a NUL byte (no shell can pass one on)',
      );
    }
    const p1 = freshMarker(PIECE_BYTES);
    const p2 = freshMarker(PIECE_BYTES);
    const { printf } = command === null ? POSIX_DIALECT : this.#dialect;
    // The stdout report comes last, so that nothing the shell does for the line (a DEBUG trap,
    // a trace) lands after it. With a stderr marker, that one carries eval's status.
    const toStderr = this.#stderrMarker
      ? `${printf} "$__psg" ${p1} ${p2} "$?" >&${STDERR_COPY};`
      : '';
    const evalStatus = this.#stderrMarker ? '' : ' "$?"';
    const input =
      command === null
        ? // The probe: whether fd 3 is read, and which shell this is. bash (4.1 or newer: its
          // loop needs `read -N`) starts its loop, whose first report is the probe's; other
          // shells print it, and close the launcher's copy of the driver's pipe (commands must
          // not inherit it).
          `case \${BASH_VERSION-} in ''|[0-3].*|4.0*) ` +
          `${toStderr}${printf} '%s%s %s %s %s\\n' ${p1} ${p2} 0 "\${${FD3_VARIABLE}-0}" ` +
          `"\${BASH_VERSION+bash-old}\${ZSH_VERSION+zsh}"; \\unset ${FD3_VARIABLE}; exec 3<&-;; ` +
          // printf joins the marker: a trace (SHELLOPTS=xtrace) shows it in pieces.
          `*) \\builtin printf -v __psh %s%s ${p1} ${p2}; __pss="\${${FD3_VARIABLE}-0} bash"; ` +
          `\\builtin eval ${quote(bashStart(this.#stderrMarker, this.#terminal))};; esac\n`
        : this.#loop
          ? this.#bashRun(p1, p2, command)
          : `${this.#restore()}${this.#dialect.eval} ${quote(`${closeContinuation(command)}\n__pss=$?`)}${this.#redirect}` +
            // The copy of stderr is the driver's: the command does not inherit it.
            `${this.#stderrMarker ? ` ${STDERR_COPY}>&-` : ''};` +
            `${toStderr}${printf} "$__psf" ${p1} ${p2}${evalStatus} "$__pss"\n`;
    const marker = p1 + p2;
    const stdout = new SentinelScanner(`${marker} `, { trailer: true });
    const stderr = this.#stderrMarker ? new SentinelScanner(`${marker} `, { trailer: true }) : null;
    const exitCode = () =>
      runStatus(stderr ? `${stderr.payload} ${stdout.payload}` : stdout.payload);
    // A new shell (the start-up probe) starts at 0; then each command's status carries over.
    this.#lastStatus = command === null ? () => 0 : exitCode;
    if (command === null) {
      this.#probe = stdout;
      this.#refusal = null;
      this.#redirect = STDIN_REDIRECT;
      this.#dialect = POSIX_DIALECT;
      this.#loop = false;
    }
    return {
      input,
      stdout,
      stderr,
      stderrUntilStdout: this.#stderr === 'capture' && !this.#stderrMarker,
      exitCode,
    };
  }

  /**
   * How the shell reads its commands (fd 3: 1 or 0) and which it is: "0 <fd3> <kind>" from the
   * probe's printf (kind: zsh, bash-old, or empty), "[<eval status>] <fd3> bash" from the first
   * report of bash's loop.
   */
  #readProbe(payload: string): void {
    const words = payload.split(' ');
    const at = words.findIndex((word) => word === 'bash' || word === 'bash-old' || word === 'zsh');
    const kind = at > 0 ? words[at] : '';
    this.#redirect = (at > 0 ? words[at - 1] : words[1]) === '1' ? '' : STDIN_REDIRECT;
    this.#dialect = kind === '' ? POSIX_DIALECT : BUILTIN_DIALECT;
    this.#loop = kind === 'bash';
    this.#probe = null;
    if (this.#terminal && !this.#loop) {
      this.#refusal = new ArgumentError(
        `pty.interactive: the POSIX preset gives commands the terminal with bash only (this shell is ${kind || 'not bash'}: it would read the input typed for a command ahead, as its own script)`,
      );
    }
  }

  /** After the start-up probe: why this shell cannot run as asked, or null. */
  refusal(): ProcsockError | null {
    if (this.#probe) this.#readProbe(this.#probe.payload);
    return this.#refusal;
  }

  /**
   * After the report `$?` is 0: a command that follows a failed one gets its status back —
   * 1, the usual one, from `false` (no function: a RETURN trap under `set -T` stays quiet).
   */
  #restore(): string {
    const status = this.#lastStatus() ?? 0;
    if (status === 0) return '';
    return status === 1 ? `${this.#dialect.false}||` : `\\${RESTORE_FUNCTION} \\${status}||`;
  }
}

/**
 * "<eval's status> <the command's status>": the second, unless the evaluated text stopped
 * before recording it (a syntax error), which `eval`'s own status then says.
 */
function runStatus(payload: string): number | null {
  const [evalStatus, status] = payload.split(' ').map((word) => Number.parseInt(word, 10));
  if (evalStatus === undefined || !Number.isInteger(evalStatus)) return null;
  if (evalStatus !== 0) return evalStatus;
  return status !== undefined && Number.isInteger(status) ? status : null;
}

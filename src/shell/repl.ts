/**
 * The REPL presets: Python, Node and SQLite, with the POSIX preset's guarantees — a fresh
 * marker per run that the program's output cannot forge, stderr per run, a status per run
 * where the program has one, multi-line input, a clear error on a syntax error, no hang.
 *
 * Python and Node: a small driver program of ours (`python3 -c …`, `node -e …`), not the
 * interactive REPL. A REPL decides where a block ends by itself (Python's closing blank
 * line, Node's "…" continuation), echoes prompts, and shares stdin with the code it runs;
 * the driver instead gets each command whole, as `<marker> <byte length>\n<code>`, on
 * descriptor 3 (the launcher moves the driver's pipe there; stdin is /dev/null, so `input()`
 * or `process.stdin` get end-of-file instead of the next command). It compiles the whole
 * text at once (a syntax error is that run's error, with the interpreter's own message),
 * runs it in one global scope kept between runs, shows the value of a last expression as the
 * REPL would, prints an exception's traceback on stderr with status 1, and then writes
 * `<marker>\n` on stderr and `<marker> <status>\n` on stdout. The marker travels only on
 * descriptor 3; the code never sees it.
 *
 * SQLite: the `sqlite3` shell itself (its dot-commands are the point), which prints no prompt
 * when its stdin is not a terminal. Each command is sent as its text, a newline (ending a
 * trailing `-- comment`), a lone `;` (ending a statement left open; an empty statement
 * after a complete one does nothing), and `.print "P1" "P2"`: the marker in two pieces that
 * `.print` joins with a space, so `.echo on` shows the pieces, never the marker. Through a
 * daemon the stderr marker is `.shell echo P1P2 >&2` (a process per run; run locally, the
 * driver reads the stderr pipe when the stdout marker arrives). sqlite3 reports no status, so
 * a run's `exitCode` is null; errors are on that run's stderr. A command ending inside a
 * string, a quoted name or a block comment would swallow the marker, so it is refused before
 * it is sent (ArgumentError).
 */

import type { ExitStatus } from '../core/output.js';
import { ArgumentError } from '../errors.js';
import type { Frame, Framing } from './framing.js';
import { freshMarker } from './framing.js';
import { SentinelScanner } from './sentinel.js';

/** Moves the driver's pipe to fd 3 and gives the program /dev/null as stdin. */
const FD3_LAUNCHER = 'exec "$0" "$@" 3<&0 </dev/null';
/** An interactive terminal (ShellOptions.pty.interactive): fd 3 is a copy; stdin stays the terminal. */
const TERMINAL_LAUNCHER = 'exec "$0" "$@" 3<&0';

const PYTHON_DRIVER = String.raw`
import ast, os, sys, traceback
def main(terminal):
    requests = os.fdopen(3, 'rb', buffering=0 if terminal else -1)
    out, err = os.dup(1), os.dup(2)
    scope = {'__name__': '__main__', '__builtins__': __builtins__}
    if terminal:
        import termios
        modes = termios.tcgetattr(3)
    def until(end):
        data = bytearray()
        while True:
            byte = requests.read(1)
            if not byte or byte == end:
                return bytes(data) if byte else None
            data += byte
    def exactly(length):
        data = bytearray()
        while len(data) < length:
            piece = requests.read(length - len(data))
            if not piece:
                break
            data += piece
        return bytes(data)
    while True:
        if terminal:
            # Input typed for the last run and not read: dropped up to the NUL the driver sends first.
            if until(b'\0') is None:
                return
            header = until(b'\n')
            if header is None:
                return
            marker, length = header.split()
            code = exactly(int(length)).decode('utf-8', 'replace')
        else:
            header = requests.readline()
            if not header:
                return
            marker, length = header.split()
            code = requests.read(int(length)).decode('utf-8', 'replace')
        status = 0
        try:
            tree = ast.parse(code, '<procsock>', 'exec')
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, '<procsock>', 'exec'), scope)
            if last is not None:
                exec(compile(ast.Interactive([last]), '<procsock>', 'single'), scope)
        except SystemExit:
            raise
        except BaseException as error:
            # Not the driver's own frame; a syntax error has its own report.
            tb = None if isinstance(error, SyntaxError) else error.__traceback__.tb_next
            traceback.print_exception(type(error), error, tb)
            status = 1
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        if terminal:
            try:
                termios.tcsetattr(3, termios.TCSANOW, modes)  # what a program changed
            except termios.error:
                pass
        os.write(err, marker + b'\n')
        os.write(out, marker + b' ' + str(status).encode() + b'\n')
`;

const NODE_DRIVER = String.raw`
const fs = require('node:fs'), net = require('node:net'), util = require('node:util'), vm = require('node:vm');
globalThis.require = require;
const report = (error) => process.stderr.write(clean(error) + '\n');
const clean = (error) => String(error && error.stack || error).split('\n')
  .filter((line) => !/\((node:vm|node:internal|\[eval\])|at (node:vm|\[eval\])|^\s+at \[eval\]/.test(line)).join('\n');
process.on('uncaughtException', report);
process.on('unhandledRejection', report);
const requests = new net.Socket({ fd: 3, readable: true, writable: false });
let pending = Buffer.alloc(0), running = Promise.resolve(), ended = false;
requests.on('data', (data) => {
  pending = Buffer.concat([pending, data]);
  for (;;) {
    const newline = pending.indexOf(10);
    if (newline < 0) return;
    const [marker, length] = pending.subarray(0, newline).toString().split(' ');
    const end = newline + 1 + Number(length);
    if (pending.length < end) return;
    const code = pending.subarray(newline + 1, end).toString();
    pending = pending.subarray(end);
    running = running.then(() => run(marker, code));
  }
});
requests.on('end', () => running.then(() => process.exit(0)));
async function run(marker, code) {
  let status = 0;
  try {
    let value = vm.runInThisContext(code, { filename: '<procsock>' });
    if (value && typeof value.then === 'function') value = await value;
    if (value !== undefined) process.stdout.write(util.inspect(value) + '\n');
  } catch (error) {
    report(error);
    status = 1;
  }
  fs.writeSync(2, marker + '\n');
  fs.writeSync(1, marker + ' ' + status + '\n');
  // Code that closed descriptor 3 took the requests' pipe away under the socket, which then
  // waits for ever: end, so the next run fails at once (ShellCrashError) instead of hanging.
  try { fs.fstatSync(3); } catch {
    fs.writeSync(2, 'procsock: a run closed descriptor 3, which carries the requests: the shell cannot go on\n');
    process.exit(70);
  }
}
`;

/** Python and Node: the driver program reads `<marker> <length>\n<code>` requests on fd 3. */
export class DriverFraming implements Framing {
  readonly #driverArgs: readonly string[];
  /** An interactive terminal: stdin stays the terminal; each request starts with a NUL. */
  readonly #terminal: boolean;

  /** `driverArgs`: how the program runs the driver, e.g. `['-c', PYTHON_DRIVER]`. */
  constructor(driverArgs: readonly string[], terminal = false) {
    this.#driverArgs = driverArgs;
    this.#terminal = terminal;
  }

  /**
   * `terminal`: on an interactive terminal (ShellOptions.pty.interactive) the driver reads its
   * requests unbuffered, so that what is typed for a run stays on the terminal for the run's
   * code (`input()`), drops what a run left unread up to the NUL sent before each request, and
   * puts back the terminal's modes after each run.
   */
  static python(terminal = false): DriverFraming {
    return new DriverFraming(
      ['-u', '-c', `${PYTHON_DRIVER}main(${terminal ? 'True' : 'False'})\n`],
      terminal,
    );
  }

  static node(): DriverFraming {
    return new DriverFraming(['-e', NODE_DRIVER]);
  }

  launch(argv: readonly string[]): readonly string[] {
    const [program, ...args] = argv as [string, ...string[]];
    const launcher = this.#terminal ? TERMINAL_LAUNCHER : FD3_LAUNCHER;
    return ['sh', '-c', launcher, program, ...args, ...this.#driverArgs];
  }

  /** The driver always marks stderr too (simpler than telling it; a REPL run costs more). */
  setup(): string {
    return '';
  }

  frame(command: string | null): Frame {
    const marker = freshMarker();
    const code = command ?? '';
    const input = `${this.#terminal ? '\0' : ''}${marker} ${Buffer.byteLength(code)}\n${code}`;
    const stdout = new SentinelScanner(`${marker} `, { trailer: true });
    return {
      input,
      stdout,
      stderr: new SentinelScanner(`${marker}\n`),
      exitCode: () => {
        const status = Number.parseInt(stdout.payload, 10);
        return Number.isInteger(status) ? status : null;
      },
    };
  }

  /** A final command (e.g. `exit(3)`) runs as any other; then end-of-file ends the driver. */
  finalInput(command: string | undefined): string {
    return command === undefined ? '' : this.frame(command).input;
  }
}

/** The `sqlite3` shell, marker by `.print`; see the top. */
export class SqliteFraming implements Framing {
  #stderrMarker = true;

  launch(argv: readonly string[]): readonly string[] {
    return argv;
  }

  setup(pendingReads: boolean): string {
    this.#stderrMarker = !pendingReads;
    return '';
  }

  frame(command: string | null): Frame {
    if (command !== null) checkSqlComplete(command);
    const p1 = freshMarker(9);
    const p2 = freshMarker(9);
    const body = command === null ? '' : `${command}\n;\n`;
    const toStderr = this.#stderrMarker ? `.shell echo ${p1}${p2} >&2\n` : '';
    return {
      input: `${body}${toStderr}.print "${p1}" "${p2}"\n`,
      stdout: new SentinelScanner(`${p1} ${p2}\n`),
      stderr: this.#stderrMarker ? new SentinelScanner(`${p1}${p2}\n`) : null,
      stderrUntilStdout: !this.#stderrMarker,
      exitCode: () => null,
    };
  }

  finalInput(command: string | undefined): string {
    return command === undefined ? '' : `${command}\n`;
  }

  /** sqlite3 in batch mode exits 1 at the end of its input after any error, even on `.exit 0`. */
  cleanStop(status: ExitStatus | null): boolean {
    return status?.exitCode === 1;
  }
}

/**
 * Refuses SQL that ends inside a string ('…'), a quoted name ("…", `…`, […]) or a block
 * comment: sqlite3 would keep reading, the marker would become part of it, and the run
 * would hang until its timeout.
 */
export function checkSqlComplete(command: string): void {
  const sql = `\n${command}`; // so that a first line starting with a dot is a dot-command
  let i = 0;
  const at = (what: string) => {
    throw new ArgumentError(
      `this SQL ends inside ${what}; sqlite3 would wait for the rest (close it and run it again)`,
    );
  };
  while (i < sql.length) {
    const c = sql[i]!;
    if (c === "'" || c === '"' || c === '`' || c === '[') {
      const close = c === '[' ? ']' : c;
      const end = sql.indexOf(close, i + 1);
      if (end < 0) at(c === "'" ? 'a string literal' : 'a quoted name');
      i = end + 1; // a doubled quote is two strings back to back: the same result
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? sql.length : end + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      if (end < 0) at('a /* comment');
      i = end + 2;
    } else if (c === '\n' && sql[i + 1] === '.') {
      // A dot-command line: its quoting is its own.
      const end = sql.indexOf('\n', i + 1);
      i = end < 0 ? sql.length : end;
    } else {
      i++;
    }
  }
}

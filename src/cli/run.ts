/**
 * `procsock run [OPTIONS] [--] PROG ARGS…`: runs one program, locally or through the daemon,
 * with its stdout and stderr streamed to ours as they come, and exits as the program did.
 *
 * Stdin: `--stdin-file F` feeds F; otherwise our stdin is forwarded when it is a pipe or a
 * file, and the program gets an empty stdin when ours is a terminal (the daemon gives its
 * programs pipes, not a terminal, so forwarding one would only half work; pipe into
 * `procsock run` to feed it, e.g. `printf 'a\nb\n' | procsock run -- sort`).
 *
 * Exit status: the program's, or 128 + n when it was killed by signal n (as a shell does);
 * 100 usage error; 111 cannot connect to the daemon; 124 the program ran past `--timeout`
 * or sent no output for `--idle-timeout` (it was stopped); 125 any other failure of procsock. When procsock itself gets SIGINT,
 * SIGTERM or SIGHUP it stops the program and exits 128 + that signal; when its stdout is a
 * closed pipe (`procsock run -- yes | head -1`) it stops the program and exits 141 (SIGPIPE).
 *
 * `--pty`: the program gets a terminal (stdin and stdout; stderr stays its own pipe), sized as
 * ours when our stdout is one (else 80x24, or `--columns`/`--rows`). When our stdin is a
 * terminal it is forwarded in raw mode, keystroke by keystroke, so the program's terminal
 * does the echo, line editing and ^C (as `ssh -t`); a pipe or file is forwarded as without
 * `--pty` and its end is typed as the terminal's end-of-file character. The window is not
 * resized after the start.
 */
import { closeSync, createReadStream, fstatSync, openSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { reaperAvailable } from '../channel/contain.js';
import { run } from '../client/index.js';
import { signalNumber } from '../core/signals.js';
import { describeError, TimeoutError } from '../errors.js';
import { drainOrClose } from '../util/drain.js';
import {
  EXIT_CONNECT,
  EXIT_FAILURE,
  EXIT_TIMEOUT,
  EXIT_USAGE,
  failureStatus,
  parseCommandArgs,
  parseCommandLine,
  parseMilliseconds,
  shellStatus,
  socketOption,
  UsageError,
} from './usage.js';

export const RUN_USAGE =
  'usage: procsock run [--socket PATH] [--timeout MS] [--idle-timeout MS] [--stdin-file FILE] [--pty [--columns N] [--rows N]] [--no-contain] [--] PROG [ARGS…]';

export const RUN_HELP = `${RUN_USAGE}

Runs PROG with ARGS (never through a shell), through the procsock daemon listening on
PATH or, without a socket, as a child of this process. Its stdout and stderr are written to
this process's as they arrive; its exit status becomes this process's.

  -s, --socket PATH       the daemon's Unix socket (default: $PROCSOCK_SOCKET; unset: run locally)
  -t, --timeout MS        stop the program (exit ${EXIT_TIMEOUT}) when it has run for MS
                          milliseconds, as timeout(1); 0 = no limit (default 0). The
                          daemon's own deadline (procsock serve -t) applies too.
  --idle-timeout MS       stop the program (exit ${EXIT_TIMEOUT}) when it sends no output for MS
                          milliseconds; 0 = wait forever (default 0)
  -i, --stdin-file FILE   the program's stdin. Default: this process's stdin when it is a
                          pipe or a file; nothing (end of file at once) when it is a terminal
  --pty                   run PROG on a terminal of its own (stdin and stdout; stderr stays a
                          pipe): this process's terminal, if stdin is one, is forwarded raw
  --columns N, --rows N   the terminal's size with --pty (default: this process's terminal's,
                          else 80x24)
  --no-contain            locally: let what PROG started in the background outlive its stop
                          (default: contained where procsock_reaper is built — a timeout or
                          Ctrl-C stops every process PROG started, as a daemon's run); a
                          daemon decides containment itself, so not with --socket
  -h, --help              print this help and exit

Examples:
  procsock run -- uname -a                          # locally
  procsock run --socket /run/procsock.sock -- uname -a
  echo hello | procsock run -s /run/procsock.sock -- cat
  procsock run --stdin-file script.sh -- bash -s    # feed a file
  procsock run --idle-timeout 5000 -- tail -f /var/log/syslog
  procsock run --timeout 600000 -- make
  procsock run --pty -- python3                     # an interactive REPL, on a terminal

Exit status: the program's, or 128+n when signal n killed it (143 for TERM);
${EXIT_USAGE} usage error; ${EXIT_CONNECT} cannot connect to the daemon; ${EXIT_TIMEOUT} timeout; ${EXIT_FAILURE} other failure.`;

export interface RunCommand {
  argv: string[];
  socket: string | undefined;
  /** Wall-clock limit in ms (0 = none). */
  timeout: number;
  /** Longest wait for output in ms (0 = none). */
  idleTimeout: number;
  stdinFile: string | undefined;
  /** `--pty`: the terminal's size (columns/rows undefined: ours, or 80x24), else null. */
  pty: { columns: number | undefined; rows: number | undefined } | null;
  /** Locally: contain the run (false: `--no-contain`). */
  contain: boolean;
}

/** Parses `run`'s arguments; `'help'` for --help; throws `UsageError` with a one-line reason. */
export function parseRunArgs(args: string[]): RunCommand | 'help' {
  const { values, command } = parseCommandArgs<{
    socket?: string;
    timeout?: string;
    'idle-timeout'?: string;
    'stdin-file'?: string;
    pty?: boolean;
    columns?: string;
    rows?: string;
    'no-contain'?: boolean;
    help?: boolean;
  }>(args, {
    socket: { type: 'string', short: 's' },
    timeout: { type: 'string', short: 't' },
    'idle-timeout': { type: 'string' },
    'stdin-file': { type: 'string', short: 'i' },
    pty: { type: 'boolean' },
    columns: { type: 'string' },
    rows: { type: 'string' },
    'no-contain': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) return 'help';
  if (command.length === 0 || command[0] === '') throw new UsageError('missing PROG to run');
  if (values['stdin-file'] === '') throw new UsageError('--stdin-file: the path must not be empty');
  if (!values.pty && (values.columns !== undefined || values.rows !== undefined)) {
    throw new UsageError(`--${values.columns === undefined ? 'rows' : 'columns'}: only with --pty`);
  }
  const socket = socketOption(values.socket);
  if (values['no-contain'] && socket !== undefined) {
    throw new UsageError('--no-contain: only locally (a daemon decides containment itself)');
  }
  return {
    argv: command,
    socket,
    timeout: values.timeout === undefined ? 0 : parseMilliseconds('--timeout', values.timeout),
    idleTimeout:
      values['idle-timeout'] === undefined
        ? 0
        : parseMilliseconds('--idle-timeout', values['idle-timeout']),
    stdinFile: values['stdin-file'],
    pty: values.pty
      ? { columns: side('--columns', values.columns), rows: side('--rows', values.rows) }
      : null,
    contain: !values['no-contain'],
  };
}

/** A terminal's side: 1 to 65535 characters. */
function side(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(value >= 1 && value <= 65_535)) {
    throw new UsageError(
      `${flag}: expected a whole number from 1 to 65535, not ${JSON.stringify(text)}`,
    );
  }
  return value;
}

/** Runs `procsock run ARGS…`; resolves with the exit status. */
export async function main(args: string[]): Promise<number> {
  const command = parseCommandLine('run', RUN_USAGE, () => parseRunArgs(args));
  if (typeof command === 'number') return command;
  if (command === 'help') {
    process.stdout.write(`${RUN_HELP}\n`);
    return 0;
  }
  let stdin: Readable | null;
  try {
    stdin = openStdin(command.stdinFile, command.pty !== null);
  } catch (error) {
    process.stderr.write(`procsock run: --stdin-file: ${describeError(error)}\n`);
    return EXIT_FAILURE;
  }
  return runProgram(command, stdin);
}

function openStdin(file: string | undefined, pty: boolean): Readable | null {
  // Opened now, so that a missing file is reported before anything starts.
  if (file !== undefined) {
    const fd = openSync(file, 'r');
    // A directory opens, and fails only at the first read, with the program already started.
    if (fstatSync(fd).isDirectory()) {
      closeSync(fd);
      throw new Error(`${file} is a directory`);
    }
    return createReadStream('', { fd });
  }
  // Our terminal goes to the program's only when it has one: keystrokes, raw (see the top).
  return process.stdin.isTTY && !pty ? null : process.stdin;
}

/** run()'s `pty` for `--pty`: the size given, else our terminal's, else the default. */
function terminalOption(pty: RunCommand['pty']) {
  if (!pty) return undefined;
  const ours = process.stdout.isTTY ? process.stdout : null;
  const columns = pty.columns ?? ours?.columns;
  const rows = pty.rows ?? ours?.rows;
  return { ...(columns ? { columns } : {}), ...(rows ? { rows } : {}) };
}

async function runProgram(command: RunCommand, stdin: Readable | null): Promise<number> {
  const controller = new AbortController();
  let stopStatus: number | null = null;
  const stop = (status: number) => {
    stopStatus ??= status;
    controller.abort();
  };
  const onSignal = (signal: NodeJS.Signals) => stop(128 + (signalNumber(signal) ?? 0));
  const onOutputError = () => stop(128 + (signalNumber('PIPE') ?? 13));
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const signal of signals) process.on(signal, onSignal);
  process.stdout.on('error', onOutputError);
  process.stderr.on('error', onOutputError);
  // Our terminal, forwarded to the program's: raw, so that its terminal echoes and edits.
  const raw = command.pty && stdin === process.stdin && process.stdin.isTTY;
  if (raw) process.stdin.setRawMode(true);
  try {
    const result = await run(command.argv, {
      socket: command.socket,
      stdin,
      stdout: (chunk) => forward(process.stdout, chunk),
      stderr: (chunk) => forward(process.stderr, chunk),
      encoding: 'buffer',
      timeout: command.timeout,
      idleTimeout: command.idleTimeout,
      signal: controller.signal,
      protocol: wireProtocol(command),
      ...(command.pty ? { pty: terminalOption(command.pty) } : {}),
      // Stopped like timeout(1) stops it, but with everything it started (`sleep 60 &`,
      // setsid children): SPEC §0.5. Without the reaper only the program is stopped.
      ...(command.socket === undefined && command.contain && reaperAvailable()
        ? { contain: true }
        : {}),
    });
    return stopStatus ?? shellStatus(result);
  } catch (error) {
    if (stopStatus !== null) return stopStatus;
    const message = !(error instanceof TimeoutError)
      ? describeError(error)
      : error.option === 'timeout'
        ? `${command.argv[0]} did not finish within ${command.timeout} ms and was stopped (raise --timeout; 0 = none)`
        : `${command.argv[0]} sent no output for ${command.idleTimeout} ms and was stopped (raise --idle-timeout; 0 = none)`;
    process.stderr.write(`procsock run: ${message}\n`);
    return failureStatus(error);
  } finally {
    if (raw) process.stdin.setRawMode(false);
    for (const signal of signals) process.off(signal, onSignal);
    // Our stdin may still be open (the program did not read it all): stop reading, or this
    // process would wait for its writer to close it before exiting.
    stdin?.destroy();
  }
}

/**
 * Through a daemon: the plain protocol unless a flag needs more. Our own signals (Ctrl-C,
 * TERM, HUP) stop the program by a hang-up, as sockexec's own clients do, which every daemon
 * answers with TERM, then KILL: we exit 128+n at once either way, so the extension would only
 * have us wait for the program's end, and against a plain daemon (the C sockexec) it would
 * cost a refused connection per run (a process remembers a refusal, but each run is a process
 * of its own). `--timeout`/`--idle-timeout` do use it where the daemon speaks it (the daemon
 * then enforces the limit and reports the end), and `--pty` needs it.
 */
function wireProtocol(command: RunCommand): 'auto' | 'plain' {
  return command.timeout > 0 || command.idleTimeout > 0 || command.pty ? 'auto' : 'plain';
}

/** Writes a chunk; while the terminal or pipe is full, the program is held back. */
function forward(stream: Writable, chunk: Buffer): Promise<void> | undefined {
  if (stream.destroyed || stream.write(chunk)) return undefined;
  return drainOrClose(stream);
}

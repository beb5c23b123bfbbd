/**
 * `procsock shell [OPTIONS] [--] PROG [ARGS…]`: keeps one PROG running (locally or through the
 * daemon) and runs each line read from stdin as one command in it, printing the command's
 * output as it comes and then its exit status, `[exit N]`, on stdout. From a terminal it
 * prompts; from a pipe it runs a script (`procsock shell -- bash < script.sh`).
 *
 * sh, bash, dash and zsh get the POSIX preset (fresh sentinels per command, exit statuses).
 * Any other program needs a sentinel: a cheap command of its own and the line it prints
 * (`--sentinel-command`, `--sentinel-value`, `--terminator`); its statuses print `[done]`.
 *
 * Lines are gathered into whole commands (see complete.ts): for sh, bash, dash and zsh a
 * loop, a function, a here-document with its body (and a line ending with `\` continues);
 * for python3 and node a block, a function, a bracket or string left open, a method chain.
 * In the POSIX preset a command that is just `exit [N]` ends the shell, as typed into one. Each command's stdin is empty (`/dev/null`):
 * the lines on stdin are commands, never data.
 *
 * Exit status: at end of input, the last command's status (as `sh < script` does), 0 when it
 * is unknown; after `exit N`, N; 100 usage error; 111 cannot connect to the daemon; 124 a
 * command ran past `--timeout` (the shell was killed); 125 the shell died or another failure;
 * 128 + n when procsock gets signal n (SIGINT, SIGTERM, SIGHUP; Ctrl-C at the prompt).
 */
import { basename } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { signalNumber } from '../core/signals.js';
import { describeError, ShellCrashError, ShellExitError, ShellTimeoutError } from '../errors.js';
import { PassThroughCommander, Shell, type ShellOptions } from '../shell/index.js';
import { gatherer } from './complete.js';
import {
  EXIT_CONNECT,
  EXIT_FAILURE,
  EXIT_TIMEOUT,
  EXIT_USAGE,
  failureStatus,
  parseCommandArgs,
  parseCommandLine,
  parseMilliseconds,
  socketOption,
  UsageError,
} from './usage.js';

export const SHELL_USAGE =
  'usage: procsock shell [--socket PATH] [--timeout MS] [--sentinel-command CMD --sentinel-value VALUE [--terminator T]] [--] PROG [ARGS…]';

/** Programs that get the POSIX preset (by the name of the file, so /bin/bash counts). */
export const POSIX_SHELLS: ReadonlySet<string> = new Set(['sh', 'bash', 'dash', 'zsh']);
/** Programs with a REPL preset of their own (see Shell.python, Shell.node, Shell.sqlite). */
export const REPL_PRESETS: ReadonlyMap<string, 'python' | 'node' | 'sqlite'> = new Map([
  ['python', 'python'],
  ['python3', 'python'],
  ['node', 'node'],
  ['nodejs', 'node'],
  ['sqlite3', 'sqlite'],
] as const);

export const SHELL_HELP = `${SHELL_USAGE}

Starts PROG once (through the procsock daemon on PATH or, without a socket, as a child of
this process) and runs each line of stdin as one command in it: the command's output is
printed as it comes, then its exit status as "[exit N]". State (cwd, variables, logins…)
carries over from one command to the next. From a terminal it prompts; from a pipe it runs
the lines as a script. Lines are gathered into whole commands: for sh, bash, dash and zsh
a loop, a function, a here-document with its body (bash -n judges; a line ending with \\
continues on the next one; "exit [N]" ends the shell); for python3 and node a block (it
ends where the next statement starts, or at a blank line at a terminal), a function, an open
bracket or string, a method chain. Commands get an empty stdin: the lines are commands, never data.

PROG sh, bash, dash or zsh (the POSIX preset), python3, node or sqlite3 (their presets)
needs nothing more. Any other program needs a sentinel: a cheap command it understands and
the line that command prints. Write {marker} in both to get a fresh random marker for each
command, so no output can fake it.

  -s, --socket PATH            the daemon's Unix socket (default: $PROCSOCK_SOCKET; unset: local)
  -t, --timeout MS             longest run of one command in milliseconds, 0 = none (default 0);
                               past it the shell is killed and procsock exits ${EXIT_TIMEOUT}
      --sentinel-command CMD   (other programs) command printing the sentinel value on stdout
      --sentinel-value VALUE   (other programs) the line it prints
      --terminator T           (other programs) appended to each command, e.g. ";" for SQL
  -h, --help                   print this help and exit

Examples:
  procsock shell -- bash
  printf 'cd /tmp\\npwd\\nfalse\\necho $?\\n' | procsock shell --socket /run/procsock.sock -- sh
  procsock shell -- sqlite3 app.db
  procsock shell --sentinel-command "select '{marker}';" --sentinel-value '{marker}' --terminator ';' -- mydb

Exit status: the last command's status at end of input (0 if unknown); N after "exit N" or
when the shell ends itself with N (\`false || exit 4\`, \`set -e; false\`);
${EXIT_USAGE} usage error; ${EXIT_CONNECT} cannot connect; ${EXIT_TIMEOUT} timeout; ${EXIT_FAILURE} the shell died or other failure;
128+n when procsock gets signal n.`;

export interface ShellCommand {
  argv: string[];
  socket: string | undefined;
  timeout: number;
  /** Null for a preset. */
  sentinel: { command: string; value: string; terminator: string } | null;
  /** The preset, when there is no hand-written sentinel. */
  preset: 'posix' | 'python' | 'node' | 'sqlite' | null;
}

/** Parses `shell`'s arguments; `'help'` for --help; throws `UsageError` with a one-line reason. */
export function parseShellArgs(args: string[]): ShellCommand | 'help' {
  const { values, command } = parseCommandArgs<{
    socket?: string;
    timeout?: string;
    'sentinel-command'?: string;
    'sentinel-value'?: string;
    terminator?: string;
    help?: boolean;
  }>(args, {
    socket: { type: 'string', short: 's' },
    timeout: { type: 'string', short: 't' },
    'sentinel-command': { type: 'string' },
    'sentinel-value': { type: 'string' },
    terminator: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) return 'help';
  if (command.length === 0 || command[0] === '') {
    throw new UsageError('missing PROG, the shell to drive (e.g. bash)');
  }
  const sentinelCommand = values['sentinel-command'];
  const sentinelValue = values['sentinel-value'];
  const name = basename(command[0]!);
  const posix = POSIX_SHELLS.has(name);
  const repl = REPL_PRESETS.get(name);
  let sentinel: ShellCommand['sentinel'] = null;
  if (sentinelCommand !== undefined || sentinelValue !== undefined) {
    if (!sentinelCommand || !sentinelValue || sentinelValue.includes('\n')) {
      throw new UsageError(
        '--sentinel-command and --sentinel-value go together, both non-empty, the value one line',
      );
    }
    sentinel = {
      command: sentinelCommand,
      value: sentinelValue,
      terminator: values.terminator ?? '',
    };
  } else if (!posix && !repl) {
    throw new UsageError(
      `${command[0]} is not sh, bash, dash, zsh, python3, node or sqlite3: give --sentinel-command CMD and --sentinel-value VALUE, a cheap command of ${command[0]} and the line it prints (see procsock shell --help)`,
    );
  } else if (values.terminator !== undefined) {
    throw new UsageError('--terminator needs --sentinel-command (a preset makes its own)');
  }
  return {
    argv: command,
    socket: socketOption(values.socket),
    timeout: values.timeout === undefined ? 0 : parseMilliseconds('--timeout', values.timeout),
    sentinel,
    preset: sentinel ? null : posix ? 'posix' : (repl ?? null),
  };
}

/** Runs `procsock shell ARGS…`; resolves with the exit status. */
export async function main(args: string[]): Promise<number> {
  const command = parseCommandLine('shell', SHELL_USAGE, () => parseShellArgs(args));
  if (typeof command === 'number') return command;
  if (command === 'help') {
    process.stdout.write(`${SHELL_HELP}\n`);
    return 0;
  }
  return new ShellSession(command).drive();
}

function makeShell({ argv, socket, sentinel, preset }: ShellCommand): Shell {
  const [program, ...args] = argv as [string, ...string[]];
  const transport: ShellOptions['transport'] = socket === undefined ? 'local' : { socket };
  if (sentinel === null)
    return new Shell({ program, args, transport, sentinel: preset ?? 'posix' });
  const { command, value, terminator } = sentinel;
  const fresh = command.includes('{marker}') || value.includes('{marker}');
  return new Shell({
    program,
    args,
    transport,
    terminator,
    sentinel: fresh
      ? (marker) => ({
          command: command.replaceAll('{marker}', marker),
          value: value.replaceAll('{marker}', marker),
        })
      : { command, value },
  });
}

const START_TIMEOUT = 10_000;
const EXIT_LINE = /^\s*exit(?:\s+(\d+))?\s*;?\s*$/;

/** One run of `procsock shell`: the shell, the line reader, and how it all ends. */
class ShellSession {
  readonly #command: ShellCommand;
  readonly #shell: Shell;
  readonly #interactive = process.stdin.isTTY === true;
  readonly #lines: Interface;
  /** Made at once: readline drops the lines (and the end) read before an iterator exists. */
  readonly #lineIterator: AsyncIterableIterator<string>;
  /** Set when a signal ends the session: the status to exit with. */
  #stopStatus: number | null = null;
  /** Whether the last byte printed on stdout ended a line (the status goes on its own line). */
  #atLineStart = true;

  constructor(command: ShellCommand) {
    this.#command = command;
    this.#shell = makeShell(command);
    this.#lines = createInterface({
      input: process.stdin,
      output: this.#interactive ? process.stdout : undefined,
      terminal: this.#interactive,
      crlfDelay: Number.POSITIVE_INFINITY,
    });
    this.#lines.setPrompt(`${basename(command.argv[0]!)}> `);
    this.#lineIterator = this.#lines[Symbol.asyncIterator]();
  }

  async drive(): Promise<number> {
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    const onSignal = (signal: NodeJS.Signals) => this.#stop(128 + (signalNumber(signal) ?? 0));
    for (const signal of signals) process.on(signal, onSignal);
    // At a terminal prompt Ctrl-C is a key readline reads, not a signal.
    this.#lines.on('SIGINT', () => onSignal('SIGINT'));
    try {
      return await this.#drive();
    } finally {
      for (const signal of signals) process.off(signal, onSignal);
      this.#lines.close();
      process.stdin.destroy();
      await this.#shell.close();
    }
  }

  async #drive(): Promise<number> {
    try {
      await this.#shell.start(this.#command.timeout || START_TIMEOUT);
    } catch (error) {
      return this.#fail(error);
    }
    let lastStatus: number | null = null;
    this.#prompt();
    // Lines are gathered into whole commands (complete.ts): a loop, a function, a block.
    const { preset } = this.#command;
    const commands = gatherer(
      preset === 'posix' || preset === 'python' || preset === 'node' ? preset : null,
      this.#interactive,
    );
    const runAll = async (texts: string[]): Promise<number | null | 'end'> => {
      for (const text of texts) {
        if (this.#stopStatus !== null) return null;
        const status = await this.#runText(text, lastStatus);
        if (status === 'end') return 'end';
        if (status !== 'blank') lastStatus = status;
      }
      return null;
    };
    for await (const line of { [Symbol.asyncIterator]: () => this.#lineIterator }) {
      if (this.#stopStatus !== null) break;
      if ((await runAll(await commands.line(line))) === 'end') return this.#ended!;
      this.#prompt(commands.pending ? '> ' : undefined);
    }
    // Input ended inside a command: the program reports what is wrong with it.
    if (this.#stopStatus === null && (await runAll(commands.end())) === 'end') {
      return this.#ended!;
    }
    if (this.#stopStatus !== null) return this.#stopStatus;
    if (this.#interactive) process.stdout.write('\n');
    try {
      await this.#shell.stop(this.#command.timeout || START_TIMEOUT);
    } catch (error) {
      return this.#fail(error);
    }
    return lastStatus ?? 0;
  }

  /** Set with `'end'` from #runText: the status procsock exits with. */
  #ended: number | null = null;

  /**
   * Runs one whole command and prints its status: its exit status (null if unknown),
   * `'blank'` for nothing to run, or `'end'` when the session is over (see #ended).
   */
  async #runText(
    text: string,
    lastStatus: number | null,
  ): Promise<number | null | 'blank' | 'end'> {
    if (text.trim() === '') return 'blank';
    const end = (status: number) => {
      this.#ended = status;
      return 'end' as const;
    };
    const exit = this.#command.preset === 'posix' ? EXIT_LINE.exec(text) : null;
    if (exit)
      return end(await this.#exit(text, exit[1] === undefined ? lastStatus : Number(exit[1])));
    let status: number | null;
    try {
      status = (await this.#shell.run(this.#passThrough(text), this.#command.timeout)).exitCode;
    } catch (error) {
      // It ended itself (`quit`, `false || exit 4`, `set -e; false`): its status is ours.
      if (error instanceof ShellExitError) return end(0);
      if (
        error instanceof ShellCrashError &&
        error.exitCode !== null &&
        this.#stopStatus === null
      ) {
        return end(error.exitCode);
      }
      return end(this.#fail(error));
    }
    this.#printStatus(status);
    return status;
  }

  /** `exit [N]`: the shell ends with N (or the last status); that is procsock's status too. */
  async #exit(line: string, expected: number | null): Promise<number> {
    try {
      await this.#shell.stop(this.#command.timeout || START_TIMEOUT, line);
      return 0;
    } catch (error) {
      if (error instanceof ShellCrashError && expected !== null && this.#stopStatus === null) {
        return expected;
      }
      return this.#fail(error);
    }
  }

  #passThrough(command: string): PassThroughCommander {
    return new PassThroughCommander(command, {
      stdout: (chunk) => {
        if (chunk.length === 0) return;
        this.#atLineStart = chunk[chunk.length - 1] === 0x0a;
        process.stdout.write(chunk);
      },
      stderr: process.stderr,
    });
  }

  #printStatus(status: number | null): void {
    const text = status === null ? '[done]' : `[exit ${status}]`;
    process.stdout.write(`${this.#atLineStart ? '' : '\n'}${text}\n`);
    this.#atLineStart = true;
  }

  /** The prompt (`bash> `), or `> ` inside a command spanning lines. */
  #prompt(continuation?: string): void {
    if (!this.#interactive) return;
    this.#lines.setPrompt(continuation ?? `${basename(this.#command.argv[0]!)}> `);
    this.#lines.prompt();
  }

  #stop(status: number): void {
    this.#stopStatus ??= status;
    this.#lines.close();
    void this.#shell.close();
  }

  #fail(error: unknown): number {
    if (this.#stopStatus !== null) return this.#stopStatus;
    // The driver's advice to call start() again is for API users; here procsock just ends.
    const message = describeError(error).replace('; start() it again', '');
    process.stderr.write(`procsock shell: ${message}\n`);
    if (error instanceof ShellTimeoutError) return EXIT_TIMEOUT;
    const status = failureStatus(error);
    return status === EXIT_CONNECT || status === EXIT_TIMEOUT ? status : EXIT_FAILURE;
  }
}

/**
 * What the subcommands share: usage errors (exit 100, as sockexec), splitting options from
 * the program's argv, checking option values, and the exit statuses that tell procsock's
 * own failures apart from the program's.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { MAX_TIMER } from '../core/limits.js';
import { signalNumber } from '../core/signals.js';
import { ConnectError, TimeoutError, UsageError } from '../errors.js';

/** A usage error: one line on stderr, exit 100 (sockexec's). */
export const EXIT_USAGE = 100;

export { UsageError };

/**
 * Runs a subcommand's argument parser; a `UsageError` is printed as one line with the
 * usage, and becomes exit status 100 (returned instead of the parsed command).
 */
export function parseCommandLine<T>(name: string, usage: string, parse: () => T): T | number {
  try {
    return parse();
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`procsock ${name}: ${error.message} (${usage})\n`);
    return EXIT_USAGE;
  }
}

/** The daemon cannot be reached (no socket file, nobody listening, no permission). */
export const EXIT_CONNECT = 111;
/** The program sent no output within `--timeout` and was stopped (as `timeout(1)`). */
export const EXIT_TIMEOUT = 124;
/** Any other failure of procsock itself (connection lost, protocol error…). */
export const EXIT_FAILURE = 125;

type OptionTable = NonNullable<ParseArgsConfig['options']>;

/**
 * Parses `[OPTIONS…] [--] PROG ARGS…` with `table`: options end at `--` or at the first
 * word that is not an option, so `procsock run ls -l` works and `-l` stays the program's.
 * A bad option is a one-line `UsageError`. `V` is the shape of the parsed values.
 */
export function parseCommandArgs<V>(
  args: readonly string[],
  table: OptionTable,
): { values: V; command: string[] } {
  // The options whose value may be the next word (`--socket PATH`), from the table itself.
  const takesValue = new Set<string>();
  for (const [name, option] of Object.entries(table)) {
    if (option.type !== 'string') continue;
    takesValue.add(`--${name}`);
    if (option.short) takesValue.add(`-${option.short}`);
  }
  const { options, command } = splitCommand(args, takesValue);
  try {
    const { values } = parseArgs({
      args: options,
      options: table,
      strict: true,
      allowPositionals: false,
    });
    return { values: values as V, command };
  } catch (error) {
    throw usageError(error);
  }
}

/** `[OPTIONS…] [--] PROG ARGS…` into the two; `takesValue` names options followed by a value. */
function splitCommand(
  args: readonly string[],
  takesValue: ReadonlySet<string>,
): { options: string[]; command: string[] } {
  let index = 0;
  while (index < args.length) {
    const arg = args[index]!;
    if (arg === '--') return { options: args.slice(0, index), command: args.slice(index + 1) };
    if (!arg.startsWith('-') || arg === '-') break;
    index += takesValue.has(arg) ? 2 : 1;
  }
  return { options: args.slice(0, index), command: args.slice(index) };
}

/** A `parseArgs` error as a `UsageError`, its message made one line (some span three). */
export function usageError(error: unknown): UsageError {
  return new UsageError((error as Error).message.replace(/\s*\n\s*/g, ' '));
}

/** A number of milliseconds ≥ 0 (0 = no limit), as a flag's value. */
export function parseMilliseconds(flag: string, text: string): number {
  const value = Number(text);
  if (!/^[0-9]+$/.test(text) || value > MAX_TIMER) {
    throw new UsageError(`${flag}: expected whole milliseconds ≥ 0, got ${JSON.stringify(text)}`);
  }
  return value;
}

/** A shell's convention: the exit code, or 128 + n for a program killed by signal n. */
export function shellStatus(status: {
  exitCode: number | null;
  termSignal: string | null;
}): number {
  if (status.exitCode !== null) return status.exitCode;
  const number = status.termSignal === null ? undefined : signalNumber(status.termSignal);
  return number === undefined ? EXIT_FAILURE : 128 + number;
}

/** Exit status for one of procsock's own failures. */
export function failureStatus(error: unknown): number {
  if (error instanceof ConnectError) return EXIT_CONNECT;
  if (error instanceof TimeoutError) return EXIT_TIMEOUT;
  return EXIT_FAILURE;
}

/** The socket from `--socket`, else `$PROCSOCK_SOCKET`; none means "run locally". */
export function socketOption(flag: string | undefined): string | undefined {
  if (flag === '') throw new UsageError('--socket: the path must not be empty');
  return flag ?? (process.env.PROCSOCK_SOCKET || undefined);
}

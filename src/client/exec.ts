/**
 * ez-mode, after lua-resty-exec's `resty.exec`: an `exec` function bound to a target
 * (local children or a daemon socket) that holds defaults, and the one-call `run()`.
 *
 *     const exec = createExec({ socket: '/run/procsock.sock' });
 *     await exec('uname');                        // a program with no arguments
 *     await exec('bash', '-c', 'echo $PATH');     // an argv, as separate strings
 *     await exec(['cat'], { stdin: 'hi' });       // an argv array, with options
 *     await exec({ argv: ['cat'], stdin: 'hi' }); // everything in one options object
 *     exec.argv = ['uname', '-a']; await exec();  // defaults set beforehand
 *
 * Options are merged and checked by the one table (options.ts); the program is started
 * through the target's transport (channel/transport.ts); `execute.ts` runs the call.
 * Every call returns a promise and never throws: a bad argument rejects with `ArgumentError`.
 */

import { isTransport, resolveTransport, type Target } from '../channel/target.js';
import type { Transport } from '../channel/transport.js';
import { startChannel } from '../channel/transport.js';
import { DEFAULT_MAX_BUFFER, describeValue, hasDeadline } from '../core/limits.js';
import { ArgumentError } from '../errors.js';
import {
  type Encoding,
  type ExecResult,
  type ExecutionPlan,
  execute,
  type Output,
} from './execute.js';
import {
  addProgramOptions,
  CheckedDefaults,
  checkArgv,
  DEFAULT_IDLE_TIMEOUT,
  EXEC_OPTION_NAMES,
  EXEC_OPTIONS,
  type ExecOptionName,
  type ExecOptions,
  type ResolvedExecOptions,
  resolveExecOptions,
} from './options.js';

export type { ExecOptions } from './options.js';

/** Per-call options: the defaults, plus where to run and a signal that stops the program when aborted. */
export interface RunOptions<E extends Encoding = 'utf8'> extends ExecOptions<E> {
  /** Aborting stops the program; the call rejects with `AbortError`. */
  signal?: AbortSignal;
  /** Run through the daemon listening at this socket path (instead of locally / the exec's target). */
  socket?: string;
  /** Run through this transport (instead of locally / the exec's target). */
  transport?: Transport;
}

/** The per-call keys that are not exec defaults. */
const CALL_ONLY = ['signal', 'socket', 'transport'] as const;

/** An exec's defaults, one property per option of the table; `undefined` = the table's default. */
export type ExecDefaults<E extends Encoding> = {
  -readonly [K in ExecOptionName]: ExecOptions<E>[K] | undefined;
};

/** An ez-mode exec: call it to run a program; its properties are the defaults of every call. */
export interface Exec<E extends Encoding = 'utf8'> extends ExecDefaults<E> {
  <C extends Encoding = E>(options: RunOptions<C>): Promise<ExecResult<Output<C>>>;
  <C extends Encoding = E>(
    argv: readonly string[] | string,
    options?: RunOptions<C>,
  ): Promise<ExecResult<Output<C>>>;
  (...argv: string[]): Promise<ExecResult<Output<E>>>;
  /** Where programs run. */
  readonly transport: Transport;
}

/**
 * Creates an exec for a target: `'local'` (default), a daemon socket (`{ socket }` or its
 * path) or a transport. Throws `ArgumentError` at once for a bad target or default.
 */
export function createExec<E extends Encoding = 'utf8'>(
  target: Target = 'local',
  defaults: ExecOptions<E> = {},
): Exec<E> {
  const transport = resolveTransport(target);
  if (typeof defaults !== 'object' || defaults === null) {
    throw new ArgumentError(`defaults must be an options object; got ${describeValue(defaults)}`);
  }
  resolveExecOptions({}, defaults);
  // Its properties are checked when they change, not on every call (CheckedDefaults).
  let checked: CheckedDefaults;
  const exec = ((...args: unknown[]) => invoke(transport, checked, args)) as Exec<E>;
  Object.defineProperty(exec, 'transport', { value: transport, enumerable: true });
  for (const name of EXEC_OPTION_NAMES) {
    const value = (defaults as Record<string, unknown>)[name];
    (exec as unknown as Record<string, unknown>)[name] =
      value !== undefined ? value : EXEC_OPTIONS[name].default;
  }
  checked = new CheckedDefaults(exec as unknown as Record<string, unknown>);
  return exec;
}

/**
 * Runs one program and resolves with its result: `run(['uname', '-a'])` locally,
 * `run(['uname', '-a'], { socket })` through the daemon. Same call forms as an exec.
 */
export function run<E extends Encoding = 'utf8'>(
  argv: readonly string[] | string,
  options?: RunOptions<E>,
): Promise<ExecResult<Output<E>>>;
export function run<E extends Encoding = 'utf8'>(
  options: RunOptions<E>,
): Promise<ExecResult<Output<E>>>;
export function run(
  argvOrOptions: readonly string[] | string | RunOptions<Encoding>,
  options?: RunOptions<Encoding>,
): Promise<ExecResult<string | Buffer>> {
  const args = options === undefined ? [argvOrOptions] : [argvOrOptions, options];
  return invoke(null, {}, args);
}

/** One call: everything checked, then started through the transport. Never throws: rejects. */
async function invoke(
  target: Transport | null,
  defaults: Partial<Record<ExecOptionName, unknown>> | CheckedDefaults,
  args: unknown[],
): Promise<ExecResult<string | Buffer>> {
  const { argv: positional, options } = parseCall(args);
  const resolved = resolveExecOptions(defaults, options, CALL_ONLY);
  if (positional !== undefined && options.argv !== undefined) {
    throw new ArgumentError('argv given twice: both as arguments and as the argv option');
  }
  const argv = normaliseArgv(positional ?? resolved.argv);
  const { signal } = options;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new ArgumentError(`signal must be an AbortSignal; got ${describeValue(signal)}`);
  }
  const transport = callTransport(target, options);
  const launch = await transport.prepare({ signal });
  // Started and given its stdin in one synchronous step: for a daemon, argv and the stdin
  // known up front leave in one write.
  const request = {
    argv,
    protocol: resolved.protocol,
    timeout: resolved.timeout,
    ownStops: hasOwnStops(resolved, signal),
  };
  const channel = startChannel(launch, addProgramOptions(request, resolved), transport);
  return execute(channel, executionPlan(argv, resolved, signal));
}

/**
 * Whether the call may stop the program for a limit of its own — a `timeout`, an
 * `idleTimeout` or `maxBuffer` other than the defaults, an AbortSignal — so a daemon transport
 * should use the protocol extension where it can, and such a stop learn the program's end.
 * The defaults alone are safety nets that leave a call plain, byte for byte.
 */
function hasOwnStops(options: ResolvedExecOptions, signal: AbortSignal | undefined): boolean {
  const { timeout, idleTimeout, timeoutFatal, maxBuffer } = options;
  return (
    signal !== undefined ||
    hasDeadline(timeout) ||
    (timeoutFatal && hasDeadline(idleTimeout) && idleTimeout !== DEFAULT_IDLE_TIMEOUT) ||
    maxBuffer !== DEFAULT_MAX_BUFFER
  );
}

/** What `execute` needs of a call, in one object of a fixed shape (not a copy of every option). */
function executionPlan(
  argv: readonly string[],
  options: ResolvedExecOptions,
  signal: AbortSignal | undefined,
): ExecutionPlan {
  const { stdin, stdout, stderr, timeout, idleTimeout, timeoutFatal, maxBuffer, encoding } =
    options;
  return {
    argv,
    stdin,
    stdout,
    stderr,
    timeout,
    idleTimeout,
    timeoutFatal,
    maxBuffer,
    encoding,
    signal,
  };
}

/** The call's own `socket` or `transport`, else the exec's target, else a local child. */
function callTransport(target: Transport | null, options: RunOptions<Encoding>): Transport {
  const { socket, transport } = options;
  if (socket !== undefined && transport !== undefined) {
    throw new ArgumentError('give socket or transport, not both');
  }
  if (transport !== undefined) {
    if (!isTransport(transport)) {
      throw new ArgumentError(
        `transport must be a transport (an object with prepare()); got ${describeValue(transport)}`,
      );
    }
    return transport;
  }
  if (socket !== undefined) {
    if (typeof socket !== 'string' || socket === '') {
      throw new ArgumentError(`socket must be a socket path; got ${describeValue(socket)}`);
    }
    return resolveTransport({ socket });
  }
  return target ?? resolveTransport('local');
}

/** The call forms: (), (...strings), (argv[] | string, options?), (options), (...strings, options). */
function parseCall(args: unknown[]): { argv: unknown; options: RunOptions<Encoding> } {
  const last = args.at(-1);
  const withOptions = isOptionsObject(last);
  const options = withOptions ? last : {};
  const count = withOptions ? args.length - 1 : args.length;
  if (count === 0) return { argv: undefined, options };
  const first = args[0];
  if (count === 1 && (Array.isArray(first) || typeof first === 'string')) {
    return { argv: first, options };
  }
  const rest = withOptions ? args.slice(0, -1) : args;
  if (rest.every((arg) => typeof arg === 'string')) return { argv: rest, options };
  throw new ArgumentError(
    `call with strings (program and arguments), an argv array, and/or an options object; got ${rest.map(describeValue).join(', ')}`,
  );
}

function normaliseArgv(argv: unknown): readonly string[] {
  if (argv === undefined || argv === null) {
    throw new ArgumentError('no program to run: pass an argv, or set the exec’s argv default');
  }
  return checkArgv(typeof argv === 'string' ? [argv] : argv);
}

function isOptionsObject(value: unknown): value is RunOptions<Encoding> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    !(value instanceof Uint8Array)
  );
}

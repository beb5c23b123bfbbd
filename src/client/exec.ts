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
 * Every option is normalised and checked here, in one place; `execute.ts` runs the call.
 */
import { ArgumentError } from '../errors.js';
import {
  type Encoding,
  type ExecResult,
  type ExecutionPlan,
  execute,
  type Output,
  type OutputCallback,
  type StdinSource,
} from './execute.js';
import {
  checkArgv,
  describe,
  type LocalOptions,
  openChannel,
  type ResolvedTarget,
  resolveTarget,
  type Target,
} from './target.js';

export const DEFAULT_TIMEOUT = 60_000;

/** What an `exec` holds as defaults, and what each call may override. */
export interface ExecOptions<E extends Encoding = Encoding> extends LocalOptions {
  /** The program and its arguments; a single string is a program with no arguments. */
  argv?: readonly string[] | string;
  /** Data for the program's stdin, which is closed after it. Default: none (closed at once). */
  stdin?: StdinSource | null;
  /** Receives stdout chunks instead of collecting them. `null` collects again. */
  stdout?: OutputCallback<E> | null;
  /** Receives stderr chunks instead of collecting them. `null` collects again. */
  stderr?: OutputCallback<E> | null;
  /**
   * Longest wait in ms for the next piece of data — an output chunk, or streamed stdin the
   * program accepted; 0 = none. Default 60000.
   */
  timeout?: number;
  /** On timeout, stop the program and reject with `TimeoutError` (true, default) or keep waiting (false). */
  timeoutFatal?: boolean;
  /** `'utf8'` (default): output as strings. `'buffer'`: output as Buffers, byte for byte. */
  encoding?: E;
}

/** Per-call options: the defaults, plus a signal that stops the program when aborted. */
export interface RunOptions<E extends Encoding = Encoding> extends ExecOptions<E> {
  signal?: AbortSignal;
}

/** The one-call `run()` options: a per-call `RunOptions`, plus where to run. */
export interface RunTargetOptions<E extends Encoding = Encoding> extends RunOptions<E> {
  /** Daemon socket path; without it the program runs locally. */
  socket?: string;
}

/** An ez-mode exec: call it to run a program; its properties are the defaults of every call. */
export interface Exec<E extends Encoding = 'utf8'> {
  <C extends Encoding = E>(options: RunOptions<C>): Promise<ExecResult<Output<C>>>;
  <C extends Encoding = E>(
    argv: readonly string[] | string,
    options?: RunOptions<C>,
  ): Promise<ExecResult<Output<C>>>;
  (...argv: string[]): Promise<ExecResult<Output<E>>>;
  /** Where programs run: `{ kind: 'local' }` or `{ kind: 'socket', path }`. */
  readonly target: ResolvedTarget;
  argv: readonly string[] | string | undefined;
  stdin: StdinSource | null | undefined;
  stdout: OutputCallback<E> | null | undefined;
  stderr: OutputCallback<E> | null | undefined;
  timeout: number;
  timeoutFatal: boolean;
  encoding: E;
  cwd: string | undefined;
  env: NodeJS.ProcessEnv | undefined;
  killTimeout: number | undefined;
  processGroup: boolean | undefined;
}

const DEFAULT_KEYS = [
  'argv',
  'stdin',
  'stdout',
  'stderr',
  'timeout',
  'timeoutFatal',
  'encoding',
  'cwd',
  'env',
  'killTimeout',
  'processGroup',
] as const;
const OPTION_KEYS = new Set<string>([...DEFAULT_KEYS, 'signal']);

/**
 * Creates an exec for a target: `'local'` (default) or a daemon socket (`{ socket }` or
 * its path). Throws `ArgumentError` for a bad target or default.
 */
export function createExec<E extends Encoding = 'utf8'>(
  target: Target = 'local',
  defaults: ExecOptions<E> = {},
): Exec<E> {
  const resolved = resolveTarget(target);
  checkOptions(defaults, 'defaults');
  const exec = ((...args: unknown[]) => invoke(resolved, exec, args)) as Exec<E>;
  Object.defineProperty(exec, 'target', { value: resolved, enumerable: true });
  Object.assign(exec, {
    argv: undefined,
    stdin: undefined,
    stdout: undefined,
    stderr: undefined,
    timeout: DEFAULT_TIMEOUT,
    timeoutFatal: true,
    encoding: 'utf8',
    cwd: undefined,
    env: undefined,
    killTimeout: undefined,
    processGroup: undefined,
  });
  for (const key of DEFAULT_KEYS) {
    if (defaults[key] !== undefined)
      (exec as unknown as Record<string, unknown>)[key] = defaults[key];
  }
  return exec;
}

/**
 * Runs one program and resolves with its result: `run(['uname', '-a'])` locally,
 * `run(['uname', '-a'], { socket })` through the daemon. Same call forms as an exec.
 */
export function run<E extends Encoding = 'utf8'>(
  argv: readonly string[] | string,
  options?: RunTargetOptions<E>,
): Promise<ExecResult<Output<E>>>;
export function run<E extends Encoding = 'utf8'>(
  options: RunTargetOptions<E>,
): Promise<ExecResult<Output<E>>>;
export function run(
  argvOrOptions: readonly string[] | string | RunTargetOptions,
  options?: RunTargetOptions,
): Promise<ExecResult<string | Buffer>> {
  const all = isOptionsObject(argvOrOptions) ? argvOrOptions : options;
  const { socket, ...rest } = all ?? {};
  const target = resolveTarget(socket === undefined ? 'local' : { socket });
  const args: unknown[] = isOptionsObject(argvOrOptions) ? [rest] : [argvOrOptions, rest];
  return invoke(target, {}, args);
}

type Defaults = Partial<Record<(typeof DEFAULT_KEYS)[number], unknown>>;

function invoke(
  target: ResolvedTarget,
  defaults: Defaults,
  args: unknown[],
): Promise<ExecResult<string | Buffer>> {
  const { argv: positional, options } = parseCall(args);
  checkOptions(options, 'options');
  if (positional !== undefined && options.argv !== undefined) {
    throw new ArgumentError('argv given twice: both as arguments and as the argv option');
  }
  const pick = <K extends (typeof DEFAULT_KEYS)[number]>(key: K) =>
    options[key] !== undefined ? options[key] : defaults[key];
  const argv = normaliseArgv(positional ?? pick('argv'));
  const plan: ExecutionPlan = {
    argv,
    stdin: (pick('stdin') as StdinSource | null | undefined) ?? null,
    stdout: (pick('stdout') as OutputCallback | null | undefined) ?? null,
    stderr: (pick('stderr') as OutputCallback | null | undefined) ?? null,
    timeout: (pick('timeout') as number | undefined) ?? DEFAULT_TIMEOUT,
    timeoutFatal: (pick('timeoutFatal') as boolean | undefined) ?? true,
    encoding: (pick('encoding') as Encoding | undefined) ?? 'utf8',
    signal: options.signal,
  };
  // Check the merged values too: a default set by assignment (exec.timeout = -1) skipped checkOptions.
  checkOptions(plan as unknown as RunOptions, 'options');
  const local: LocalOptions = {
    cwd: pick('cwd') as string | undefined,
    env: pick('env') as NodeJS.ProcessEnv | undefined,
    killTimeout: pick('killTimeout') as number | undefined,
    processGroup: pick('processGroup') as boolean | undefined,
  };
  let result!: Promise<ExecResult<string | Buffer>>;
  return openChannel(target, argv, local, plan.signal, (channel) => {
    result = execute(channel, plan);
  }).then(() => result);
}

/** The call forms: (), (...strings), (argv[] | string, options?), (options), (...strings, options). */
function parseCall(args: unknown[]): { argv: unknown; options: RunOptions } {
  const last = args.at(-1);
  const options = isOptionsObject(last) ? last : {};
  const rest = isOptionsObject(last) ? args.slice(0, -1) : args;
  if (rest.length === 0) return { argv: undefined, options };
  if (rest.length === 1 && (Array.isArray(rest[0]) || typeof rest[0] === 'string')) {
    return { argv: rest[0], options };
  }
  if (rest.every((arg) => typeof arg === 'string')) return { argv: rest, options };
  throw new ArgumentError(
    `call with strings (program and arguments), an argv array, and/or an options object; got ${rest.map(describe).join(', ')}`,
  );
}

function normaliseArgv(argv: unknown): readonly string[] {
  if (argv === undefined || argv === null) {
    throw new ArgumentError('no program to run: pass an argv, or set the exec’s argv default');
  }
  return checkArgv(typeof argv === 'string' ? [argv] : argv);
}

function isOptionsObject(value: unknown): value is RunTargetOptions {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    !(value instanceof Uint8Array)
  );
}

function checkOptions(options: RunOptions, what: string): void {
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.has(key) && key !== 'argv') {
      throw new ArgumentError(`unknown ${what} key ${JSON.stringify(key)}`);
    }
  }
  const { timeout, timeoutFatal, encoding, stdout, stderr, stdin, signal, killTimeout } = options;
  if (timeout !== undefined && !(Number.isFinite(timeout) && timeout >= 0)) {
    throw new ArgumentError(
      `timeout must be a number of ms ≥ 0 (0 = none); got ${describe(timeout)}`,
    );
  }
  if (killTimeout !== undefined && !(Number.isFinite(killTimeout) && killTimeout >= 0)) {
    throw new ArgumentError(`killTimeout must be a number of ms ≥ 0; got ${describe(killTimeout)}`);
  }
  if (timeoutFatal !== undefined && typeof timeoutFatal !== 'boolean') {
    throw new ArgumentError(`timeoutFatal must be a boolean; got ${describe(timeoutFatal)}`);
  }
  if (encoding !== undefined && encoding !== 'utf8' && encoding !== 'buffer') {
    throw new ArgumentError(`encoding must be 'utf8' or 'buffer'; got ${describe(encoding)}`);
  }
  for (const [name, callback] of [
    ['stdout', stdout],
    ['stderr', stderr],
  ] as const) {
    if (callback !== undefined && callback !== null && typeof callback !== 'function') {
      throw new ArgumentError(`${name} must be a function (or null); got ${describe(callback)}`);
    }
  }
  if (
    stdin !== undefined &&
    stdin !== null &&
    typeof stdin !== 'string' &&
    !(stdin instanceof Uint8Array) &&
    typeof (stdin as AsyncIterable<unknown>)[Symbol.asyncIterator] !== 'function'
  ) {
    throw new ArgumentError(
      `stdin must be a string, a Buffer/Uint8Array or an async iterable (a Readable); got ${describe(stdin)}`,
    );
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new ArgumentError(`signal must be an AbortSignal; got ${describe(signal)}`);
  }
}

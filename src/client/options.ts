/**
 * The one table of ez-mode options: each option's type (in `ExecOptions`), default and
 * check (in `EXEC_OPTIONS`), side by side. `createExec()` defaults, an exec's properties and
 * every call's options are all checked and merged by `resolveExecOptions` from this table.
 * Adding an option means a field in `ExecOptions` and a row in `EXEC_OPTIONS`, here; an
 * option the program itself needs (cwd, env…) is marked `program` and is also a field of
 * `ProgramOptions` (channel/transport.ts), which each transport honours or refuses.
 *
 * Time limits (Node's conventions, with lua-resty-exec's kept under its own name):
 * - `timeout`: the whole run's wall-clock limit, as in `child_process.execFile`. Default none.
 * - `idleTimeout`: the longest wait for the next piece of data (output, or streamed stdin the
 *   program accepted): lua-resty-exec's `timeout`. Default 60000, as lua-resty-exec's.
 * - `timeoutFatal: false`: lua-resty-exec's "a timeout just means keep waiting": turns the
 *   idle limit off. The wall-clock `timeout` is always fatal, so asking for both is refused.
 */
import { PROGRAM_OPTION_NAMES, type ProgramOptions } from '../channel/transport.js';
import {
  checkByteCount,
  checkDuration,
  DEFAULT_MAX_BUFFER,
  describeValue,
} from '../core/limits.js';
import { checkSignal } from '../core/signals.js';
import { resolveTerminal } from '../core/terminal.js';
import { ArgumentError } from '../errors.js';
import type { Encoding, OutputCallback, StdinSource } from './execute.js';

/** What an `exec` holds as defaults, and what each call may override. */
export interface ExecOptions<E extends Encoding = 'utf8'> extends ProgramOptions {
  /** The program and its arguments; a single string is a program with no arguments. */
  argv?: readonly string[] | string;
  /** Data for the program's stdin, which is closed after it. Default: none (closed at once). */
  stdin?: StdinSource | null;
  /** Receives stdout chunks instead of collecting them. `null` collects again. */
  stdout?: OutputCallback<E> | null;
  /** Receives stderr chunks instead of collecting them. `null` collects again. */
  stderr?: OutputCallback<E> | null;
  /**
   * The whole run's limit in ms, wall-clock (as Node's `timeout`): past it the program is
   * stopped and the call rejects with `TimeoutError`. 0 or Infinity = none (default).
   */
  timeout?: number;
  /**
   * Longest wait in ms for the next piece of data — an output chunk, or streamed stdin the
   * program accepted (lua-resty-exec's `timeout`). 0 or Infinity = none. Default 60000.
   */
  idleTimeout?: number;
  /**
   * `false` turns the idle limit off: a quiet program is waited for (lua-resty-exec's "keep
   * waiting"). It cannot be combined with a wall-clock `timeout`, which is always fatal. Default true.
   */
  timeoutFatal?: boolean;
  /**
   * Most bytes collected from one stream (stdout, stderr) into the result; past it the
   * program is stopped and the call rejects with `LimitError` (`limit: 'maxBuffer'`). Output
   * given to a callback is not collected, so not counted. Default `DEFAULT_MAX_BUFFER` (64 MiB).
   */
  maxBuffer?: number;
  /** `'utf8'` (default): output as strings. `'buffer'`: output as Buffers, byte for byte. */
  encoding?: E;
  /**
   * Through a daemon, which wire protocol the call speaks: `'auto'` (default) the plain
   * sockexec protocol unless an option needs the procsock extension (cwd, env…), so plain
   * calls keep working against the C sockexec — or a limit of the call's own (a `timeout`, a
   * `signal`, an `idleTimeout` or `maxBuffer` other than the defaults) wants it, so that its
   * stop learns the program's end: then the extension is tried where that daemon did not turn
   * it down before, and a refusal (nothing ran) runs the call plain. `'procsock'`: always the
   * extension, so the result has the daemon's `reason` and `usage` — a daemon that does not
   * speak it makes the call reject with `UnsupportedOptionError` (`option: 'protocol'`),
   * nothing run. `'plain'`: never the extension, not even for the call's own limits (a stop
   * then hangs up, as sockexec's own clients do, and the result has no status): for a daemon
   * known to be a plain sockexec, where `'auto'` would pay one refused connection per process
   * for a call with a limit of its own; an option that needs the extension is refused
   * (`UnsupportedOptionError`), nothing run. A local program has no wire: its result is
   * complete either way.
   */
  protocol?: Protocol;
}

/** The wire protocol of a daemon call: see `ExecOptions.protocol`. */
export type Protocol = 'auto' | 'plain' | 'procsock';

export type ExecOptionName = keyof ExecOptions<Encoding>;

interface OptionSpec {
  /** The value when neither the call nor the exec sets one. */
  readonly default: unknown;
  /** Throws `ArgumentError` naming the option; `undefined` is never passed. */
  readonly check: (value: unknown, name: string) => void;
  /** Carried out by the transport (a `ProgramOptions` field), which may refuse it. */
  readonly program?: true;
}

/** Default `idleTimeout`: lua-resty-exec's default `timeout`. */
export const DEFAULT_IDLE_TIMEOUT = 60_000;

export const EXEC_OPTIONS: Readonly<Record<ExecOptionName, OptionSpec>> = {
  argv: { default: undefined, check: checkArgvOption },
  stdin: { default: null, check: checkStdin },
  stdout: { default: null, check: checkCallback },
  stderr: { default: null, check: checkCallback },
  timeout: { default: 0, check: duration },
  idleTimeout: { default: DEFAULT_IDLE_TIMEOUT, check: duration },
  timeoutFatal: { default: true, check: checkBoolean },
  maxBuffer: { default: DEFAULT_MAX_BUFFER, check: (value, name) => checkByteCount(name, value) },
  encoding: { default: 'utf8', check: checkEncoding },
  protocol: { default: 'auto', check: checkProtocol },
  cwd: { default: undefined, check: checkString, program: true },
  env: { default: undefined, check: checkEnv, program: true },
  killTimeout: { default: undefined, check: duration, program: true },
  killSignal: {
    default: undefined,
    check: (value, name) => void checkSignal(value, name),
    program: true,
  },
  processGroup: { default: undefined, check: checkBoolean, program: true },
  contain: { default: undefined, check: checkBoolean, program: true },
  exitGrace: { default: undefined, check: duration, program: true },
  pty: { default: undefined, check: (value, name) => resolveTerminal(value, name), program: true },
  detached: { default: undefined, check: checkBoolean, program: true },
  cgroup: { default: undefined, check: checkString, program: true },
};

export const EXEC_OPTION_NAMES = Object.keys(EXEC_OPTIONS) as ExecOptionName[];

/** Every option with its value decided: the call's, else the exec's default, else the table's. */
export type ResolvedExecOptions = {
  [K in ExecOptionName]-?: K extends keyof ProgramOptions | 'argv'
    ? ExecOptions<Encoding>[K]
    : Exclude<ExecOptions<Encoding>[K], undefined>;
};

/** The table's defaults, as one object: a call that sets an option gets a copy of it. */
const TABLE_DEFAULTS: Readonly<Record<string, unknown>> = Object.freeze(
  Object.fromEntries(EXEC_OPTION_NAMES.map((name) => [name, EXEC_OPTIONS[name].default])),
);

/**
 * Merges a call's options over an exec's defaults, checks every value, and refuses unknown
 * keys (`extra` names what the caller takes besides the table, such as `signal`). Only the
 * keys that are there are visited: a call usually sets one or two of the table's options,
 * and one that sets none gets the defaults' own (frozen) object, not a copy.
 */
export function resolveExecOptions(
  defaults: Partial<Record<ExecOptionName, unknown>> | CheckedDefaults,
  options: object,
  extra: readonly string[] = [],
): ResolvedExecOptions {
  refuseUnknownKeys(options, extra, 'option');
  const given = options as Record<string, unknown>;
  let base = TABLE_DEFAULTS;
  let resolved: Record<string, unknown> | null = null;
  const set = (name: string, value: unknown) => {
    resolved ??= { ...base };
    resolved[name] = value;
  };
  if (defaults instanceof CheckedDefaults) {
    base = defaults.current(given);
  } else {
    for (const name of Object.keys(defaults)) {
      const value = (defaults as Record<string, unknown>)[name];
      if (given[name] === undefined && taken(name, value)) set(name, value);
    }
  }
  for (const name of Object.keys(given)) {
    const value = given[name];
    if (taken(name, value)) set(name, value);
  }
  const result = (resolved ?? base) as ResolvedExecOptions;
  if (result.timeoutFatal === false && result.timeout !== 0 && result.timeout !== Infinity) {
    throw new ArgumentError(
      'timeoutFatal: false only turns off the idle limit (idleTimeout); the wall-clock timeout is ' +
        'always fatal: drop timeout, or use idleTimeout: 0 instead of timeoutFatal: false',
    );
  }
  return result;
}

/**
 * An exec's defaults (its properties: plain data a caller may assign at any time) merged over
 * the table's and checked — again only after one of them changed, not on every call. As
 * when each call checked them: a bad default fails the calls that do not set that option.
 */
export class CheckedDefaults {
  readonly #source: Readonly<Record<string, unknown>>;
  /** The source's values when last checked, in `EXEC_OPTION_NAMES` order. */
  readonly #seen: unknown[] = [];
  #merged: Readonly<Record<string, unknown>> = TABLE_DEFAULTS;
  /** Defaults that failed their check (kept out of `#merged`). */
  #invalid: ExecOptionName[] = [];

  constructor(source: Readonly<Record<string, unknown>>) {
    this.#source = source;
    this.#check();
  }

  /** The merged defaults for a call that sets `given`; throws for a bad default it does not override. */
  current(given: Readonly<Record<string, unknown>>): Readonly<Record<string, unknown>> {
    const source = this.#source;
    const seen = this.#seen;
    for (let i = 0; i < EXEC_OPTION_NAMES.length; i++) {
      if (source[EXEC_OPTION_NAMES[i]!] !== seen[i]) {
        this.#check();
        break;
      }
    }
    for (const name of this.#invalid) {
      if (given[name] === undefined) EXEC_OPTIONS[name].check(source[name], name);
    }
    // A terminal's settings are an object its owner may change in place: checked every time.
    const pty = this.#merged.pty;
    if (typeof pty === 'object' && pty !== null && given.pty === undefined) {
      EXEC_OPTIONS.pty.check(pty, 'pty');
    }
    return this.#merged;
  }

  #check(): void {
    const source = this.#source;
    const merged: Record<string, unknown> = { ...TABLE_DEFAULTS };
    const invalid: ExecOptionName[] = [];
    for (let i = 0; i < EXEC_OPTION_NAMES.length; i++) {
      const name = EXEC_OPTION_NAMES[i]!;
      const value = source[name];
      this.#seen[i] = value;
      if (value === undefined) continue;
      try {
        EXEC_OPTIONS[name].check(value, name);
        merged[name] = value;
      } catch {
        invalid.push(name);
      }
    }
    this.#merged = Object.freeze(merged);
    this.#invalid = invalid;
  }
}

/** Whether `value` is a set value of a table option (checked: throws when bad) — anything else is not the table's. */
function taken(name: string, value: unknown): boolean {
  if (value === undefined || !isExecOption(name)) return false;
  EXEC_OPTIONS[name].check(value, name);
  return true;
}

export function isExecOption(name: string): name is ExecOptionName {
  return Object.hasOwn(EXEC_OPTIONS, name);
}

/** The program options (every one: a transport honours or refuses each), for the transport. */
export function programOptions(options: Partial<ResolvedExecOptions>): ProgramOptions {
  return addProgramOptions({}, options);
}

/** Copies the program options that are set into `into` (a request being built); returns it. */
export function addProgramOptions<T extends object>(
  into: T,
  options: Partial<ResolvedExecOptions>,
): T & ProgramOptions {
  const target = into as Record<string, unknown>;
  for (const name of PROGRAM_OPTION_NAMES) {
    const value = options[name];
    if (value !== undefined) target[name] = value;
  }
  return into as T & ProgramOptions;
}

export function refuseUnknownKeys(options: object, extra: readonly string[], what: string): void {
  for (const key of Object.keys(options)) {
    if (!isExecOption(key) && !extra.includes(key)) {
      throw new ArgumentError(`unknown ${what} ${JSON.stringify(key)}`);
    }
  }
}

function duration(value: unknown, name: string): void {
  checkDuration(name, value);
}

function checkArgvOption(value: unknown, name: string): void {
  if (typeof value !== 'string' && !Array.isArray(value)) {
    throw new ArgumentError(
      `${name} must be an array of strings or a string; got ${describeValue(value)}`,
    );
  }
}

function checkStdin(value: unknown, name: string): void {
  if (
    value !== null &&
    typeof value !== 'string' &&
    !(value instanceof Uint8Array) &&
    typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] !== 'function'
  ) {
    throw new ArgumentError(
      `${name} must be a string, a Buffer/Uint8Array or an async iterable (a Readable); got ${describeValue(value)}`,
    );
  }
}

function checkCallback(value: unknown, name: string): void {
  if (value !== null && typeof value !== 'function') {
    throw new ArgumentError(`${name} must be a function (or null); got ${describeValue(value)}`);
  }
}

function checkBoolean(value: unknown, name: string): void {
  if (typeof value !== 'boolean') {
    throw new ArgumentError(`${name} must be a boolean; got ${describeValue(value)}`);
  }
}

function checkEncoding(value: unknown, name: string): void {
  if (value !== 'utf8' && value !== 'buffer') {
    throw new ArgumentError(`${name} must be 'utf8' or 'buffer'; got ${describeValue(value)}`);
  }
}

export function checkProtocol(value: unknown, name: string): void {
  if (value !== 'auto' && value !== 'plain' && value !== 'procsock') {
    throw new ArgumentError(
      `${name} must be 'auto', 'plain' or 'procsock'; got ${describeValue(value)}`,
    );
  }
}

function checkString(value: unknown, name: string): void {
  if (typeof value !== 'string' || value === '') {
    throw new ArgumentError(`${name} must be a non-empty string; got ${describeValue(value)}`);
  }
}

function checkEnv(value: unknown, name: string): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ArgumentError(
      `${name} must be an object of variable names to strings; got ${describeValue(value)}`,
    );
  }
}

/** Rejects misuse at once: argv must be a non-empty array of strings. */
export function checkArgv(argv: unknown, what = 'argv'): readonly string[] {
  if (!Array.isArray(argv) || argv.length === 0) {
    throw new ArgumentError(
      `${what} must be a non-empty array of strings; got ${describeValue(argv)}`,
    );
  }
  for (let index = 0; index < argv.length; index++) {
    if (typeof argv[index] !== 'string') {
      throw new ArgumentError(
        `${what}[${index}] must be a string; got ${describeValue(argv[index])}`,
      );
    }
  }
  if (argv[0] === '') throw new ArgumentError(`${what}[0], the program, must not be empty`);
  return argv as readonly string[];
}

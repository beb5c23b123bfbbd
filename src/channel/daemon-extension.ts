/**
 * What the daemon transport sends when a program needs more than argv: the per-run options
 * of a `LaunchRequest` as the protocol extension's header fields (src/protocol/extension.ts),
 * and the error for a daemon that does not speak the extension. A request that needs none
 * of it (no program option, no `protocol: 'procsock'`) goes out as a plain sockexec request,
 * byte for byte, so it keeps working against the C sockexec — unless it wants it for its own
 * stops (`ownStops`): then it tries the extension, falling back to plain where turned down.
 */
import { resolve } from 'node:path';
import { MAX_TIMER } from '../core/limits.js';
import { resolveTerminal } from '../core/terminal.js';
import { ArgumentError, ClosedError, UnsupportedOptionError } from '../errors.js';
import type { ExtendedRequestFields } from '../protocol/extension.js';
import {
  HOW_INSTEAD,
  isSet,
  type LaunchRequest,
  PROGRAM_OPTION_NAMES,
  type ProgramOptionName,
} from './transport.js';

export interface ExtendedLaunch {
  fields: ExtendedRequestFields;
  /** The option that made the extension necessary (named in errors), or `'protocol'`. */
  option: ProgramOptionName | 'protocol';
  /**
   * Wanted, not needed: only for the call's own stops (`LaunchRequest.ownStops`), so where the
   * daemon turns the opening down the program runs in the plain protocol instead.
   */
  wanted: boolean;
}

/**
 * The extension's fields for `request`, or null when a plain request carries all of it.
 * `daemonSpeaks`: what the daemon answered the opening last (undefined: never asked); a call
 * that only wants the extension goes plain to a daemon that turned it down.
 */
export function extendedLaunch(
  request: LaunchRequest,
  daemonSpeaks?: boolean,
  transport = 'the daemon',
): ExtendedLaunch | null {
  const needed =
    PROGRAM_OPTION_NAMES.find((name) => isSet(request, name)) ??
    (request.protocol === 'procsock' ? 'protocol' : undefined);
  if (request.protocol === 'plain') {
    if (needed === undefined) return null;
    throw new UnsupportedOptionError(
      `${needed} cannot be honoured in the plain sockexec protocol (protocol: 'plain'): it needs ` +
        "the procsock protocol extension. Use protocol: 'auto' with a procsock daemon, or drop the option",
      needed,
      transport,
    );
  }
  const wanted = needed === undefined && request.ownStops === true && daemonSpeaks !== false;
  if (needed === undefined && !wanted) return null;
  const option = needed ?? 'protocol';
  const fields: ExtendedRequestFields = { argv: [...request.argv] };
  // Relative to this process's working directory, as Node's cwd option means it.
  if (request.cwd !== undefined) fields.cwd = resolve(request.cwd);
  if (request.env !== undefined) fields.env = { mode: 'replace', vars: environment(request.env) };
  if (request.processGroup !== undefined) fields.killGroup = request.processGroup;
  // The whole terminal, decided here: the daemon's defaults are procsock's own anyway.
  const terminal = resolveTerminal(request.pty);
  if (terminal) fields.pty = terminal;
  // Not for a call that only wants the extension: a daemon whose -t is shorter would refuse a
  // call that runs plain there (its own timer stops the program, through a `stop`, anyway).
  const { timeout } = request;
  if (!wanted && timeout !== undefined && timeout > 0 && Number.isFinite(timeout)) {
    fields.timeout = wholeMs(timeout, 1);
  }
  if (request.contain !== undefined) fields.contain = request.contain;
  // Whole milliseconds, from 0 (none) to the wire's longest.
  if (request.exitGrace !== undefined) fields.exitGrace = wholeMs(request.exitGrace, 0);
  if (request.killTimeout !== undefined) {
    // The wire takes whole milliseconds from 1; 0 means "at once" and Infinity "the longest".
    fields.killTimeout = wholeMs(request.killTimeout, 1);
  }
  return { fields, option, wanted };
}

/** `ms` as the wire's whole milliseconds, from `least` to the longest (Infinity: the longest). */
function wholeMs(ms: number, least: number): number {
  return Math.min(MAX_TIMER, Math.max(least, Math.ceil(ms)));
}

/** Node's rule for `env`: undefined values are left out, everything else becomes a string. */
function environment(env: NodeJS.ProcessEnv): [string, string][] {
  const vars: [string, string][] = [];
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) continue;
    const text = String(value);
    if (name === '' || name.includes('\0') || text.includes('\0')) {
      throw new ArgumentError(
        `env: ${JSON.stringify(name)} cannot be passed to a program (a name must be non-empty, and neither may hold a NUL byte)`,
      );
    }
    vars.push([name, text]);
  }
  return vars;
}

/** Header fields as the options they came from, for a daemon's refusal of one. */
const OPTION_OF_FIELD: Record<string, string> = {
  cwd: 'cwd',
  env: 'env',
  'env-mode': 'env',
  'kill-group': 'processGroup',
  'kill-timeout': 'killTimeout',
  timeout: 'timeout',
  contain: 'contain',
  'exit-grace': 'exitGrace',
  pty: 'pty',
  'pty-columns': 'pty',
  'pty-rows': 'pty',
  'pty-stderr': 'pty',
  'pty-raw': 'pty',
};

/** The daemon refused the run for one of its options (`field`): its policy, or a field it lacks. */
export function optionRefused(
  field: string,
  transport: string,
  said: string,
): UnsupportedOptionError {
  const option = OPTION_OF_FIELD[field] ?? field;
  const daemonSaid = said.trim() === '' ? '' : `: ${JSON.stringify(said.trim())}`;
  return new UnsupportedOptionError(
    `${option} cannot be honoured by ${transport}: it refused it${daemonSaid}; nothing was run`,
    option,
    transport,
  );
}

/** The daemon closed the connection before its hello: it does not speak the extension. */
export function extensionNotSpoken(
  option: ExtendedLaunch['option'],
  transport: string,
): UnsupportedOptionError {
  const instead =
    option === 'protocol'
      ? "use a procsock daemon, or drop protocol: 'procsock' (signals then need a local program)"
      : HOW_INSTEAD[option];
  return new UnsupportedOptionError(
    `${option === 'protocol' ? "protocol: 'procsock'" : option} cannot be honoured by ${transport}: ` +
      'it does not speak the procsock protocol extension (a C sockexec, or a procsock daemon ' +
      `without it) and closed the connection; nothing was run. Instead: ${instead}`,
    option,
    transport,
  );
}

/**
 * A call that only wanted the extension (for its own stops) sent more stdin before the daemon
 * turned the opening down than it keeps for sending again in the plain protocol.
 */
export function replayTooLong(transport: string): ClosedError {
  return new ClosedError(
    `${transport} does not speak the procsock protocol extension (it closed the connection at ` +
      "its opening, which this call used for its own stops' sake) and more stdin had been sent " +
      'than is kept for a plain retry; nothing was run. Retry the call: calls to it now use the ' +
      'plain protocol',
  );
}

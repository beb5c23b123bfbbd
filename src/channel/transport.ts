/**
 * The transport seam: the one way anything in procsock starts a program. A `Transport`
 * knows where programs run — `localTransport()` (children of this process, local.ts),
 * `daemonTransport(path)` (a sockexec-protocol daemon, socket.ts), or a user's own object —
 * and turns a `LaunchRequest` into a `ProcessChannel`. `run()`, `createExec()`, `connect()`
 * and `Shell` all go through `openChannel`/`startChannel` below; none of them knows which
 * transport it has.
 *
 * Starting is two steps, because a duplex session connects first and sends argv later:
 *
 *     transport.prepare({ signal }) ──► Launch ──start(request)──► ProcessChannel
 *          (connect; abortable)            └──cancel()──► released, nothing started
 *
 * Per-program options (cwd, env…) are carried out by the transport, not by the client:
 * a `Launch` says which it honours, and `startChannel` refuses the others with an
 * `UnsupportedOptionError` before anything is sent — an option is never silently dropped.
 */
import type { Socket } from 'node:net';
import type { PtyOption } from '../core/terminal.js';
import { UnsupportedOptionError } from '../errors.js';
import type { ProcessChannel } from './channel.js';

/** What the transport must do for the program itself, beyond running argv. */
export interface ProgramOptions {
  /** Working directory of the program. Default: the transport's (this process's, or the daemon's). */
  cwd?: string;
  /** Environment of the program. Default: the transport's. */
  env?: NodeJS.ProcessEnv;
  /** Start the program in a process group of its own and signal the whole group. */
  processGroup?: boolean;
  /** Milliseconds between TERM and KILL when the program is stopped. */
  killTimeout?: number;
  /**
   * The signal that stops the program (Node's `killSignal`: `'SIGINT'`, `'INT'`, 2…), KILL
   * following after `killTimeout`. Default TERM. Local runs only: a daemon stops with TERM.
   */
  killSignal?: string | number;
  /** Contain the run: every descendant stops with it (LocalChannelOptions.contain). */
  contain?: boolean;
  /** Milliseconds pipes held by descendants may outlive the program (LocalChannelOptions.exitGrace). */
  exitGrace?: number;
  /** A terminal on the program's stdin and stdout (LocalChannelOptions.pty). */
  pty?: PtyOption;
  /** Let the program outlive this process (LocalChannelOptions.detached). */
  detached?: boolean;
  /**
   * A delegated cgroup v2 directory the contained run gets a leaf cgroup of its own in
   * (LocalChannelOptions.cgroup; needs `contain: true`). Local runs only: a daemon chooses its
   * runs' cgroups itself (procsock serve --cgroup), so a daemon transport refuses it.
   */
  cgroup?: string;
}

export type ProgramOptionName = keyof ProgramOptions;

/** One program to start: argv (checked by the caller: non-empty strings) and its options. */
export interface LaunchRequest extends ProgramOptions {
  readonly argv: readonly string[];
  /**
   * For a daemon transport: `'procsock'` uses the protocol extension even when no option
   * needs it (a session that will call `signal()`); `'auto'` (default) only when one does (or
   * `ownStops` wants it); `'plain'` never (an option that needs it is refused).
   */
  readonly protocol?: 'auto' | 'plain' | 'procsock';
  /**
   * The call's own wall-clock limit in ms (run()'s `timeout`), which the caller enforces. A
   * daemon transport that uses the protocol extension anyway sends it as the run's timeout
   * too, so the daemon stops the program and reports its end (never a reason to extend).
   */
  readonly timeout?: number;
  /**
   * The caller may stop the program for limits of its own (run()'s `timeout`, an
   * `idleTimeout` or `maxBuffer` other than the defaults, an AbortSignal), and would learn how
   * it then ended. A daemon transport uses the protocol extension for it where the daemon
   * speaks it (a daemon that turns the opening down runs nothing, so the program is then
   * started in the plain protocol, and that daemon's next calls go plain at once).
   */
  readonly ownStops?: boolean;
}

/** A transport made ready to start one program (a daemon connection, or nothing locally). */
export interface Launch {
  /** Whether `start()` carries out this program option; `startChannel` refuses the others. */
  honours(option: ProgramOptionName): boolean;
  /**
   * Starts the program; throws only for a request it cannot take (a `ClosedError` when the
   * daemon already hung up). What is written to the channel in the same tick leaves with
   * argv, in one write, so a program that exits at once cannot fail a second write.
   */
  start(request: LaunchRequest): ProcessChannel;
  /** Releases what `prepare()` took when no program is started; resolves once released. Idempotent. */
  cancel(): Promise<void>;
  /** The daemon connection, for a transport that has one. */
  readonly socket?: Socket;
}

export interface Transport {
  /** Where programs run, for messages: `'local'`, `'the daemon at /run/procsock.sock'`. */
  readonly description: string;
  /** Gets ready to start one program: connects, for a daemon. Rejects with `AbortError` on abort. */
  prepare(options?: { signal?: AbortSignal }): Promise<Launch>;
}

/**
 * Refuses the options of `request` that `launch` cannot honour, then starts it. On a
 * refusal the launch is cancelled (a daemon connection closed) and nothing runs.
 */
export function startChannel(
  launch: Launch,
  request: LaunchRequest,
  transport: Transport,
): ProcessChannel {
  try {
    refuseUnhonoured(launch, request, transport);
    return launch.start(request);
  } catch (error) {
    launch.cancel().catch(() => {});
    throw error;
  }
}

/** `prepare` then `startChannel`: a started program, or a rejection with nothing left running. */
export async function openChannel(
  transport: Transport,
  request: LaunchRequest,
  signal?: AbortSignal,
): Promise<ProcessChannel> {
  const launch = await transport.prepare({ signal });
  return startChannel(launch, request, transport);
}

/** Throws `UnsupportedOptionError` for the first option set in `options` that `launch` cannot carry out. */
export function refuseUnhonoured(
  launch: Launch,
  options: ProgramOptions,
  transport: Transport,
): void {
  for (const option of PROGRAM_OPTION_NAMES) {
    if (!isSet(options, option) || launch.honours(option)) continue;
    throw new UnsupportedOptionError(
      `${option} cannot be honoured by ${transport.description}: ${HOW_INSTEAD[option]}`,
      option,
      transport.description,
    );
  }
}

/** Whether `options` asks for `option` (`pty: false`, no terminal, asks for nothing). */
export function isSet(options: ProgramOptions, option: ProgramOptionName): boolean {
  const value = options[option];
  if (value === undefined) return false;
  if (option === 'pty') return value !== false;
  // TERM is what every transport stops with: asking for it asks for nothing.
  if (option === 'killSignal') return !(value === 'TERM' || value === 'SIGTERM' || value === 15);
  return true;
}

export const PROGRAM_OPTION_NAMES = [
  'cwd',
  'env',
  'processGroup',
  'killTimeout',
  'killSignal',
  'contain',
  'exitGrace',
  'pty',
  'detached',
  'cgroup',
] as const satisfies readonly ProgramOptionName[];

/** What to do instead, for each option a plain sockexec daemon cannot be told. */
export const HOW_INSTEAD: Record<ProgramOptionName, string> = {
  cwd:
    "its programs run in the daemon's working directory. Run locally, or wrap the argv in " +
    "env(1): ['env', '-C', dir, ...argv] (or set the daemon's --cwd policy)",
  env:
    "its programs get the daemon's environment. Run locally, or wrap the argv in env(1): " +
    "['env', 'NAME=value', ...argv] (or set the daemon's --env-pass/--env-set policy)",
  processGroup:
    'the daemon decides that for all its programs (procsock serve --kill-group); drop the option',
  killTimeout: "the daemon's own grace applies (procsock serve -k SECONDS); drop the option",
  killSignal:
    'a daemon stops its programs with TERM, then KILL after its grace: drop the option (a ' +
    'killTimeout shortens the grace), send the signal yourself (Session.signal() through a ' +
    'procsock daemon), or run the program locally',
  contain:
    'a sockexec daemon cannot be told; a procsock daemon can (it contains its runs by ' +
    'default where procsock_reaper is built). Use a procsock daemon, or drop the option',
  exitGrace:
    'a sockexec daemon cannot be told; a procsock daemon can (up to its kill timeout). Use a procsock daemon, or drop the option',
  pty:
    "a terminal needs procsock's native spawn backend where the program starts: run it " +
    'locally with the addon built (python3, make and a C compiler at install; then npm ' +
    'rebuild procsock), or through a procsock daemon that has it (the protocol extension)',
  detached:
    "a daemon's client must not leave processes behind: a daemon's program ends with its " +
    'connection (it is stopped when the client hangs up), so it cannot outlive the client. ' +
    'Drop the option, or run the program locally with detached: true',
  cgroup:
    'a daemon puts its contained runs in cgroups of its own choosing (procsock serve --cgroup DIR, ' +
    'or --cgroup auto: its delegated cgroup), which a client cannot name; the usage of such a run ' +
    'has its memoryPeak. Drop the option, or run the program locally',
};

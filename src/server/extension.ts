/**
 * The daemon's side of the protocol extension: what an extended request's options mean,
 * each checked against the daemon's options and policy. An option the daemon will not
 * honour is refused — one stderr line, a `reason`, exit 126 — never replaced by a default.
 * The codec is src/protocol/extension.ts; the connection (./connection.ts) calls in here.
 */
import { REAPER_MISSING, reaperAvailable } from '../channel/contain.js';
import { spawnBackendInUse } from '../channel/local.js';
import { DEFAULT_COLUMNS, DEFAULT_ROWS, type Terminal } from '../core/terminal.js';
import { nativeUnavailableReason } from '../native/locate.js';
import { checkClientCwd, refusedEnvNames } from '../policy/client-options.js';
import { isRefusal, type LaunchPlan } from '../policy/policy.js';
import { EXTENSION_VERSION, type ExtendedRequest, type WireReason } from '../protocol/extension.js';
import { printable } from '../util/printable.js';
import type { ResolvedServeOptions } from './options.js';

/** How one extended run goes, once every option was accepted. */
export interface ExtendedRun {
  plan: LaunchPlan;
  /** Wall-clock limit from the spawn, in ms; undefined: only the connection's deadline. */
  timeout: number | undefined;
  killTimeout: number;
  processGroup: boolean;
  /** Most output bytes, or undefined for no limit. */
  maxOutput: number | undefined;
  /** PTY mode: the program's terminal; undefined for pipes. */
  terminal: Terminal | undefined;
  /** Contain the run (already checked against what this run allows: see `uncontainable`). */
  contain: boolean;
  /** Ms pipes held by descendants may outlive the program; undefined: LocalChannel's default. */
  exitGrace: number | undefined;
}

export interface ExtendedRefusal {
  refused: true;
  /** The header field refused (sent to the client as the `refused` pair); absent for the program. */
  field?: string;
  /** One line (or several) for the client's stderr, each prefixed `procsock: `. */
  message: string;
  exitCode: 126 | 127;
  reason: WireReason;
}

export function isExtendedRefusal(run: ExtendedRun | ExtendedRefusal): run is ExtendedRefusal {
  return 'refused' in run;
}

/** Checks every option of `request`; answers how to run it, or why not. */
export function planExtendedRun(
  request: ExtendedRequest,
  options: ResolvedServeOptions,
  daemonEnv: NodeJS.ProcessEnv = process.env,
): ExtendedRun | ExtendedRefusal {
  const policy = options.policy;
  const refuse = (
    field: string | undefined,
    what: string,
    reason: WireReason = 'policy-refused',
  ): ExtendedRefusal => ({
    refused: true,
    field,
    message: `procsock: ${what}\n`,
    exitCode: 126,
    reason,
  });
  if (request.notUtf8 !== undefined) {
    return refuse(undefined, notUtf8Message(request.notUtf8), 'spawn-failure');
  }
  if (request.unsupported.length > 0) {
    return refuse(
      request.unsupported[0],
      `this daemon does not support ${request.unsupported.map((name) => `'${name}'`).join(', ')} (protocol extension version ${EXTENSION_VERSION})`,
      'unsupported',
    );
  }
  let cwd: string | undefined;
  if (request.cwd !== undefined) {
    const decision = checkClientCwd(request.cwd, policy.clientRules.cwd);
    if (!decision.ok) {
      // A directory that does not exist is a failure to start, as it would be locally.
      return decision.byPolicy
        ? refuse('cwd', `cwd ${printable(request.cwd)}: ${decision.reason}`)
        : refuse(undefined, `cwd ${printable(request.cwd)}: ${decision.reason}`, 'spawn-failure');
    }
    cwd = decision.path;
  }
  let env: Record<string, string> | undefined;
  if (request.env) {
    const names = request.env.vars.map(([name]) => name);
    const refused = refusedEnvNames(names, policy.clientRules.env);
    if (refused.length > 0) {
      const shown = refused.slice(0, 5).map(printable).join(', ');
      return refuse(
        'env',
        `env: clients may not set ${shown}${refused.length > 5 ? `, … (${refused.length} in all)` : ''} on this daemon (its operator can allow it: procsock serve --client-env NAME,…)`,
      );
    }
    // replace: the client's variables are the environment, under the policy's fixed ones;
    // merge: they are set on top of what a program gets by default.
    env =
      request.env.mode === 'replace'
        ? { ...policy.options.envSet }
        : policy.defaultEnvironment(daemonEnv);
    for (const [name, value] of request.env.vars) env[name] = value;
  }
  if (request.timeout !== undefined && options.timeout > 0 && request.timeout > options.timeout) {
    return refuse(
      'timeout',
      `timeout ${request.timeout} ms is longer than this daemon's deadline (${options.timeout} ms)`,
    );
  }
  if (request.killTimeout !== undefined && request.killTimeout > options.killTimeout) {
    return refuse(
      'kill-timeout',
      `kill-timeout ${request.killTimeout} ms is longer than this daemon's (${options.killTimeout} ms)`,
    );
  }
  const policyMax = policy.options.maxOutputBytes;
  if (request.maxOutput !== undefined && policyMax !== undefined && request.maxOutput > policyMax) {
    return refuse(
      'max-output',
      `max-output ${request.maxOutput} bytes is more than this daemon allows (${policyMax})`,
    );
  }
  if (request.exitGrace !== undefined && request.exitGrace > options.killTimeout) {
    return refuse(
      'exit-grace',
      `exit-grace ${request.exitGrace} ms is longer than this daemon's kill timeout (${options.killTimeout} ms), its bound`,
    );
  }
  if (request.killGroup === false && options.processGroup) {
    return refuse('kill-group', 'kill-group 0: this daemon always signals the whole process group');
  }
  if (request.pty !== undefined) {
    const why = terminalRefusal(options);
    if (why) return refuse('pty', `pty: ${why.what}`, why.reason);
  }
  const plan = policy.plan(request.argv, daemonEnv, { cwd, env });
  if (isRefusal(plan)) {
    return {
      refused: true,
      message: plan.message,
      exitCode: plan.exitCode,
      reason: plan.byPolicy ? 'policy-refused' : 'spawn-failure',
    };
  }
  const terminal: Terminal | undefined = request.pty && {
    columns: request.pty.columns ?? DEFAULT_COLUMNS,
    rows: request.pty.rows ?? DEFAULT_ROWS,
    stderr: request.pty.stderr ?? 'pipe',
    raw: request.pty.raw ?? false,
  };
  const notHere = uncontainable(plan);
  if (request.contain === true && (notHere !== null || !reaperAvailable())) {
    return refuse(
      'contain',
      `contain: this daemon cannot contain this run: ${notHere ?? REAPER_MISSING}`,
      'unsupported',
    );
  }
  // contain 0 weakens what the operator chose for a containing daemon: only where allowed.
  if (
    request.contain === false &&
    options.contain &&
    notHere === null &&
    policy.options.clientUncontained !== true
  ) {
    return refuse(
      'contain',
      'contain 0: this daemon contains every run, and clients may not opt out (procsock serve --client-no-contain allows it)',
    );
  }
  return {
    plan,
    timeout: request.timeout,
    killTimeout: request.killTimeout ?? options.killTimeout,
    processGroup: request.killGroup ?? options.processGroup,
    maxOutput: request.maxOutput ?? policyMax,
    terminal,
    contain: (request.contain ?? options.contain) && notHere === null,
    exitGrace: request.exitGrace,
  };
}

/**
 * Why this run cannot be contained even on a containing daemon, or null: with resource
 * limits, which are set on the process spawned — the reaper would count against RLIMIT_NPROC
 * and RLIMIT_NOFILE meant for the program.
 */
export function uncontainable(plan: LaunchPlan): string | null {
  if (plan.rlimits && Object.keys(plan.rlimits).length > 0) {
    return "its policy's resource limits are set on the process spawned, which the reaper would be";
  }
  return null;
}

/** Why this daemon cannot give a client's program a terminal; null when it can. */
function terminalRefusal(
  options: ResolvedServeOptions,
): { what: string; reason: WireReason } | null {
  if (options.policy.options.clientPty === false) {
    return {
      what: 'clients may not have a terminal on this daemon (it was started with --no-client-pty)',
      reason: 'policy-refused',
    };
  }
  if (spawnBackendInUse() !== 'native') {
    return {
      what: `this daemon cannot give a program a terminal: it needs the native spawn backend, and ${nativeUnavailableReason()}`,
      reason: 'unsupported',
    };
  }
  return null;
}

/**
 * Why a request with bytes that are not UTF-8 is refused (`what`: `argument 2`, `env`, `cwd`):
 * this daemon passes them to the program as text, and text cannot carry them unaltered — they
 * would arrive with U+FFFD for the bad bytes, a different file name or argument.
 */
export function notUtf8Message(what: string): string {
  return `${what} is not valid UTF-8: this daemon would have to alter it to pass it on, and does not; send it as UTF-8`;
}

/**
 * Who may run what through the daemon. sockexec's only protection is the socket's mode:
 * whoever can connect runs anything as the daemon's user with its whole environment. A
 * `Policy` narrows that — programs, environment, working directory, limits, identity —
 * and with no policy options at all it is exactly sockexec's behaviour.
 */

import { statSync } from 'node:fs';
import type { SpawnLimits } from '../channel/spawn/backend.js';
import { PolicyError } from '../errors.js';
import { printable } from '../util/printable.js';
import {
  type ClientOptionRules,
  type ClientRule,
  checkVariableNames,
  resolveClientRule,
} from './client-options.js';
import { buildEnvironment, type EnvironmentRule } from './environment.js';
import { type Identity, resolveIdentity } from './identity.js';
import { checkProgram, findProgram, NOT_ALLOWED, ProgramAllowList } from './program.js';

/** Resource limits applied in the child before exec (soft = hard): the spawn's own type. */
export type ResourceLimits = SpawnLimits;

export interface PolicyOptions {
  /** Allowed programs: absolute paths of executables or of directories. Absent: any program. */
  allow?: string[];
  /** PATH used to find argv[0] (default: the daemon's PATH). */
  path?: string;
  /** Environment passed to programs: 'all' (default), 'none', or variable names. */
  envPass?: 'all' | 'none' | string[];
  /** Variables set for every program. */
  envSet?: Record<string, string>;
  /** Working directory of programs (default: the daemon's). */
  cwd?: string;
  /** Most bytes of output per connection; then the program is stopped (TERM, KILL after the grace). */
  maxOutputBytes?: number;
  /** Most bytes of stdin per connection; then the program is stopped. */
  maxStdinBytes?: number;
  /** OS resource limits for each program. */
  rlimits?: ResourceLimits;
  /** Run programs as this user (name or uid). */
  user?: string | number;
  /** … and group (name or gid; default: the user's primary group). */
  group?: string | number;
  /** Allow running programs as root when the daemon is root and no user is set. */
  allowRoot?: boolean;
  /** Audit log: '-' for stderr, or a file to append JSON lines to. */
  audit?: string;
  /**
   * Variables a client may set through the protocol extension: 'all', 'none', or names.
   * Default: 'all' when no other policy option restricts anything, else 'none'.
   */
  clientEnv?: ClientRule;
  /**
   * Working directories a client may choose through the protocol extension: 'all', 'none',
   * or directories (each with everything below it). Default as for `clientEnv`.
   */
  clientCwd?: ClientRule;
  /** Whether a client may ask for a terminal for its run (protocol extension `pty`). Default true. */
  clientPty?: boolean;
  /**
   * Whether a client of a containing daemon may run uncontained (protocol extension
   * `contain 0`): it weakens what the operator chose, so it is refused unless this is true.
   * Default false.
   */
  clientUncontained?: boolean;
}

/** What the protocol extension's per-run options replace in a plan. */
export interface PlanOverrides {
  cwd?: string;
  env?: Record<string, string>;
}

/** How to start one program, as decided by the policy. */
export interface LaunchPlan {
  /** The file to execute (a real path when an allow-list applies), or undefined for a PATH lookup. */
  file: string | undefined;
  argv: string[];
  env: Record<string, string> | undefined;
  cwd: string | undefined;
  identity: Identity | undefined;
  rlimits: ResourceLimits | undefined;
}

export interface Refusal {
  refused: true;
  /** One line for the client's stderr, already prefixed with `procsock: PROG: `. */
  message: string;
  exitCode: 126 | 127;
  /** True when the policy said no (not allowed), false when the program cannot be found or run. */
  byPolicy: boolean;
}

export { PolicyError };

export class Policy {
  readonly options: Readonly<PolicyOptions>;
  readonly #allowList: ProgramAllowList | undefined;
  readonly #env: EnvironmentRule | undefined;
  readonly #identity: Identity | undefined;
  /** What clients may set for their own runs (protocol extension). */
  readonly clientRules: Readonly<ClientOptionRules>;
  /** With a user: its HOME, USER and LOGNAME, and where its programs start (see userSession). */
  readonly #session: UserSession | undefined;

  /** Whom programs run as (`user`/`group`), or undefined: the daemon's own identity. */
  get identity(): Identity | undefined {
    return this.#identity;
  }

  /** Validates the options; throws `PolicyError` with a message fit for the command line. */
  constructor(options: PolicyOptions = {}, runningAsRoot = process.getuid?.() === 0) {
    this.options = Object.freeze({ ...options });
    try {
      this.#allowList = options.allow ? new ProgramAllowList(options.allow) : undefined;
      this.#identity =
        options.user !== undefined ? resolveIdentity(options.user, options.group) : undefined;
    } catch (error) {
      throw new PolicyError((error as Error).message);
    }
    if (options.group !== undefined && options.user === undefined) {
      throw new PolicyError('a group was given without a user; give --user too');
    }
    if (runningAsRoot && !options.allowRoot && (!this.#identity || this.#identity.uid === 0)) {
      throw new PolicyError(
        'refusing to run programs as root: give --user NAME (serve(): policy.user) and optionally --group, or --allow-root (policy.allowRoot: true) if you really mean it',
      );
    }
    if (!runningAsRoot && this.#identity && this.#identity.uid !== process.getuid?.()) {
      throw new PolicyError('--user needs the daemon to run as root');
    }
    this.#session = this.#identity ? userSession(this.#identity) : undefined;
    const envPass = options.envPass ?? 'all';
    if (Array.isArray(envPass)) {
      try {
        checkVariableNames(envPass, 'envPass');
      } catch (error) {
        throw new PolicyError((error as Error).message);
      }
    }
    const envSet = options.envSet ?? {};
    this.#env =
      envPass === 'all' && Object.keys(envSet).length === 0
        ? undefined
        : { pass: envPass, set: envSet };
    for (const [name, value] of [
      ['maxOutputBytes', options.maxOutputBytes],
      ['maxStdinBytes', options.maxStdinBytes],
      ...Object.entries(options.rlimits ?? {}),
    ] as const) {
      if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
        throw new PolicyError(`${name} must be a whole number ≥ 0, not ${value}`);
      }
    }
    const clientDefault = this.isOpen ? 'all' : 'none';
    try {
      this.clientRules = Object.freeze({
        env: resolveClientRule(options.clientEnv ?? clientDefault, 'clientEnv'),
        cwd: resolveClientRule(options.clientCwd ?? clientDefault, 'clientCwd'),
      });
    } catch (error) {
      throw new PolicyError((error as Error).message);
    }
  }

  /** The environment a program gets when the client sets none: the daemon's, as the policy filters it. */
  defaultEnvironment(daemonEnv: NodeJS.ProcessEnv = process.env): Record<string, string> {
    return buildEnvironment(daemonEnv, this.#env ?? { pass: 'all', set: {} });
  }

  /** True when the policy changes nothing: sockexec's behaviour. */
  get isOpen(): boolean {
    const o = this.options;
    return (
      !this.#allowList &&
      !this.#env &&
      !this.#identity &&
      o.cwd === undefined &&
      o.path === undefined &&
      o.rlimits === undefined
    );
  }

  /**
   * Decides how argv runs, or refuses it. `overrides` are a client's own cwd and environment
   * (protocol extension), already checked against `clientRules`.
   */
  plan(
    argv: string[],
    daemonEnv: NodeJS.ProcessEnv = process.env,
    overrides: PlanOverrides = {},
  ): LaunchPlan | Refusal {
    const program = argv[0] ?? '';
    const session = this.#session;
    const cwd = overrides.cwd ?? this.options.cwd ?? session?.cwd;
    let env = overrides.env ?? (this.#env ? buildEnvironment(daemonEnv, this.#env) : undefined);
    if (session) {
      env = session.environment(
        env ? { ...env } : buildEnvironment(daemonEnv, PASS_ALL),
        this.options.envSet,
      );
    }
    const searchPath = this.options.path ?? daemonEnv.PATH ?? '/usr/bin:/bin';
    const refuse = (reason: string, exitCode: 126 | 127, byPolicy = false): Refusal => ({
      refused: true,
      message: `procsock: ${printable(program)}: ${reason}\n`,
      exitCode,
      byPolicy,
    });
    let file: string | undefined;
    if (this.#allowList) {
      const decision = checkProgram(program, this.#allowList, searchPath, cwd ?? process.cwd());
      if (!decision.allowed) {
        return refuse(decision.reason, decision.exitCode, decision.reason === NOT_ALLOWED);
      }
      file = decision.path;
    } else if (this.options.path !== undefined) {
      // Look up with the policy's PATH here, so the program's own environment does not decide.
      file = findProgram(program, searchPath, cwd ?? process.cwd());
      if (file === undefined) return refuse('command not found', 127);
    }
    return { file, argv, env, cwd, identity: this.#identity, rlimits: this.options.rlimits };
  }
}

export function isRefusal(plan: LaunchPlan | Refusal): plan is Refusal {
  return 'refused' in plan;
}

const PASS_ALL: EnvironmentRule = { pass: 'all', set: {} };

interface UserSession {
  cwd: string;
  /** `env` with the account's variables; those the policy sets itself (envSet) stay. */
  environment(env: Record<string, string>, set?: Record<string, string>): Record<string, string>;
}

/**
 * What a program run as another user gets, as from `runuser -l` or `sudo -i`: HOME, USER
 * and LOGNAME of the account (not the daemon's), and its home as the working directory —
 * or `/` when the home is missing or the user could not enter it (decided at start-up).
 * A uid without an account gets HOME=/ and no USER or LOGNAME.
 */
function userSession(identity: Identity): UserSession {
  const account = identity.account;
  const home = account && canEnter(account.home, identity) ? account.home : '/';
  const variables: Record<string, string | undefined> = {
    HOME: account?.home ?? '/',
    USER: account?.name,
    LOGNAME: account?.name,
  };
  return {
    cwd: home,
    environment(env, set = {}) {
      for (const [name, value] of Object.entries(variables)) {
        if (Object.hasOwn(set, name)) continue;
        if (value === undefined) delete env[name];
        else env[name] = value;
      }
      return env;
    },
  };
}

/** Whether `identity` (uid and primary group only: supplementary groups are dropped) may enter `dir`. */
function canEnter(dir: string, identity: Identity): boolean {
  let stats: ReturnType<typeof statSync>;
  try {
    stats = statSync(dir);
  } catch {
    return false;
  }
  if (!stats.isDirectory()) return false;
  if (identity.uid === 0) return true;
  const bit = stats.uid === identity.uid ? 0o100 : stats.gid === identity.gid ? 0o010 : 0o001;
  return (stats.mode & bit) !== 0;
}

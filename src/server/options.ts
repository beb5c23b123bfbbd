/**
 * The daemon's options: defaults (those of sockexec 3.1.1, in milliseconds here) and the
 * one place where they are validated and normalised.
 */
import { statSync } from 'node:fs';
import { checkCgroupDirectory, delegatedCgroup } from '../channel/cgroup.js';
import { REAPER_MISSING, reaperAvailable } from '../channel/contain.js';
import { spawnBackendInUse } from '../channel/local.js';
import { MAX_TIMER } from '../core/limits.js';
import { ArgumentError } from '../errors.js';
import { cgroupDelegated } from '../native/addon.js';
import { nativeUnavailableReason } from '../native/locate.js';
import { Policy, type PolicyOptions } from '../policy/policy.js';
import { DEFAULT_REQUEST_LIMITS, type RequestLimits } from '../protocol/request.js';

export interface ServeOptions {
  /** Path of the Unix socket to listen on. Required. */
  path: string;
  /** Permissions of the socket file, applied with no window of wider ones. Default 0o660. */
  mode?: number;
  /**
   * Listen backlog, and the most clients held waiting for a free slot while
   * `maxConnections` are being served. Default 100.
   */
  backlog?: number;
  /** Most connections served at once; more wait in the queue. Default 100. */
  maxConnections?: number;
  /**
   * Per-connection deadline in ms, counted from when the connection is served (0 = none).
   * At the deadline the program gets TERM, and KILL `killTimeout` ms later. Default 60000.
   */
  timeout?: number;
  /** Milliseconds between TERM and KILL. Default 10000. */
  killTimeout?: number;
  /**
   * Most milliseconds a client may take to send its whole request (argc and argv), counted
   * from when it is served; then it is closed, so a client that never finishes cannot hold a
   * slot even with `timeout` 0. Stdin is not counted. 0 = none. Default 10000.
   */
  requestTimeout?: number;
  /** Start each program in its own process group and signal the whole group. Default false. */
  processGroup?: boolean;
  /**
   * Speak the procsock protocol extension (README, "Protocol extension") to clients that open
   * with it. `false`: answer its opening as sockexec would any bad request, by closing the
   * connection. Default true.
   */
  extension?: boolean;
  /**
   * Contain each run (see `LocalChannelOptions.contain`): whatever a program starts, in any
   * process group or session, is stopped with it — at its exit (after a 1 s grace for output
   * still being written), at the deadline, a hang-up, a limit and shutdown — and the audit
   * record counts them. The wire replies are sockexec's either way. Default: true where
   * procsock's reaper is built (with the native addon), else false (the process group, with
   * `processGroup`, is then what is stopped); true without the reaper is an error. It costs a
   * run an exec and a fork more (bench/README.md, "Containment"); false gives sockexec's
   * process handling back.
   */
  contain?: boolean;
  /**
   * A cgroup v2 leaf per contained run (see `LocalChannelOptions.cgroup` and the README,
   * "Containment"), made in this directory: `'auto'` (the default) is this daemon's own
   * cgroup when it was delegated to it (systemd `Delegate=yes`, a user's delegated cgroup, a
   * container's cgroup namespace), else none; a path is that directory (it must be a writable
   * cgroup v2 directory: ArgumentError otherwise); `false`, none. When the daemon is itself in
   * that directory, it moves into a leaf `procsock-daemon` there at `listen()`, so that the
   * directory can hand its controllers (cpu, memory, pids) to the runs' leaves. Runs that are
   * not contained get no cgroup. The wire replies are sockexec's either way.
   */
  cgroup?: string | false;
  /** Limits on each request (argc, argument length, netstring length). */
  limits?: Partial<RequestLimits>;
  /** Debug log sink, one line per call (accept, spawn, signals, exit, violations). Default none. */
  log?: (line: string) => void;
  /**
   * Who may run what (see src/policy): allowed programs, environment, working directory,
   * output/stdin limits, resource limits, user and group, audit log. Without it the daemon
   * behaves as sockexec — except that, running as root, it needs `user` or `allowRoot`.
   */
  policy?: PolicyOptions;
}

export interface ResolvedServeOptions {
  readonly path: string;
  readonly mode: number;
  readonly backlog: number;
  readonly maxConnections: number;
  readonly timeout: number;
  readonly killTimeout: number;
  readonly requestTimeout: number;
  readonly processGroup: boolean;
  readonly extension: boolean;
  readonly contain: boolean;
  /** The directory runs' leaf cgroups are made in, or null. */
  readonly cgroup: string | null;
  readonly limits: Readonly<RequestLimits>;
  readonly log: ((line: string) => void) | null;
  readonly policy: Policy;
}

export const SERVE_DEFAULTS = Object.freeze({
  mode: 0o660,
  backlog: 100,
  maxConnections: 100,
  timeout: 60_000,
  killTimeout: 10_000,
  requestTimeout: 10_000,
  processGroup: false,
  extension: true,
});

/** Fills in defaults; throws `ArgumentError` naming the bad option. */
export function resolveServeOptions(options: ServeOptions): ResolvedServeOptions {
  if (options === null || typeof options !== 'object') {
    throw new ArgumentError('serve() needs an options object with at least { path }');
  }
  const { path } = options;
  if (typeof path !== 'string' || path === '') {
    throw new ArgumentError('serve(): path must be a non-empty string (the socket path)');
  }
  if (path.includes('\0')) throw new ArgumentError('serve(): path must not contain a NUL byte');
  const mode = options.mode ?? SERVE_DEFAULTS.mode;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
    throw new ArgumentError(`serve(): mode must be an integer from 0 to 0o777, got ${mode}`);
  }
  const limits = { ...DEFAULT_REQUEST_LIMITS, ...options.limits };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new ArgumentError(`serve(): limits.${name} must be a positive integer, got ${value}`);
    }
  }
  const log = options.log ?? null;
  if (log !== null && typeof log !== 'function') {
    throw new ArgumentError('serve(): log must be a function taking one line of text');
  }
  return {
    path,
    mode,
    backlog: integer('backlog', options.backlog ?? SERVE_DEFAULTS.backlog, 1, 2 ** 31 - 1),
    maxConnections: integer(
      'maxConnections',
      options.maxConnections ?? SERVE_DEFAULTS.maxConnections,
      1,
      2 ** 31 - 1,
    ),
    timeout: integer('timeout', options.timeout ?? SERVE_DEFAULTS.timeout, 0, MAX_TIMER),
    killTimeout: integer(
      'killTimeout',
      options.killTimeout ?? SERVE_DEFAULTS.killTimeout,
      1,
      MAX_TIMER,
    ),
    requestTimeout: integer(
      'requestTimeout',
      options.requestTimeout ?? SERVE_DEFAULTS.requestTimeout,
      0,
      MAX_TIMER,
    ),
    processGroup: Boolean(options.processGroup ?? SERVE_DEFAULTS.processGroup),
    extension: Boolean(options.extension ?? SERVE_DEFAULTS.extension),
    contain: resolveContain(options.contain),
    cgroup: resolveCgroup(options.cgroup),
    limits: Object.freeze(limits),
    log,
    policy: resolvePolicy(options.policy ?? {}),
  };
}

function resolveCgroup(cgroup: string | false | undefined): string | null {
  if (cgroup === false) return null;
  if (cgroup === undefined || cgroup === 'auto') {
    return reaperAvailable() ? delegatedCgroup(cgroupDelegated) : null;
  }
  if (!reaperAvailable()) throw new ArgumentError(`serve(): cgroup: ${REAPER_MISSING}`);
  checkCgroupDirectory(cgroup, 'serve(): cgroup');
  return cgroup;
}

function resolveContain(contain: boolean | undefined): boolean {
  if (contain === undefined) return reaperAvailable();
  if (contain && !reaperAvailable()) throw new ArgumentError(`serve(): contain: ${REAPER_MISSING}`);
  return Boolean(contain);
}

/** Builds the policy and checks what it needs from this machine, at start-up rather than per program. */
const INT32_MAX = 0x7fffffff;

function resolvePolicy(options: PolicyOptions): Policy {
  let policy: Policy;
  try {
    policy = new Policy(options);
  } catch (error) {
    throw new ArgumentError(`serve(): policy: ${(error as Error).message}`);
  }
  // Node's child_process takes ids as int32: a higher one would fail every run (126), not the start.
  const identity = policy.identity;
  const highest = identity ? Math.max(identity.uid, identity.gid) : 0;
  if (highest > INT32_MAX && spawnBackendInUse() !== 'native') {
    throw new ArgumentError(
      `serve(): policy: id ${highest} is beyond what Node's child_process can set (${INT32_MAX}): it needs the native spawn backend: ${nativeUnavailableReason()}`,
    );
  }
  if (options.rlimits && Object.keys(options.rlimits).length > 0) {
    if (spawnBackendInUse() !== 'native') {
      throw new ArgumentError(
        `serve(): policy: resource limits need the native spawn backend: ${nativeUnavailableReason()}`,
      );
    }
  }
  if (options.cwd !== undefined) {
    let isDirectory = false;
    try {
      isDirectory = statSync(options.cwd).isDirectory();
    } catch {
      // reported below
    }
    if (!isDirectory) {
      throw new ArgumentError(`serve(): policy: cwd ${options.cwd} is not an existing directory`);
    }
  }
  return policy;
}

function integer(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ArgumentError(
      `serve(): ${name} must be an integer from ${min} to ${max}, got ${value}`,
    );
  }
  return value;
}

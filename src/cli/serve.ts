/**
 * `procsock serve`: the daemon's command line, flag for flag that of sockexec 3.1.1
 * (times in seconds here), plus long options for procsock's extras.
 *
 * Exit status: 0 after a clean shutdown (SIGTERM/SIGINT/SIGHUP), 100 for a usage error,
 * 111 when the daemon cannot start (socket path in use, no permission…).
 */
import { readFileSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { MAX_TIMER } from '../core/limits.js';
import { describeError } from '../errors.js';
import type { PolicyOptions } from '../policy/policy.js';
import { DEFAULT_REQUEST_LIMITS } from '../protocol/request.js';
import { SERVE_DEFAULTS, type ServeOptions, serve } from '../server/index.js';
import { closeInheritedDescriptors } from '../server/inherited-fds.js';
import { backendLine } from './doctor.js';
import { EXIT_USAGE, parseCommandLine, UsageError, usageError } from './usage.js';

export const EXIT_FATAL = 111;

export const SERVE_USAGE =
  'usage: procsock serve [-v] [-d] [-q queue] [-M mode] [-m max_connections] [-t timeout] [-k kill_timeout] [--user NAME | --allow-root] [options] SOCKET_PATH';

export const SERVE_HELP = `${SERVE_USAGE}

Runs a sockexec-compatible process daemon on the Unix socket SOCKET_PATH: for each
connection it starts the program named by the argv the client sends (never through a
shell), streams stdin to it and its stdout/stderr/exit back.

  -v, --version                 print the version and exit
  -d, --debug                   log what the daemon does to stderr (accept, spawn, signals, exit)
  -q, --queue N                 listen backlog, and most clients kept waiting while all
                                connections are busy (default ${SERVE_DEFAULTS.backlog})
  -M, --mode MODE               socket file permissions, octal (default 0${SERVE_DEFAULTS.mode.toString(8)})
  -m, --max-connections N       most connections served at once; more wait (default ${SERVE_DEFAULTS.maxConnections})
  -t, --timeout SECONDS         deadline per connection, from when it is served; 0 = none
                                (default ${SERVE_DEFAULTS.timeout / 1000}); the program then gets TERM
  -k, --kill-timeout SECONDS    seconds between TERM and KILL, at least 1 (default ${SERVE_DEFAULTS.killTimeout / 1000})
      --request-timeout SECONDS most time a client may take to send its whole argv, from
                                when it is served; then it is closed; 0 = none (default ${SERVE_DEFAULTS.requestTimeout / 1000})
      --kill-group              start each program in its own process group and signal the
                                whole group, so what it starts dies with it
      --contain                 contain runs: whatever a program starts, in any group or
                                session, is stopped with it (the default where the reaper
                                is built, with the native addon; an error without it)
      --no-contain              do not contain runs: sockexec's process handling
      --cgroup DIR|auto         give each contained run a cgroup v2 leaf of its own in DIR
                                (a delegated, writable cgroup v2 directory): stopped with
                                cgroup.kill, CPU from cpu.stat, removed after. auto (the
                                default): the daemon's own cgroup if it was delegated to it
                                (systemd Delegate=yes, a container), else none
      --no-cgroup               no cgroup per run (the reaper alone contains runs)
      --max-args N              most arguments per request (default ${DEFAULT_REQUEST_LIMITS.maxArgs})
      --max-arg-length BYTES    longest single argument (default ${DEFAULT_REQUEST_LIMITS.maxArgLength})
      --max-arg-bytes BYTES     most bytes of all arguments together (default ${DEFAULT_REQUEST_LIMITS.maxArgBytes})
      --max-data-length BYTES   longest stdin netstring (default ${DEFAULT_REQUEST_LIMITS.maxDataLength})

Policy — who may run what (none given: sockexec's behaviour, but see --user):
      --allow PATH              allow this executable, or any below this directory; repeat
                                for more. argv[0] is resolved through PATH, then every
                                symlink, and that real path is checked and run. Refused:
                                a stderr message and exit 126
      --exec-path DIRS          the PATH used to find programs (default: the daemon's PATH)
      --env-pass all|none|A,B   environment given to programs (default: all, as sockexec)
      --env-set NAME=VALUE      set a variable for every program; repeat for more
      --cwd DIR                 working directory of programs (default: the daemon's)
      --no-extension            do not speak the procsock protocol extension: its opening
                                is closed as a bad request, as sockexec does
      --client-env all|none|A,B variables a client may set for its run (protocol extension;
                                default: all with no other policy flag, else none)
      --client-cwd all|none|D,E working directories a client may choose (D, E and below;
                                default as for --client-env)
      --no-client-pty           refuse clients a terminal for their runs (protocol
                                extension's pty; default: allowed)
      --client-no-contain       let clients of a containing daemon run uncontained
                                (protocol extension's contain 0; default: refused)
      --max-output-bytes N      most output per connection; then TERM (KILL after -k)
      --max-stdin-bytes N       most stdin per connection; then TERM (KILL after -k)
      --rlimit-cpu SECONDS      RLIMIT_CPU of each program (needs the native spawn backend;
      --rlimit-as BYTES           so do the three below): address space,
      --rlimit-nofile N           open files,
      --rlimit-nproc N            processes of the user
      --user NAME|UID           run programs as this user (the daemon must be root)
      --group NAME|GID          … and group (default: the user's primary group)
      --allow-root              as root without --user, run programs as root anyway
                                (otherwise the daemon refuses to start as root: exit ${EXIT_FATAL})
      --audit FILE|-            one JSON line per connection (time, peer pid/uid/gid, argv,
                                exit, duration, bytes in/out), appended to FILE or on stderr
      --config FILE             a JSON object of long options, e.g.
                                {"allow": ["/usr/bin/uname"], "env-pass": "none", "timeout": 30};
                                options on the command line override it
  -h, --help                    print this help and exit

Exit status: 0 after SIGTERM/SIGINT/SIGHUP (clean shutdown), ${EXIT_USAGE} usage error, ${EXIT_FATAL} cannot start.`;

export { EXIT_USAGE, UsageError };

export type ServeCommand =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'serve'; options: ServeOptions; debug: boolean };

/** Parses `serve`'s arguments; throws `UsageError` with a one-line reason. */
export function parseServeArgs(args: string[]): ServeCommand {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(args);
    // A config file holds the same long options; those on the command line come after, and win.
    if (parsed.values.config !== undefined)
      parsed = parse([...configArgs(parsed.values.config), ...args]);
  } catch (error) {
    throw error instanceof UsageError ? error : usageError(error);
  }
  return optionsFrom(parsed);
}

/** The command that parsed arguments describe; throws `UsageError` for a bad value. */
function optionsFrom(parsed: ReturnType<typeof parse>): ServeCommand {
  const { values, positionals } = parsed;
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0 ? 'missing SOCKET_PATH' : 'too many arguments: one SOCKET_PATH',
    );
  }
  const path = positionals[0]!;
  if (path === '') throw new UsageError('SOCKET_PATH must not be empty');
  const limits: NonNullable<ServeOptions['limits']> = {};
  if (values['max-args'] !== undefined) limits.maxArgs = count('--max-args', values['max-args']);
  if (values['max-arg-length'] !== undefined) {
    limits.maxArgLength = count('--max-arg-length', values['max-arg-length']);
  }
  if (values['max-arg-bytes'] !== undefined) {
    limits.maxArgBytes = count('--max-arg-bytes', values['max-arg-bytes']);
  }
  if (values['max-data-length'] !== undefined) {
    limits.maxDataLength = count('--max-data-length', values['max-data-length']);
  }
  const options: ServeOptions = { path, limits, processGroup: values['kill-group'] ?? false };
  if (values['no-extension']) options.extension = false;
  if (values.contain && values['no-contain']) {
    throw new UsageError('--contain and --no-contain conflict');
  }
  if (values.contain) options.contain = true;
  if (values['no-contain']) options.contain = false;
  if (values.cgroup !== undefined) {
    if (values.cgroup === '') throw new UsageError('--cgroup: expected a directory or auto');
    options.cgroup = values.cgroup;
  }
  if (values['no-cgroup']) {
    if (values.cgroup !== undefined) throw new UsageError('--cgroup and --no-cgroup conflict');
    options.cgroup = false;
  }
  if (values.queue !== undefined) options.backlog = count('-q', values.queue);
  if (values['max-connections'] !== undefined) {
    options.maxConnections = count('-m', values['max-connections']);
  }
  if (values.mode !== undefined) {
    if (!/^[0-7]{1,4}$/.test(values.mode) || Number.parseInt(values.mode, 8) > 0o777) {
      throw new UsageError(`-M: expected octal permissions from 0 to 0777, got ${values.mode}`);
    }
    options.mode = Number.parseInt(values.mode, 8);
  }
  if (values.timeout !== undefined) options.timeout = seconds('-t', values.timeout, 0);
  if (values['kill-timeout'] !== undefined) {
    options.killTimeout = seconds('-k', values['kill-timeout'], 1);
  }
  if (values['request-timeout'] !== undefined) {
    options.requestTimeout = seconds('--request-timeout', values['request-timeout'], 0);
  }
  options.policy = policyOptions(values);
  return { kind: 'serve', options, debug: values.debug ?? false };
}

type ParsedValues = ReturnType<typeof parse>['values'];

/** The policy flags (see src/policy); none given is sockexec's behaviour. */
function policyOptions(values: ParsedValues): PolicyOptions {
  const policy: PolicyOptions = {};
  if (values.allow !== undefined) policy.allow = values.allow;
  if (values['exec-path'] !== undefined) {
    if (values['exec-path'].split(':').every((dir) => dir === '')) {
      throw new UsageError('--exec-path: expected directories, separated by colons');
    }
    policy.path = values['exec-path'];
  }
  const envPass = values['env-pass'];
  if (envPass !== undefined) policy.envPass = nameList(envPass);
  if (values['client-env'] !== undefined) policy.clientEnv = nameList(values['client-env']);
  if (values['client-cwd'] !== undefined) policy.clientCwd = nameList(values['client-cwd']);
  if (values['no-client-pty']) policy.clientPty = false;
  if (values['client-no-contain']) policy.clientUncontained = true;
  if (values['env-set'] !== undefined) {
    policy.envSet = {};
    for (const pair of values['env-set']) {
      const match = /^([^=\0]+)=(.*)$/s.exec(pair);
      if (!match)
        throw new UsageError(`--env-set: expected NAME=VALUE, got ${JSON.stringify(pair)}`);
      policy.envSet[match[1]!] = match[2]!;
    }
  }
  if (values.cwd !== undefined) policy.cwd = values.cwd;
  if (values['max-output-bytes'] !== undefined) {
    policy.maxOutputBytes = count('--max-output-bytes', values['max-output-bytes']);
  }
  if (values['max-stdin-bytes'] !== undefined) {
    policy.maxStdinBytes = count('--max-stdin-bytes', values['max-stdin-bytes']);
  }
  const rlimits: NonNullable<PolicyOptions['rlimits']> = {};
  if (values['rlimit-cpu'] !== undefined)
    rlimits.cpuSeconds = count('--rlimit-cpu', values['rlimit-cpu']);
  if (values['rlimit-as'] !== undefined)
    rlimits.addressSpace = count('--rlimit-as', values['rlimit-as']);
  if (values['rlimit-nofile'] !== undefined)
    rlimits.openFiles = count('--rlimit-nofile', values['rlimit-nofile']);
  if (values['rlimit-nproc'] !== undefined)
    rlimits.processes = count('--rlimit-nproc', values['rlimit-nproc']);
  if (Object.keys(rlimits).length > 0) policy.rlimits = rlimits;
  if (values.user !== undefined) policy.user = values.user;
  if (values.group !== undefined) policy.group = values.group;
  if (values['allow-root']) policy.allowRoot = true;
  if (values.audit !== undefined) policy.audit = values.audit;
  return policy;
}

/**
 * `--config FILE`: a JSON object whose keys are long option names and whose values are
 * what the option takes (a string or number; true for a flag; an array for a repeatable
 * option), turned into command-line arguments.
 */
function configArgs(file: string): string[] {
  let config: unknown;
  try {
    // Not a FIFO or a device: reading one would block the start (SIGTERM unhandled meanwhile).
    if (!statSync(file).isFile()) throw new Error('not a regular file');
    config = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`--config: cannot read ${file}: ${describeError(error)}`);
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new UsageError(`--config: ${file} must hold a JSON object of long options`);
  }
  const args: string[] = [];
  for (const [name, value] of Object.entries(config)) {
    const option = Object.hasOwn(OPTIONS, name) ? OPTIONS[name as keyof typeof OPTIONS] : undefined;
    if (option === undefined || NOT_IN_CONFIG.has(name)) {
      const near = Object.keys(OPTIONS).find(
        (known) => !NOT_IN_CONFIG.has(known) && editDistance(known, name) <= 2,
      );
      throw new UsageError(
        `${file}: unknown key ${quote(name)}${near ? ` (did you mean ${quote(near)}?)` : ''}`,
      );
    }
    const items = Array.isArray(value) ? value : [value];
    if (items.length > 1 && !('multiple' in option)) {
      throw new UsageError(`${file}: key ${quote(name)} takes one value, not a list`);
    }
    for (const item of items) {
      if (option.type === 'boolean') {
        if (typeof item !== 'boolean') {
          throw new UsageError(`${file}: key ${quote(name)} is a flag: true or false`);
        }
        if (item) args.push(`--${name}`);
      } else if (typeof item === 'string' || typeof item === 'number') {
        args.push(`--${name}=${item}`);
      } else {
        throw new UsageError(
          `${file}: key ${quote(name)} needs a string or a number, not ${JSON.stringify(item)}`,
        );
      }
    }
  }
  // Each value is checked here too, so a bad one is reported with the file it came from.
  try {
    optionsFrom(parse([...args, 'SOCKET_PATH']));
  } catch (error) {
    throw new UsageError(`${file}: ${(error as Error).message.replace(/\s*\n\s*/g, ' ')}`);
  }
  return args;
}

/** Keys a config file may not hold: they are not settings. */
const NOT_IN_CONFIG = new Set(['config', 'help', 'version']);

function quote(name: string): string {
  return `'${name.replace(/[^\x20-\x7e]/g, '?')}'`;
}

/** Levenshtein distance, for "did you mean" (option names are short). */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}

const OPTIONS = {
  version: { type: 'boolean', short: 'v' },
  debug: { type: 'boolean', short: 'd' },
  queue: { type: 'string', short: 'q' },
  mode: { type: 'string', short: 'M' },
  'max-connections': { type: 'string', short: 'm' },
  timeout: { type: 'string', short: 't' },
  'kill-timeout': { type: 'string', short: 'k' },
  'kill-group': { type: 'boolean' },
  'request-timeout': { type: 'string' },
  contain: { type: 'boolean' },
  'no-contain': { type: 'boolean' },
  cgroup: { type: 'string' },
  'no-cgroup': { type: 'boolean' },
  'max-args': { type: 'string' },
  'max-arg-length': { type: 'string' },
  'max-arg-bytes': { type: 'string' },
  'max-data-length': { type: 'string' },
  allow: { type: 'string', multiple: true },
  'exec-path': { type: 'string' },
  'env-pass': { type: 'string' },
  'env-set': { type: 'string', multiple: true },
  cwd: { type: 'string' },
  'client-env': { type: 'string' },
  'no-extension': { type: 'boolean' },
  'client-cwd': { type: 'string' },
  'no-client-pty': { type: 'boolean' },
  'client-no-contain': { type: 'boolean' },
  'max-output-bytes': { type: 'string' },
  'max-stdin-bytes': { type: 'string' },
  'rlimit-cpu': { type: 'string' },
  'rlimit-as': { type: 'string' },
  'rlimit-nofile': { type: 'string' },
  'rlimit-nproc': { type: 'string' },
  user: { type: 'string' },
  group: { type: 'string' },
  'allow-root': { type: 'boolean' },
  audit: { type: 'string' },
  config: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function parse(args: string[]) {
  return parseArgs({ args, strict: true, allowPositionals: true, options: OPTIONS });
}

/** `all`, `none`, or a comma-separated list. */
function nameList(text: string): 'all' | 'none' | string[] {
  return text === 'all' || text === 'none' ? text : text.split(',').filter(Boolean);
}

function count(flag: string, text: string): number {
  if (!/^[0-9]+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`${flag}: expected a whole number ≥ 1, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

/** Seconds as sockexec takes them (whole numbers); fractions are accepted too. */
function seconds(flag: string, text: string, min: number): number {
  const value = Number(text);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text) || value < min || value * 1000 > MAX_TIMER) {
    const most = Math.floor(MAX_TIMER / 1000);
    throw new UsageError(
      `${flag}: expected seconds from ${min} to ${most} (about 24 days: the longest timer), got ${JSON.stringify(text)}`,
    );
  }
  return Math.round(value * 1000);
}

/**
 * Runs `procsock serve ARGS…`; resolves with the exit status once the daemon has shut down.
 * `onListening` is called once the socket is bound and listening (`npm run serve` says so then).
 */
/** The signals that shut the daemon down cleanly (exit 0). */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];
/** The signals answered with a status line on stderr. */
const STATUS_SIGNALS: readonly NodeJS.Signals[] = ['SIGUSR1', 'SIGUSR2'];

export async function main(
  args: string[],
  version: string,
  onListening?: (path: string) => void,
): Promise<number> {
  const command = parseCommandLine('serve', SERVE_USAGE, () => parseServeArgs(args));
  if (typeof command === 'number') return command;
  if (command.kind === 'help') {
    process.stdout.write(`${SERVE_HELP}\n`);
    return 0;
  }
  if (command.kind === 'version') {
    process.stdout.write(`procsock ${version}\n`);
    return 0;
  }
  // A daemon whose stderr is gone (the pipe's reader died: `| tee` killed, a log shipper
  // restarted) goes on serving without its log: unhandled, the first write's EPIPE killed it,
  // leaving the socket file and its programs behind. (sockexec ignores SIGPIPE likewise.)
  let stderrGone = false;
  const onStderrError = () => {
    stderrGone = true;
  };
  process.stderr.on('error', onStderrError);
  const log = command.debug
    ? (line: string) => {
        if (!stderrGone) process.stderr.write(`procsock serve: ${line}\n`);
      }
    : undefined;
  // From here on a SIGTERM/SIGINT/SIGHUP means a clean shutdown — even one that comes while
  // the socket is being bound, before serve() has resolved (the default action would kill the
  // daemon and leave the socket file behind, and an uncontained program running). SIGHUP: the
  // terminal the daemon was started from went away (sockexec dies of it the hard way).
  let signalled: (signal: NodeJS.Signals) => void;
  const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
    signalled = resolve;
  });
  const onSignal = (signal: NodeJS.Signals) => signalled(signal);
  for (const name of STOP_SIGNALS) process.on(name, onSignal);
  // SIGUSR1 and SIGUSR2 (sockexec dumps its connections on them; operators send them): a status
  // line. Unhandled, USR2 would kill the daemon the hard way, and USR1 would open Node's
  // inspector on 127.0.0.1:9229 — no authentication: any local user, a program this daemon runs
  // as --user among them, could then run code as the daemon (root). A listener keeps it shut.
  let server: Awaited<ReturnType<typeof serve>> | undefined;
  const onStatus = (signal: NodeJS.Signals) =>
    process.stderr.write(
      `procsock serve: ${signal}: ${server ? `${server.connections} connections being served, ${server.queued} waiting` : 'starting'}\n`,
    );
  for (const name of STATUS_SIGNALS) process.on(name, onStatus);
  try {
    // Descriptors inherited without close-on-exec would leak into every program.
    const closed = closeInheritedDescriptors();
    if (closed.length > 0) log?.(`closed inherited descriptors ${closed.join(', ')}`);
    try {
      server = await serve({ ...command.options, log });
    } catch (error) {
      process.stderr.write(`procsock serve: fatal: ${describeError(error)}\n`);
      return EXIT_FATAL;
    }
    // Which spawn backend serves the programs: in the debug log, and always when it is the
    // slow fallback that nobody asked for.
    const backend = backendLine();
    if (log) log(backend);
    else if (!backend.startsWith('spawn backend: native') && !process.env.PROCSOCK_SPAWN) {
      process.stderr.write(`procsock serve: warning: ${backend}\n`);
    }
    onListening?.(command.options.path);
    const signal = await stopSignal;
    log?.(`received ${signal}`);
    // A repeated signal during the shutdown lands in onSignal again: ignored.
    await server.close();
    return 0;
  } finally {
    for (const name of STOP_SIGNALS) process.off(name, onSignal);
    for (const name of STATUS_SIGNALS) process.off(name, onStatus);
    process.stderr.off('error', onStderrError);
  }
}

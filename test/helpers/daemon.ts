/**
 * Daemons for tests, each on a socket in a fresh temp directory:
 *
 *   const daemon = await startDaemon({ timeout: 300, killTimeout: 200 });   // in this process
 *   ... connect to daemon.path ...
 *   await daemon.close();   // closes the server (reaps everything) and removes the directory
 *
 *   const proc = await startDaemonProcess(['-t', '1']);   // `procsock serve` as a process
 *   await proc.stop();      // SIGTERM, resolves with its exit code
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { reaperAvailable } from '../../src/channel/contain.js';
import { type ServeOptions, type Server, serve } from '../../src/server/index.js';
import { childrenOf, type ProcessInfo, tempDir, waitUntil } from './process.js';

export interface TestDaemon {
  /** Socket path. */
  path: string;
  server: Server;
  /** Debug log lines collected so far (when `collectLog` was set). */
  log: string[];
  close(): Promise<void>;
}

/**
 * PROCSOCK_TEST_CONTAIN=0: test daemons are uncontained unless a test says otherwise — the
 * daemon then serves plain connections natively (src/server/native-connections.ts), so the
 * server tests can be run against that path too. (Tests of containment itself fail then.)
 */
const UNCONTAINED = process.env.PROCSOCK_TEST_CONTAIN === '0';

/** Whether a test daemon contains its runs unless told otherwise (the reaper is built, and not PROCSOCK_TEST_CONTAIN=0). */
export function testDaemonsContain(): boolean {
  return !UNCONTAINED && reaperAvailable();
}

export async function startDaemon(
  options: Partial<ServeOptions> & { collectLog?: boolean } = {},
): Promise<TestDaemon> {
  const dir = tempDir('procsock-daemon-');
  const log: string[] = [];
  const { collectLog, ...serveOptions } = options;
  const path = serveOptions.path ?? dir.path('daemon.sock');
  let server: Server;
  try {
    server = await serve({
      log: collectLog ? (line) => log.push(line) : undefined,
      ...(UNCONTAINED ? { contain: false } : {}),
      ...serveOptions,
      // Tests run as root in CI; say so explicitly, as a root deployment must.
      policy: { allowRoot: true, ...serveOptions.policy },
      path,
    });
  } catch (error) {
    dir.cleanup();
    throw error;
  }
  return {
    path,
    server,
    log,
    async close() {
      await server.close();
      dir.cleanup();
    },
  };
}

export interface DaemonProcess {
  /** Socket path. */
  path: string;
  pid: number;
  child: ChildProcess;
  /** Everything the daemon wrote to stderr so far. */
  stderr(): string;
  /** Resolves with the exit code (or signal name) once the daemon process has ended. */
  exited: Promise<number | string>;
  /** Sends `signal` (default SIGTERM) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
  /** Removes the temp directory (after `stop`). */
  cleanup(): void;
}

/** Path of the CLI entry, run through tsx so tests need no build. */
export const CLI = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

/**
 * Runs the CLI (`node --import tsx src/cli/main.ts ARGS…`) as a separate process.
 * `inheritedFd` hands it one more descriptor at that number, not close-on-exec, as a
 * careless parent would (Node itself marks low numbers close-on-exec at start-up).
 * `maxFiles` runs it with that descriptor limit (soft and hard: Node raises the soft one).
 * `prefix` is a command that execs the rest (e.g. `unshare -m sh -c '…; exec "$0" "$@"'`).
 */
export function runCli(
  args: string[],
  inheritedFd?: number,
  maxFiles?: number,
  prefix: readonly string[] = [],
): ChildProcess {
  const stdio: ('ignore' | 'pipe')[] = ['ignore', 'pipe', 'pipe'];
  if (inheritedFd !== undefined) {
    while (stdio.length < inheritedFd) stdio.push('ignore');
    stdio.push('pipe');
  }
  const node = [process.execPath, '--import', 'tsx', CLI, ...args];
  // prlimit sets the limit on itself and execs node: the pid is the daemon's.
  const limited = maxFiles === undefined ? node : ['prlimit', `--nofile=${maxFiles}`, ...node];
  // A prefix that execs its arguments (unshare, env…) keeps the pid the daemon's too.
  const command = [...prefix, ...limited];
  return spawn(command[0]!, command.slice(1), { stdio });
}

/**
 * `procsock serve FLAGS… SOCKET` as a separate process, on a socket in a fresh temp
 * directory (or at `options.path`); resolves once it accepts connections.
 */
export async function startDaemonProcess(
  flags: string[] = [],
  options: { inheritedFd?: number; path?: string; maxFiles?: number; prefix?: string[] } = {},
): Promise<DaemonProcess> {
  const dir = tempDir('procsock-daemon-process-');
  const path = options.path ?? dir.path('daemon.sock');
  const contain = UNCONTAINED && !flags.some((flag) => /^--(no-)?contain$/.test(flag));
  const child = runCli(
    ['serve', '--allow-root', ...(contain ? ['--no-contain'] : []), ...flags, path],
    options.inheritedFd,
    options.maxFiles,
    options.prefix,
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  child.stdout!.resume();
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? signal ?? -1));
  });
  let done = false;
  void exited.then(() => {
    done = true;
  });
  await waitUntil(() => done || isListening(path), 'the daemon listens');
  if (done) {
    dir.cleanup();
    throw new Error(`the daemon exited at start: ${stderr}`);
  }
  return {
    path,
    pid: child.pid!,
    child,
    stderr: () => stderr,
    exited,
    async stop(signal = 'SIGTERM') {
      if (!done) child.kill(signal);
      return exited;
    },
    cleanup: () => dir.cleanup(),
  };
}

/**
 * Whether a Unix socket at `path` accepts connections. The file appears at bind(), before
 * listen(): a connect in between is refused. /proc/net/unix shows listen() as flag
 * __SO_ACCEPTCON (00010000), without connecting (a probe connection would be audited).
 */
export function isListening(path: string): boolean {
  return readFileSync('/proc/net/unix', 'utf8')
    .split('\n')
    .some((line) => {
      const fields = line.trim().split(/\s+/);
      return fields[7] === path && fields[3] === '00010000';
    });
}

/** The descriptors in the output of `ls -l /proc/self/fd`, as `N -> target`. */
export function listedFds(lsOutput: string): string[] {
  return lsOutput
    .split('\n')
    .filter((line) => / \d+ -> /.test(line))
    .map((line) => line.replace(/^.* (\d+ -> .*)$/, '$1'));
}

/**
 * Children of a daemon process started by `startDaemonProcess`, zombies included, except
 * tsx's esbuild service (tsx may start it to compile the daemon's source; it is the test
 * harness's, not a program the daemon ran).
 */
export function daemonChildren(pid: number): ProcessInfo[] {
  return childrenOf(pid).filter((child) => child.command !== 'esbuild');
}

/**
 * `LocalChannel`: a program run as a direct child of this process, from an argv array,
 * never through a shell. It is what the client runs locally and what the daemon runs for
 * each connection, so both report the same things the same way — including a program
 * that cannot be started: a `stderr` line and exit 127 (not found) or 126 (cannot run),
 * as shells do. When procsock itself cannot start it (no descriptors or memory left), the
 * channel ends with a `SpawnError` instead (`'error'`, then `'close'`): the program never ran.
 */
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { DEFAULT_KILL_TIMEOUT } from '../core/limits.js';
import { type ExitStatus, exitedWith, killedBy } from '../core/output.js';
import { checkSignal, wireSignalName } from '../core/signals.js';
import {
  checkWindowSide,
  type PtyOption,
  resolveTerminal,
  type Terminal,
} from '../core/terminal.js';
import { ArgumentError, abortError, ProcsockError, SpawnError } from '../errors.js';
import { addonAvailable, readAvailable } from '../native/addon.js';
import { printable } from '../util/printable.js';
import { checkCgroupPath, removeAbandonedCgroup, runCgroup } from './cgroup.js';
import { ProcessChannel } from './channel.js';
import {
  parseReaperReport,
  REAPER_MISSING,
  reaperArgv,
  reaperAvailable,
  reportedPid,
} from './contain.js';
import {
  asSpawnError,
  type ChildOutput,
  isSpawnFailure,
  resolveSpawnBackend,
  type SpawnBackendChoice,
  type SpawnedChild,
  type SpawnLimits,
} from './spawn/index.js';
import type { Launch, LaunchRequest, Transport } from './transport.js';
import {
  type ChildUsage,
  type EndReason,
  naturalEnd,
  type ResourceUsage,
  UNKNOWN_CHILD_USAGE,
} from './usage.js';

export {
  type SpawnBackendChoice,
  type SpawnBackendName,
  type SpawnLimits,
  spawnBackendInUse,
} from './spawn/index.js';

export interface LocalChannelOptions {
  /** Working directory of the program (default: this process's). */
  cwd?: string;
  /** Environment of the program (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /**
   * Start the program in a process group of its own, and signal the whole group, so
   * what it starts does not outlive it. Default false.
   */
  processGroup?: boolean;
  /** Milliseconds between TERM and KILL when the program is stopped. Default `DEFAULT_KILL_TIMEOUT` (5000). */
  killTimeout?: number;
  /**
   * The signal `terminate()` (a stop, a destroy) sends first, instead of TERM — Node's
   * `killSignal`: a name (`'SIGINT'`, `'INT'`) or number; KILL still follows after the kill
   * timeout. Contained, the reaper passes it on to the program (TERM would reach the whole
   * tree); the tree is KILLed at the end as always. Default TERM.
   */
  killSignal?: string | number;
  /**
   * Milliseconds the output pipes may stay open after the program has exited, because
   * something it started still holds them (`sleep 30 &`). Output keeps coming meanwhile (a
   * short-lived job finishing its line); when it expires, what is in the pipes is read and
   * they are closed, and the exit is reported. Default 1000; 0 reads what is there and
   * closes at once.
   */
  exitGrace?: number;
  /**
   * Contain the run: start the program under procsock's reaper (see src/channel/contain.ts),
   * so that every process it starts — in any process group or session — is stopped with it:
   * when it exits (after `exitGrace`), when it is stopped (TERM, KILL after `killTimeout`) and
   * when this process dies. `descendantsStopped` then says how many had to be. `pid` is the
   * reaper's. Needs the reaper, built with the native addon (ArgumentError otherwise).
   * Default false.
   */
  contain?: boolean;
  /**
   * Let the program outlive this process. Otherwise it is killed when this process ends,
   * even by SIGKILL, on the native backend (a parent-death signal) or when contained (the
   * reaper's); child_process alone covers only a normal exit (exit, process.exit(), an
   * uncaught exception). A worker thread's programs end with the worker (TERM, KILL after
   * `killTimeout`); if the whole process is SIGKILLed first, only contained ones do.
   * Default false.
   */
  detached?: boolean;
  /**
   * A delegated cgroup v2 directory (absolute path; see the README, "Containment"): a
   * contained run then gets a leaf cgroup of its own there, `DIR/run-<reaper's pid>`, which
   * the program joins before its exec. Stopping the run stops the cgroup too (cgroup.kill:
   * atomic, a program forking in a loop cannot outrun it, and a reaper that was itself
   * SIGKILLed leaves nothing: this channel kills and removes its leaf), CPU time is the
   * cgroup's, and the leaf is removed at the end. Needs `contain`. A leaf that cannot be made
   * or joined fails the run with a `SpawnError`. Default: none.
   */
  cgroup?: string;
  /**
   * How the program is started: `'native'` (the addon built at install: much cheaper
   * spawns), `'child_process'` (Node's spawn), or `'auto'`: native when built. Default: the
   * `PROCSOCK_SPAWN` environment variable, else `'auto'`.
   */
  spawnBackend?: SpawnBackendChoice;
  /** Execute this file instead of looking argv[0] up in PATH (argv[0] is passed as given). */
  file?: string;
  /** Run the program as this user / group (needs privilege; supplementary groups dropped). */
  uid?: number;
  gid?: number;
  /** Resource limits set in the child before exec (soft = hard). Native backend only. */
  rlimits?: SpawnLimits;
  /**
   * PTY mode: the program gets a terminal on stdin and stdout (`true`: 80 x 24; or
   * `{ columns, rows, stderr }`), in a session of its own; stderr stays a pipe unless
   * `stderr: 'pty'`. See `resize()`, and `end()` (which types the end-of-file character).
   * Native backend only: child_process refuses it with `UnsupportedOptionError`.
   */
  pty?: PtyOption;
  /**
   * Lend output instead of giving it: each `'output'` chunk may be a view of a buffer that the
   * next read of the same pipe reuses, so it is valid only until the listener returns. A
   * listener that keeps a chunk (or hands it to a write that may complete later) must copy it,
   * or `pause()` the channel until it is done with it. With the native backend this saves an
   * allocation, page faults and garbage per chunk, and a pipe that fills up grows to 1 MiB,
   * for fewer reads — what a relay such as the daemon wants. Default false.
   */
  lendOutput?: boolean;
  /**
   * Called once when stopping the run comes to KILL: `'channel'` when this channel sent it
   * (`terminate()` or `destroy()`, its kill timeout expired), `'reaper'` when — contained —
   * the reaper did on its own clock (its report says so, at the end: first when this process
   * was busy, or the reaper was stopped from outside, or what the program left running
   * outlived the exit grace). Never for a timer that found nothing to KILL, so a log made
   * from it says what happened. Not called for `kill('SIGKILL')`.
   */
  onKill?: (by: 'channel' | 'reaper') => void;
}

export { DEFAULT_KILL_TIMEOUT };
export const DEFAULT_EXIT_GRACE = 1000;
/** The reaper's "KILL the whole tree now" (a real-time signal; see native/reaper.c). */
const SIG_KILL_TREE = 40;

const PENDING_READ_SIZE = 64 * 1024;
/** The largest pipe the backends make (native enlarges a busy one to 1 MiB). */
const MAX_PIPE_SIZE = 1024 * 1024;
const EAGAIN = osConstants.errno.EAGAIN;
const EIO = osConstants.errno.EIO;
/** Scratch space of readPendingOutput (pieces are copied out of it). */
let pendingBuffer: Buffer | null = null;

export class LocalChannel extends ProcessChannel {
  readonly kind = 'local' as const;
  readonly argv: readonly string[];
  readonly #child: SpawnedChild | null;
  readonly #processGroup: boolean;
  readonly #killTimeout: number;
  readonly #killSignal: NodeJS.Signals;
  readonly #exitGrace: number;
  #openStreams = 2;
  #reaped: ExitStatus | null = null;
  #killTimer: NodeJS.Timeout | null = null;
  /**
   * The kill timeout, or the exit grace, expired: once the program is reaped, whatever still
   * holds its pipes is not waited for.
   */
  #graceOver = false;
  #graceTimer: NodeJS.Timeout | null = null;
  #outputPaused = false;
  #stdinOpen = true;
  #execFailed = false;
  readonly #contained: boolean;
  /** The delegated directory the run's leaf cgroup is made in (see `cgroup`), or null. */
  #cgroup: string | null = null;
  #memoryPeak: number | null = null;
  readonly #startedAt = performance.now();
  readonly #report: Buffer[] = [];
  #usage: ResourceUsage | null = null;
  #descendantsStopped = 0;
  #programPid: number | undefined;
  readonly #terminal: Terminal | null;
  readonly #onKill: ((by: 'channel' | 'reaper') => void) | undefined;
  #killNoticed = false;
  readonly #cwd: string | undefined;

  /** Starts the program at once. Throws `ArgumentError` only for an empty argv. */
  constructor(argv: readonly string[], options: LocalChannelOptions = {}) {
    super();
    if (argv.length === 0 || typeof argv[0] !== 'string' || argv[0] === '') {
      throw new ArgumentError('argv must hold at least the program name');
    }
    this.argv = argv;
    this.#processGroup = options.processGroup ?? false;
    this.#killTimeout = options.killTimeout ?? DEFAULT_KILL_TIMEOUT;
    this.#killSignal =
      options.killSignal === undefined
        ? 'SIGTERM'
        : (`SIG${checkSignal(options.killSignal, 'killSignal')}` as NodeJS.Signals);
    this.#exitGrace = options.exitGrace ?? DEFAULT_EXIT_GRACE;
    this.#contained = options.contain ?? false;
    this.#terminal = resolveTerminal(options.pty);
    this.#onKill = options.onKill;
    this.#cwd = options.cwd;
    if (this.#contained && !reaperAvailable()) throw new ArgumentError(REAPER_MISSING);
    if (options.cgroup !== undefined) {
      if (!this.#contained)
        throw new ArgumentError('cgroup needs contain: true (the reaper makes the leaf)');
      checkCgroupPath(options.cgroup);
      this.#cgroup = options.cgroup;
    }
    // stdout and stderr, or the terminal alone (it carries stderr); and the reaper's report.
    this.#openStreams = (this.#terminal?.stderr === 'pty' ? 1 : 2) + (this.#contained ? 1 : 0);
    this.#child = this.#spawn(options);
  }

  /**
   * The program's pid (the reaper's when contained); undefined once it is known that the
   * program could not be started.
   */
  override get pid(): number | undefined {
    return this.#execFailed ? undefined : this.#child?.pid;
  }

  /**
   * The program's own pid: `pid`, or when contained the pid the reaper reports (undefined
   * until that line has been read, or cannot be read at once).
   */
  get programPid(): number | undefined {
    if (!this.#contained) return this.pid;
    if (this.#programPid === undefined && this.#report.length === 0) {
      // The reaper writes the line before the program can run: once anything of the program
      // has been seen, it is in the pipe. Read it now, not when the event loop gets to it.
      readNow(this.#child?.report, PENDING_READ_SIZE, (data) => this.#report.push(data));
    }
    this.#programPid ??= reportedPid(Buffer.concat(this.#report).toString('latin1')) ?? undefined;
    return this.#programPid;
  }

  /** Whether the run is contained (see `contain`). */
  get contained(): boolean {
    return this.#contained;
  }

  /** The run's leaf cgroup (see `cgroup`), or null: `DIR/run-<reaper's pid>`. */
  get cgroup(): string | null {
    const pid = this.#child?.pid;
    return this.#cgroup === null || pid === undefined ? null : runCgroup(this.#cgroup, pid);
  }

  /**
   * What the run cost, once it has exited (null before, and after an exec failure): CPU and
   * peak RSS from wait4 — of the program and every descendant the reaper reaped when
   * contained; uncontained, the CPU of the program and the children it waited for (native
   * backend: its peak RSS would be this process's, see src/native/exits.ts) or nothing
   * (child_process: null) — and the wall time.
   */
  override get usage(): ResourceUsage | null {
    return this.#execFailed ? null : this.#usage;
  }

  /**
   * How many processes besides the program had to be stopped when the run ended: contained
   * runs only (the reaper counts them); null uncontained, where nobody tracks descendants.
   */
  override get descendantsStopped(): number | null {
    return this.#contained ? this.#descendantsStopped : null;
  }

  /** `spawn-failure` for a program that could not be executed (its 126/127), as the daemon says. */
  override get reason(): Extract<EndReason, 'exit' | 'signal' | 'spawn-failure'> | null {
    const status = this.finalStatus;
    if (status === null) return null;
    return this.#execFailed ? 'spawn-failure' : naturalEnd(status);
  }

  #spawn(options: LocalChannelOptions): SpawnedChild | null {
    const backend = resolveSpawnBackend(options.spawnBackend);
    let child: SpawnedChild;
    // In a cgroup, the reaper makes the leaf as this process (the delegated directory is
    // ours) and sets the program's user itself, after the program has joined the leaf.
    const identity =
      this.#cgroup !== null && (options.uid !== undefined || options.gid !== undefined)
        ? {
            uid: options.uid ?? process.geteuid?.() ?? 0,
            gid: options.gid ?? process.getegid?.() ?? 0,
          }
        : undefined;
    const started = this.#contained
      ? reaperArgv(options.file ?? this.argv[0]!, {
          exitGrace: this.#exitGrace,
          killTimeout: this.#killTimeout,
          detached: options.detached ?? false,
          processGroup: this.#processGroup,
          cgroup: options.cgroup,
          identity,
        })
      : { file: options.file, argvPrefix: undefined };
    try {
      child = backend.spawn({
        argv: this.argv,
        argvPrefix: started.argvPrefix,
        file: started.file,
        report: this.#contained,
        detached: options.detached,
        cwd: options.cwd,
        env: options.env,
        // Contained, the program leads the group (the reaper makes it); the reaper stays in ours.
        processGroup: this.#processGroup && !this.#contained,
        uid: identity ? undefined : options.uid,
        gid: identity ? undefined : options.gid,
        rlimits: options.rlimits,
        lendOutput: options.lendOutput,
        killGrace: this.#killTimeout,
        terminal: this.#terminal ?? undefined,
      });
    } catch (error) {
      // Misuse (an option the backend cannot honour): the caller's error, nothing started.
      if (error instanceof ProcsockError) throw error;
      // Invalid arguments (a NUL byte, say) throw synchronously; report them like any exec failure.
      queueMicrotask(() => this.#failExec(error));
      return null;
    }
    child.on('error', (error) => {
      // The program never started (any other error is a failed kill: ignored).
      const launch = asSpawnError(error, this.argv[0]!);
      if (launch) this.#failLaunch(launch);
      else if (child.pid === undefined || isSpawnFailure(error)) this.#failExec(error);
    });
    if (child.pid === undefined) return child;
    child.stdin!.on('error', () => {
      // The program closed its stdin (EPIPE): the rest of the input is dropped, as sockexec does.
      this.#stdinOpen = false;
      // A writer waiting for 'drain' would wait forever: release it (later writes are dropped).
      this.emit('drain');
    });
    child.stdin!.on('drain', () => this.emit('drain'));
    this.#watchOutput(child.stdout, (data) => this.emitOutput('stdout', data));
    this.#watchOutput(child.stderr, (data) => this.emitOutput('stderr', data));
    this.#watchOutput(child.report, (data) => this.#report.push(data));
    child.on('exit', (code, signal) => {
      this.#reaped = signal ? killedBy(wireSignalName(signal)) : exitedWith(code ?? 0);
      this.#usage = this.#measure(child.usage ?? UNKNOWN_CHILD_USAGE);
      if (this.#openStreams > 0) this.#startExitGrace();
      this.#closePipesAfterGrace();
      this.#maybeFinish();
    });
    return child;
  }

  /** An output pipe (or the reaper's report): its data, and its close counted towards the end. */
  #watchOutput(stream: ChildOutput | null | undefined, onData: (data: Buffer) => void): void {
    if (!stream) return;
    stream.on('data', onData);
    stream.on('error', ignore);
    stream.on('close', () => {
      this.#openStreams--;
      this.#maybeFinish();
    });
  }

  #failExec(error: unknown): void {
    this.#abandonChild();
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    // The kernel's errno does not say whether the program or the cwd was missing (ENOENT for
    // both): a cwd that cannot be entered is named, with the daemon's words and status.
    const cwd = this.#cwd === undefined ? null : cwdProblem(this.#cwd);
    const [exitCode, line] =
      cwd === null
        ? execFailure(this.argv[0]!, code)
        : [126, `procsock: cwd ${printable(this.#cwd!)}: ${cwd}\n`];
    this.emitOutput('stderr', Buffer.from(line));
    this.emitExit(exitedWith(exitCode));
    this.emitClose();
  }

  /** procsock could not start the program (descriptors, memory): an error, not an exit status. */
  #failLaunch(error: SpawnError): void {
    this.#abandonChild();
    this.emitError(error);
    this.emitClose();
  }

  /** The program never ran: nothing to wait for, no pipe to keep. */
  #abandonChild(): void {
    this.#execFailed = true;
    this.#clearKillTimer();
    this.#child?.stdout?.destroy();
    this.#child?.stderr?.destroy();
    this.#child?.stdin?.destroy();
  }

  /**
   * Done means the program exited and both of its output pipes closed, as in Node's 'close' —
   * but an exit is an exit: pipes held open by what the program left behind are closed when
   * the exit grace expires (see `exitGrace`).
   */
  #maybeFinish(): void {
    if (this.#reaped === null || this.#openStreams > 0) return;
    if (this.#contained && this.#takeReport()) return;
    this.#clearKillTimer();
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    this.#graceTimer = null;
    // The run is the group: what it left behind (a `&` job) ends with it.
    if (this.#processGroup && !this.#contained && this.#child?.pid !== undefined) {
      stopGroup(this.#child.pid, this.#killTimeout);
    }
    this.emitExit(this.#reaped);
    this.emitClose();
  }

  #measure(child: ChildUsage): ResourceUsage {
    // Field by field: a spread of each run's fresh usage object kept V8 from freeing these
    // objects young — old space grew ~400 bytes a run until a mark-compact (bench/README.md).
    return {
      userCPUTime: child.userCPUTime,
      systemCPUTime: child.systemCPUTime,
      maxRSS: child.maxRSS,
      memoryPeak: this.#memoryPeak,
      wallTime: Math.round(performance.now() - this.#startedAt),
    };
  }

  /**
   * The reaper's report replaces what its own exit says: the program's status, the tree's
   * usage. Returns true when it says the program could not be executed (reported as such).
   */
  #takeReport(): boolean {
    const report = parseReaperReport(Buffer.concat(this.#report).toString('latin1'));
    if (!report) {
      // The reaper was killed: its own status is all there is; what it left in the run's
      // cgroup goes now (the reason the leaf exists).
      const leaf = this.cgroup;
      if (leaf !== null) removeAbandonedCgroup(leaf);
      return false;
    }
    if (report.cgroupErrno > 0) {
      const code = getSystemErrorName(-report.cgroupErrno);
      this.#failLaunch(
        new SpawnError(
          this.argv[0]!,
          `${code}: cannot make or join a cgroup under ${this.#cgroup}`,
          'cgroup',
          report.cgroupErrno,
        ),
      );
      return true;
    }
    // memory.peak is in bytes; usage is in process.resourceUsage()'s KiB, as maxRSS.
    this.#memoryPeak = report.memoryPeak === null ? null : Math.ceil(report.memoryPeak / 1024);
    if (report.execErrno > 0) {
      const code = getSystemErrorName(-report.execErrno);
      this.#failExec(Object.assign(new Error(code), { code }));
      return true;
    }
    this.#reaped = report.status;
    this.#descendantsStopped = report.descendantsStopped;
    if (report.killed) this.#noticeKill('reaper');
    this.#usage = this.#measure(report.usage);
    return false;
  }

  /**
   * The program is reaped but a pipe is still open: a descendant holds it (`sleep 30 &`). It
   * gets the exit grace to finish; then the grace is over, as after the kill timeout, and
   * #closePipesAfterGrace drains and closes the pipes (a paused reader's output waits for it).
   */
  #startExitGrace(): void {
    if (this.#graceTimer || this.#graceOver || this.closed) return;
    if (this.#exitGrace <= 0) {
      this.#graceOver = true;
      return;
    }
    this.#graceTimer = setTimeout(() => {
      this.#graceTimer = null;
      this.#graceOver = true;
      this.#closePipesAfterGrace();
    }, this.#exitGrace);
  }

  write(data: Buffer | string): boolean {
    const stdin = this.#child?.stdin;
    if (!stdin || !this.#stdinOpen || stdin.writableEnded || data.length === 0) return true;
    return stdin.write(data);
  }

  end(): void {
    const stdin = this.#child?.stdin;
    if (stdin && !stdin.writableEnded) stdin.end();
  }

  /**
   * Delivers, before returning, what the program has written to `type` and this process has
   * not read yet: each piece as an `'output'` event, now. A caller that knows the program has
   * finished writing there (a shell that printed a marker on stdout after its command's
   * stderr) thus has all of it without waiting for a marker on that pipe too. Returns false
   * when it cannot be done synchronously: the addon is not built, or the stream is paused or
   * holds data not yet emitted.
   */
  /** The addon reads the pipe, whichever backend spawned the child. */
  override get readsPendingOutput(): boolean {
    return addonAvailable();
  }

  override readPendingOutput(type: 'stdout' | 'stderr'): boolean {
    return this.#readPending(type, Number.POSITIVE_INFINITY);
  }

  /** `readPendingOutput`, stopping after about `maxBytes` or when a listener pauses the channel. */
  #readPending(type: 'stdout' | 'stderr', maxBytes: number): boolean {
    const stream = type === 'stdout' ? this.#child?.stdout : this.#child?.stderr;
    // A terminal reads EIO once its last holder closed it: its end of file.
    return readNow(
      stream,
      maxBytes,
      (data) => this.emitOutput(type, data),
      this.#terminal !== null,
    );
  }

  pause(): void {
    this.#outputPaused = true;
    this.#child?.stdout?.pause();
    this.#child?.stderr?.pause();
  }

  resume(): void {
    this.#outputPaused = false;
    this.#child?.stdout?.resume();
    this.#child?.stderr?.resume();
    this.#closePipesAfterGrace();
  }

  /**
   * Sends a signal to the program (to its group when it has one). Contained, TERM stops the
   * whole tree (KILL after the kill timeout), KILL kills the whole tree at once, and any other
   * signal is passed on to the program by the reaper.
   */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    this.#deliver(signal);
  }

  /** `kill()`: true when a signal was sent, false when there was nobody left to send it to. */
  #deliver(signal: NodeJS.Signals): boolean {
    const pid = this.#child?.pid;
    if (pid === undefined || this.closed) return false;
    try {
      if (this.#contained) {
        if (this.#reaped !== null) return false;
        // Every signal goes to the reaper: a TERM means "TERM the whole tree, the program too"
        // (native/reaper.c), any other is passed on to the program while it runs. Never to the
        // program's pid from here: the reaper reaps the program at its exit and lives on for
        // its tree (exit grace, kill timeout), so by then that pid may be a newcomer's.
        process.kill(pid, signal === 'SIGKILL' ? SIG_KILL_TREE : signal);
      } else if (this.#processGroup) {
        if (this.#reaped !== null && newcomerAt(pid)) return false; // (see stopGroup)
        process.kill(-pid, signal);
      } else if (this.#reaped === null) return this.#child!.kill(signal);
      else return false;
      return true;
    } catch {
      return false; // ESRCH: already gone.
    }
  }

  #noticeKill(by: 'channel' | 'reaper'): void {
    if (this.#killNoticed) return;
    this.#killNoticed = true;
    this.#onKill?.(by);
  }

  override ref(): void {
    this.#setReferenced(true);
  }

  override unref(): void {
    this.#setReferenced(false);
  }

  /** The child and each of its pipes: all of them hold the loop, Node's and the native ones. */
  #setReferenced(on: boolean): void {
    const child = this.#child;
    if (!child) return;
    for (const handle of [child, child.stdin, child.stdout, child.stderr, child.report]) {
      if (on) handle?.ref?.();
      else handle?.unref?.();
    }
  }

  override signal(name: string): boolean {
    this.kill(`SIG${name}` as NodeJS.Signals);
    return true;
  }

  /** Whether the program runs in a terminal (PTY mode). */
  override get terminal(): boolean {
    return this.#terminal !== null;
  }

  /**
   * PTY mode: the terminal's new window size; the kernel sends SIGWINCH to its foreground
   * process group. False without a terminal, or once the program has ended.
   */
  override resize(columns: number, rows: number): boolean {
    checkWindowSide('columns', columns);
    checkWindowSide('rows', rows);
    if (this.#terminal === null || this.closed || this.#reaped !== null) return false;
    return this.#child?.resize?.(columns, rows) ?? false;
  }

  /**
   * TERM now; KILL after the kill timeout if the program has not finished. Output still
   * flows, so the caller learns how the program ended. Once the grace is over and the
   * program reaped (then, or a moment later), the pipes are closed even if what it started
   * still holds them: see #closePipesAfterGrace.
   */
  terminate(): void {
    if (this.closed || this.#killTimer || this.#graceOver) return;
    this.kill(this.#killSignal);
    this.#killTimer = setTimeout(() => {
      this.#killTimer = null;
      this.#graceOver = true;
      if (this.#deliver('SIGKILL')) this.#noticeKill('channel');
      this.#closePipesAfterGrace();
    }, this.#killTimeout);
  }

  /**
   * After the grace, a reaped program's pipes are closed: descendants that inherited them
   * (a background job, a daemonised grandchild) must not keep the channel — and the daemon's
   * connection, its slot and its shutdown — open. What the pipes already hold is delivered
   * first, the program's last output included: it is read now, synchronously (up to a full
   * pipe each), or where that cannot be done (no addon), the pipes get one more turn of the
   * event loop's poll phase to be read in. A paused channel keeps its pipes until resumed
   * (or destroyed): its reader is not ready for that output yet.
   */
  #closePipesAfterGrace(): void {
    if (!this.#graceOver || this.#reaped === null || this.#openStreams === 0) return;
    if (this.#outputPaused && !this.destroyed) return;
    const stdout = this.#child?.stdout;
    const stderr = this.#child?.stderr;
    let drained = true;
    for (const type of ['stdout', 'stderr'] as const) {
      if (!this.#readPending(type, MAX_PIPE_SIZE)) drained = false;
    }
    if (this.#outputPaused && !this.destroyed) return; // a listener paused: resume() comes back
    if (drained) {
      stdout?.destroy();
      stderr?.destroy();
      return;
    }
    // setImmediate from here runs before the next poll; the one it queues runs after it.
    setImmediate(() =>
      setImmediate(() => {
        stdout?.destroy();
        stderr?.destroy();
      }),
    );
  }

  protected destroyResources(): void {
    this.#child?.stdin?.destroy();
    // Keep draining the pipes so a dying program does not block on a full one.
    this.resume();
    this.terminate();
  }

  #clearKillTimer(): void {
    if (this.#killTimer) clearTimeout(this.#killTimer);
    this.#killTimer = null;
  }
}

/**
 * The exit status and stderr line of a program that could not be executed (`code`: the
 * error's code, as ENOENT), as the daemon and a local run report it.
 */
export function execFailure(program: string, code: string): [exitCode: 126 | 127, line: string] {
  const [exitCode, reason]: [126 | 127, string] =
    code === 'ENOENT'
      ? [127, 'command not found']
      : code === 'EACCES'
        ? [126, 'permission denied']
        : code === 'ERR_INVALID_ARG_VALUE'
          ? [126, 'invalid argument (an argument contains a NUL byte)']
          : [126, `cannot execute (${code})`];
  return [exitCode, `procsock: ${printable(program)}: ${reason}\n`];
}

/** Why `cwd` cannot be a program's working directory, in the daemon's words; null when it can. */
function cwdProblem(cwd: string): string | null {
  try {
    if (!statSync(cwd).isDirectory()) return 'not a directory';
    accessSync(cwd, fsConstants.X_OK);
    return null;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'no such directory' : `cannot use it (${code})`;
  }
}

/**
 * Programs as children of this process. `defaults` apply to every program it starts (a
 * request's own options win): e.g. `localTransport({ spawnBackend: 'child_process' })`.
 */
export function localTransport(defaults: LocalChannelOptions = {}): Transport {
  const launch: Launch = {
    // A terminal needs the native backend (child_process would refuse it at the spawn).
    honours: (option) => option !== 'pty' || terminalsHere(defaults.spawnBackend),
    start: (request: LaunchRequest) => new LocalChannel(request.argv, merge(defaults, request)),
    cancel: () => Promise.resolve(),
  };
  // Nothing to get ready locally: every prepare() answers with the same settled promise.
  const ready = Promise.resolve(launch);
  return {
    description: 'a local child process',
    prepare: (options = {}) => {
      const { signal } = options;
      return signal?.aborted ? Promise.reject(abortError(signal)) : ready;
    },
  };
}

/** The transport's defaults with the request's options laid over them (an undefined one does not erase a default). */
function merge(defaults: LocalChannelOptions, request: LaunchRequest): LocalChannelOptions {
  const merged: Record<string, unknown> = { ...defaults };
  const given = request as unknown as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    const value = given[key];
    if (value !== undefined && key !== 'argv') merged[key] = value;
  }
  return merged as LocalChannelOptions;
}

function terminalsHere(choice: SpawnBackendChoice | undefined): boolean {
  try {
    return resolveSpawnBackend(choice).name === 'native';
  } catch {
    return false; // a bad choice: LocalChannel says so when it starts
  }
}

/**
 * Delivers what `stream`'s pipe holds now, read synchronously behind the stream's back (the
 * addon's readAvailable), about `maxBytes` at most, stopping when a listener pauses the
 * stream. Returns false when that cannot be done: no addon, the stream is paused or holds
 * data not yet emitted.
 */
function readNow(
  stream: ChildOutput | null | undefined,
  maxBytes: number,
  deliver: (data: Buffer) => void,
  eioIsEnd = false,
): boolean {
  if (!stream || stream.destroyed || stream.readableEnded) return true; // nothing more comes
  if (stream.isPaused() || stream.readableLength > 0) return false;
  const fd = stream.fd ?? (stream as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return false;
  for (let taken = 0; taken < maxBytes; ) {
    pendingBuffer ??= Buffer.allocUnsafeSlow(PENDING_READ_SIZE);
    const length = readAvailable(fd, pendingBuffer);
    if (length === null) return false;
    // 0 (end of file) and errors are left to the stream, which sees them on its next read.
    if (length <= 0) return length === -EAGAIN || length === 0 || (eioIsEnd && length === -EIO);
    taken += length;
    deliver(Buffer.from(pendingBuffer.subarray(0, length)));
    if (stream.isPaused()) return false;
  }
  return true;
}

function ignore(): void {}

function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false; // ESRCH: the group is empty
  }
}

/**
 * Whether a process has pid `pid` now. Once a group's leader is reaped, such a process is a
 * newcomer that may lead a group of the same id: the old group is empty then (a pid is not
 * reused while a group of that id has members), and it is not signalled (as native/conn.c's
 * kill_group).
 */
function newcomerAt(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * TERM to a process group whose leader is gone, KILL after `killTimeout`: its members hold
 * the group's id, so the kernel does not reuse it for anyone else meanwhile — unless it is
 * empty already, so neither signal goes to a newcomer's group (newcomerAt). The KILL timer
 * does not keep the process alive.
 */
function stopGroup(pgid: number, killTimeout: number): void {
  if (newcomerAt(pgid)) return;
  if (signalGroup(pgid, 'SIGTERM')) {
    setTimeout(() => {
      if (!newcomerAt(pgid)) signalGroup(pgid, 'SIGKILL');
    }, killTimeout).unref();
  }
}

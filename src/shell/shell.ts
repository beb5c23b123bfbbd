/**
 * `Shell`: one long-lived shell-like program (bash, a database CLI, a REPL…) that runs many
 * commands, one after another, on a process channel — a local child (default) or a daemon
 * session. The end of each command's output is recognised by sentinels, never by prompts.
 *
 * States and transitions:
 *
 *     off ──start()──► starting ──sentinels seen──► idle ──run()──► running
 *      ▲                 │  │                        │  ▲ ◄─ ready ─┘  │  │
 *      │                 │  │ timeout                │  └── (next queued run, if any)
 *      │                 │  ▼                 stop() ▼                 │  │
 *      │                 │  stopping ◄──────────────────────── timeout ─┘  │
 *      │                 │    │   ▲ ◄── close(), from any state but off     │
 *      ├◄────────────────┼────┘ exited (stop) or killed and gone           │
 *      └◄────────────────┴──── crash / unexpected exit ─────────────────────┘
 *                              (also from idle: the program died between runs)
 *
 * - off: no program. `start()` only (and `close()`, a no-op).
 * - starting: launched; the sentinels are being proven to work.
 * - idle: ready for `run()` and `stop()`.
 * - running: a command is out; more `run()` calls queue behind it, first in first out.
 * - stopping: a final command / EOF was sent (`stop()`), or the program is being killed
 *   (timeout, `close()`); every call but `close()` fails until it is off.
 *
 * Outcomes of `start`/`run`: ready (resolves); timeout (`ShellTimeoutError`, the program
 * and its process group are killed); crash (`ShellCrashError`: it exited non-zero or by a
 * signal); unexpected exit 0 (`ShellExitError`). After any of the three the shell is off
 * and `start()` may be called again; queued runs are rejected with a `StateError`, never
 * sent. A call in the wrong state rejects with a `StateError` and changes nothing.
 */

import type { ProcessChannel } from '../channel/channel.js';
import { reaperAvailable } from '../channel/contain.js';
import { resolveTransport } from '../channel/target.js';
import { type LaunchRequest, startChannel, type Transport } from '../channel/transport.js';
import {
  checkByteCount,
  checkDuration,
  DEFAULT_MAX_BUFFER,
  hasDeadline,
  MAX_TIMER,
} from '../core/limits.js';
import type { ExitStatus, OutputChunk } from '../core/output.js';
import {
  checkWindowSide,
  type PtyOptions,
  resolveTerminal,
  type Terminal,
} from '../core/terminal.js';
import {
  ArgumentError,
  describeError,
  LimitError,
  type ProcsockError,
  ShellCrashError,
  ShellExitError,
  ShellTimeoutError,
  StateError,
  UnsupportedOptionError,
} from '../errors.js';
import {
  CollectCommander,
  type Commander,
  DiscardCommander,
  type OutputParser,
} from './commander.js';
import { type Frame, type Framing, SentinelFraming } from './framing.js';
import { PosixFraming, type PosixStderr } from './posix.js';
import { DriverFraming, SqliteFraming } from './repl.js';
import type { Sentinel, SentinelFactory } from './sentinel.js';

export type ShellState = 'off' | 'starting' | 'idle' | 'running' | 'stopping';

/**
 * `'local'`: a child process; `{socket}`: a session with the daemon at that path; or a
 * `Transport` of your own (channel/transport.ts), e.g. `localTransport({ spawnBackend })`.
 */
export type ShellTransport = 'local' | { socket: string } | Transport;

export interface ShellOptions {
  /** The program, looked up in PATH (as `spawn` does), and its arguments. */
  program: string;
  args?: readonly string[];
  /** Working directory and environment (a transport that cannot set them, a plain daemon, refuses them at start()). */
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Appended to every command (and sentinel command) not already ending with it, e.g. `;`. */
  terminator?: string;
  /**
   * The stdout sentinel (required): fixed, or made per run from a fresh marker; or
   * a preset: `'posix'` for sh/bash/dash/zsh (see `Shell.posix`), `'python'`, `'node'`,
   * `'sqlite'` (see `Shell.python`, `Shell.node`, `Shell.sqlite`).
   */
  sentinel: Sentinel | SentinelFactory | 'posix' | 'python' | 'node' | 'sqlite';
  /** The stderr sentinel. Without one, stderr is drained (read and dropped) so it cannot block. */
  stderrSentinel?: Sentinel | SentinelFactory;
  /**
   * POSIX preset only: `'capture'` (default) cuts each command's stderr exactly with a
   * marker of its own; `'merge'` sends it into stdout (`2>&1`, in the order written);
   * `'drain'` drops it. The last two save a marker and a wake-up per run (a little faster).
   */
  stderr?: PosixStderr;
  /** Where the program runs. Default `'local'`. Where it can, it gets its own process group, killed as a group. */
  transport?: ShellTransport;
  /** Milliseconds between TERM and KILL when the program is killed. Default `DEFAULT_KILL_TIMEOUT` (5000) where the transport sets it. */
  killTimeout?: number;
  /**
   * Bytes of one stream a `run('text')` collects, as `run()`'s option of the same name: past
   * it the run rejects with `LimitError` (`limit: 'maxBuffer'`), the rest of that command's
   * output is read and dropped, and the shell stays usable. A commander's output is not
   * collected, so not capped. Default `DEFAULT_MAX_BUFFER` (64 MiB); `Infinity`: none.
   */
  maxBuffer?: number;
  /**
   * Local transport: contain the shell (see `LocalChannelOptions.contain`), so that every
   * process it starts — `&` jobs, `set -m` jobs in groups of their own, `setsid` children —
   * ends with it: at `stop()` (a session ending is a hang-up), `close()`, a timeout, a crash,
   * and when this process dies. Needs procsock's reaper (built with the native addon).
   * Default: true where the reaper is built (a shell pays its exec and fork once); `false`
   * is how jobs are explicitly detached. Without it, the shell's process group is what is
   * stopped.
   */
  contain?: boolean;
  /**
   * Local transport: a delegated cgroup v2 directory the contained shell gets a leaf cgroup
   * of its own in (see `LocalChannelOptions.cgroup`): every process it starts is in it, and
   * stopping the shell kills the cgroup. Needs containment (`contain` not false). A daemon
   * chooses its runs' cgroups itself (`procsock serve --cgroup`): refused there at `start()`.
   */
  cgroup?: string;
  /**
   * Run the program on a terminal (PTY mode: `true`, or `{ columns, rows }`): it and its
   * commands write to a terminal (`isatty(1)`, `stty size`, colours, line-buffered output)
   * while each run's stdout, stderr and status are framed as usual. The terminal is raw
   * (`pty.raw`: bytes unchanged, no echo of the commands sent) and stderr stays a pipe (the
   * runs' stderr); commands read /dev/null, so none can swallow the next — unless
   * `interactive`. Needs the native backend locally, or a procsock daemon.
   *
   * `interactive: true` (bash through the POSIX preset, and the python preset): the terminal is
   * also every command's stdin (`test -t 0`, `read x`, `input()`, prompts), and `write()` types
   * into the run now out. The terminal stays raw (no echo, no line editing, no ^C/^D: the bytes
   * written are what the program reads; a program may change the modes, which are put back
   * after each run), and what a run leaves unread of its input is dropped before the next.
   */
  pty?: boolean | ShellPtyOptions;
}

/** A Shell's terminal: its window size, and whether commands read it (see `ShellOptions.pty`). */
export type ShellPtyOptions = Omit<PtyOptions, 'stderr' | 'raw'> & { interactive?: boolean };

/** `Shell.python`, `Shell.node`, `Shell.sqlite`: their program has a default too. */
export type ReplShellOptions = Omit<
  ShellOptions,
  'program' | 'sentinel' | 'stderrSentinel' | 'terminator' | 'stderr'
> & {
  program?: string;
};

export type PosixShellOptions = Omit<
  ShellOptions,
  'program' | 'sentinel' | 'stderrSentinel' | 'terminator'
> & {
  /** `sh` by default; `bash`, `dash`, `zsh` work the same. */
  program?: string;
};

export interface ShellResult {
  readonly command: string;
  /** The command's exit status (POSIX preset); null when the sentinels cannot report it. */
  readonly exitCode: number | null;
  /** The command's output, when run with a string; '' when a commander received it. */
  readonly stdout: string;
  readonly stderr: string;
}

export const DEFAULT_START_TIMEOUT = 10_000;
export const DEFAULT_RUN_TIMEOUT = 60_000;
export const DEFAULT_STOP_TIMEOUT = 10_000;

interface Job {
  readonly commander: Commander;
  readonly collect: CollectCommander | null;
  readonly timeout: number;
  resolve(result: ShellResult): void;
  reject(error: unknown): void;
}

/** The command (or start-up probe) whose sentinels are awaited. */
interface Exchange {
  readonly job: Job;
  /** Replaced once for the start-up probe, when the channel is known (see #attach). */
  frame: Frame;
  readonly startup: boolean;
  readonly parseStdout: (data: Buffer) => void;
  readonly parseStderr: (data: Buffer) => void;
  stdoutDone: boolean;
  stderrDone: boolean;
  parserError: unknown;
}

interface StopRequest {
  resolve(): void;
  reject(error: unknown): void;
  timer: NodeJS.Timeout | null;
}

const STDERR_TAIL = 400;

export class Shell {
  readonly #program: string;
  readonly #argv: readonly string[];
  readonly #options: ShellOptions;
  readonly #framing: Framing;
  readonly #transport: Transport;
  readonly #maxBuffer: number;
  /** PTY mode: the terminal asked for (raw, stderr on its pipe), or undefined. */
  readonly #terminal: Terminal | undefined;
  /** Parsers (Node Writables) that said they are full: the output is paused until they drain. */
  readonly #fullParsers = new Set<OutputParser>();
  /** `pty.interactive`: commands read the terminal, and `write()` types into it. */
  readonly #interactive: boolean;
  /** The last channel's kind and when start() was called: for what error messages say. */
  #channelKind = 'local';
  #startedAt = 0;
  #state: ShellState = 'off';
  #channel: ProcessChannel | null = null;
  #channelError: ProcsockError | null = null;
  #exchange: Exchange | null = null;
  readonly #queue: Job[] = [];
  #stopRequest: StopRequest | null = null;
  /** Set when the driver itself ends the program (timeout, close); what pending calls get. */
  #killReason: ProcsockError | null = null;
  #closeWaiters: (() => void)[] = [];
  #lastFailure: ProcsockError | null = null;
  #stderrTail: Buffer | null = null;
  /**
   * The start's and the runs' clock: one timer, restarted for each exchange (a timer made and
   * cleared per run cost several µs of this process's CPU), and what holds the event loop
   * while an exchange is out (ref'ing and unref'ing the channel's handles per run cost more).
   * Its duration is the exchange's timeout, or the longest a timer waits when it has none.
   */
  #clock: NodeJS.Timeout | null = null;
  #clockDuration = 0;
  /** Whether the channel holds the event loop: from its start until the shell is first idle, and in stop(). */
  #channelHeld = false;

  /** A shell for sh/bash/dash/zsh with per-run random markers and exit statuses. */
  static posix(options: PosixShellOptions = {}): Shell {
    refusePresetSentinel(options, 'posix');
    return new Shell({ ...options, program: options.program ?? 'sh', sentinel: 'posix' });
  }

  /**
   * Python (`python3` by default) through a driver of ours: each command compiled whole (blocks
   * need no closing blank line), state kept, a last expression shown, an exception's traceback
   * on stderr with status 1. `args` go to the interpreter before the driver (e.g. `['-X', 'dev']`).
   */
  static python(options: ReplShellOptions = {}): Shell {
    refusePresetSentinel(options, 'python');
    return new Shell({ ...options, program: options.program ?? 'python3', sentinel: 'python' });
  }

  /** Node (`node` by default) through a driver of ours: as `Shell.python`, in one global scope. */
  static node(options: ReplShellOptions = {}): Shell {
    refusePresetSentinel(options, 'node');
    return new Shell({ ...options, program: options.program ?? 'node', sentinel: 'node' });
  }

  /**
   * The `sqlite3` shell on `database` (default: a private in-memory one): statements and
   * dot-commands, each run's errors on its stderr; `exitCode` is null (sqlite3 reports none).
   */
  static sqlite(options: ReplShellOptions & { database?: string } = {}): Shell {
    refusePresetSentinel(options, 'sqlite');
    const { database, ...rest } = options;
    const args = [...(rest.args ?? []), ...(database === undefined ? [] : [database])];
    return new Shell({ ...rest, args, program: rest.program ?? 'sqlite3', sentinel: 'sqlite' });
  }

  /** Checks the options at once (ArgumentError); the program starts with `start()`. */
  constructor(options: ShellOptions) {
    if (typeof options?.program !== 'string' || options.program === '') {
      throw new ArgumentError('a shell needs a program (e.g. "bash")');
    }
    refuseUnknownShellOptions(options);
    const transport = resolveTransport(options.transport ?? 'local');
    if (options.killTimeout !== undefined) checkDuration('killTimeout', options.killTimeout);
    if (options.cgroup !== undefined) {
      if (typeof options.cgroup !== 'string' || options.cgroup === '') {
        throw new ArgumentError('cgroup must be a cgroup v2 directory (an absolute path)');
      }
      if (options.contain === false) {
        throw new ArgumentError('cgroup needs a contained shell: drop contain: false');
      }
    }
    const preset = options.sentinel;
    const interactive = interactiveTerminal(options.pty);
    if (interactive && preset !== 'posix' && preset !== 'python') {
      throw new ArgumentError(
        'pty.interactive: commands read the terminal with the posix (bash) and python presets only' +
          (preset === 'node' ? " (node's driver reads its requests ahead, as its own)" : ''),
      );
    }
    this.#interactive = interactive;
    if (preset === 'python' || preset === 'node' || preset === 'sqlite') {
      if (options.stderrSentinel || options.terminator || options.stderr !== undefined) {
        throw new ArgumentError(
          `the ${preset} preset makes its own sentinels; drop stderrSentinel/terminator/stderr`,
        );
      }
      this.#framing =
        preset === 'python'
          ? DriverFraming.python(interactive)
          : preset === 'node'
            ? DriverFraming.node()
            : new SqliteFraming();
    } else if (options.sentinel === 'posix') {
      if (options.stderrSentinel || options.terminator) {
        throw new ArgumentError(
          'the POSIX preset makes its own sentinels; drop stderrSentinel/terminator',
        );
      }
      const stderr = options.stderr ?? 'capture';
      if (!['capture', 'merge', 'drain'].includes(stderr)) {
        throw new ArgumentError(`stderr: expected 'capture', 'merge' or 'drain', not ${stderr}`);
      }
      this.#framing = new PosixFraming(stderr, interactive);
    } else {
      if (options.stderr !== undefined) {
        throw new ArgumentError(
          'the stderr option is for the POSIX preset; here give a stderrSentinel, or none to drain',
        );
      }
      const sentinel = options.sentinel;
      if (!sentinel || typeof sentinel === 'string') {
        throw new ArgumentError(
          `a shell needs a stdout sentinel, or one of the presets 'posix', 'python', 'node', 'sqlite'${sentinel ? `, not ${JSON.stringify(sentinel)}` : ''}`,
        );
      }
      this.#framing = new SentinelFraming(
        options.terminator ?? '',
        sentinel,
        options.stderrSentinel ?? null,
      );
    }
    const maxBuffer = checkByteCount('maxBuffer', options.maxBuffer ?? DEFAULT_MAX_BUFFER);
    this.#maxBuffer = maxBuffer;
    this.#terminal = shellTerminal(options.pty);
    if (this.#terminal && preset !== 'posix' && preset !== 'python' && preset !== 'node') {
      // sqlite3 prompts on a terminal; a sentinel of the user's has no way to end on a raw one.
      throw new ArgumentError(
        'pty: a Shell runs on a terminal with the posix, python and node presets',
      );
    }
    this.#program = options.program;
    this.#argv = this.#framing.launch([options.program, ...(options.args ?? [])]);
    this.#options = options;
    this.#transport = transport;
  }

  get state(): ShellState {
    return this.#state;
  }

  /** The program's pid while it runs, where the transport knows it (a local child; not a daemon). */
  get pid(): number | undefined {
    return this.#channel?.pid;
  }

  /** Commands queued behind the running one. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Launches the program and proves that its sentinels work. Needs state off. */
  start(timeout: number = DEFAULT_START_TIMEOUT): Promise<void> {
    const bad = badTimeout(timeout);
    if (bad) return bad;
    if (this.#state !== 'off') return this.#wrongState('start()', 'off');
    this.#state = 'starting';
    this.#startedAt = Date.now();
    this.#killReason = null;
    this.#lastFailure = null;
    this.#channelError = null;
    this.#stderrTail = null;
    return new Promise<void>((resolve, reject) => {
      const job: Job = {
        commander: new DiscardCommander(''),
        collect: null,
        timeout,
        resolve: () => resolve(),
        reject,
      };
      // The clock runs from here: connecting to a daemon counts against the start timeout.
      if (!this.#begin(job, true)) return;
      this.#open().then(
        (channel) => this.#attach(channel),
        (error: unknown) => {
          if (this.#exchange?.job !== job) return;
          this.#clearExchange();
          this.#dropClock();
          this.#state = 'off';
          reject(error);
          this.#notifyClosed();
        },
      );
    });
  }

  /**
   * Runs one command and resolves when all of its output has been seen. A string's output
   * is collected into the result; a commander's goes to its parsers. Needs state idle or
   * running (then it waits its turn). `timeout` (ms, 0 = none) counts from when the
   * command is sent, not while it waits in the queue.
   */
  run(command: string | Commander, timeout: number = DEFAULT_RUN_TIMEOUT): Promise<ShellResult> {
    const bad = badTimeout(timeout);
    if (bad) return bad;
    const collect =
      typeof command === 'string'
        ? new CollectCommander(command, { maxBuffer: this.#maxBuffer })
        : null;
    const commander = collect ?? (command as Commander);
    if (typeof commander?.command !== 'string') {
      return Promise.reject(
        new ArgumentError('run() needs a command string or a commander with a command'),
      );
    }
    if (this.#state !== 'idle' && this.#state !== 'running') {
      return this.#wrongState('run()', 'idle or running');
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ commander, collect, timeout, resolve, reject });
      this.#next();
    });
  }

  /**
   * `pty.interactive` only: types `data` on the terminal for the run now out (a prompt's
   * answer, `read x`'s line; the first queued run is out as soon as it is sent). The bytes go
   * as they are: the terminal is raw, so end a line with `\n`. What the run leaves unread is
   * dropped before the next run. Returns false when the terminal's input queue is full (the
   * rest is written as the program reads). Throws `ArgumentError` without `pty.interactive` or
   * for a NUL byte (it is what separates runs), `StateError` when no run is out.
   */
  write(data: string | Uint8Array): boolean {
    if (!this.#interactive) {
      throw new ArgumentError(
        "write(): commands read /dev/null; give the Shell pty: { interactive: true } to type into a command's terminal",
      );
    }
    const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
    if (bytes.includes(0)) {
      throw new ArgumentError('write(): a NUL byte cannot be typed (it separates the runs)');
    }
    const exchange = this.#exchange;
    if (this.#state !== 'running' || !exchange || exchange.startup || !this.#channel) {
      throw new StateError(`write() needs a run out (the shell is ${this.#state})`);
    }
    return this.#channel.write(bytes);
  }

  /**
   * PTY mode (`pty`): sets the shell's terminal window size in character cells, 1 to 65535,
   * while it runs (idle or running a command): the terminal's foreground process group gets
   * SIGWINCH, and later `stty size </dev/tty`, `$COLUMNS` of a new program, `tput cols` see
   * it. Locally at once, through a procsock daemon one more message. Throws `ArgumentError`
   * for a bad size or without `pty`, `StateError` when the shell is not started.
   */
  resize(columns: number, rows: number): void {
    checkWindowSide('columns', columns);
    checkWindowSide('rows', rows);
    if (!this.#terminal) {
      throw new ArgumentError(
        'resize(): the shell has no terminal; give the Shell pty: true (or { columns, rows })',
      );
    }
    const channel = this.#channel;
    if ((this.#state !== 'idle' && this.#state !== 'running') || !channel) {
      throw new StateError(`resize() needs the shell started (it is ${this.#state})`);
    }
    channel.resize(columns, rows);
  }

  /**
   * Sends a final command (e.g. `exit`, `quit`), or nothing, then end-of-file, and waits
   * for the program to exit. Resolves on exit 0; rejects with `ShellCrashError` otherwise
   * and with `ShellTimeoutError` (program killed) when it does not exit in time. Needs
   * state idle: await your runs first.
   */
  stop(timeout: number = DEFAULT_STOP_TIMEOUT, command?: string): Promise<void> {
    const bad = badTimeout(timeout);
    if (bad) return bad;
    if (this.#state !== 'idle') return this.#wrongState('stop()', 'idle');
    this.#state = 'stopping';
    const channel = this.#channel!;
    channel.ref();
    this.#channelHeld = true;
    return new Promise((resolve, reject) => {
      const timer = hasDeadline(timeout)
        ? setTimeout(
            () =>
              this.#kill(
                new ShellTimeoutError(
                  `the shell (${this.#program}) did not exit within ${timeout} ms of stop(); it was killed`,
                ),
              ),
            timeout,
          )
        : null;
      this.#stopRequest = { resolve, reject, timer };
      channel.write(
        channel.terminal ? this.#terminalFinalInput(command) : this.#framing.finalInput(command),
      );
      channel.end();
    });
  }

  /**
   * stop()'s input on a terminal, which is raw: there, ending stdin is no end of file, so the
   * final input ends the program itself — `exit` after the command (the shell exits with its
   * status, as at end of file), or one more request for the driver (`SystemExit`, `exit()`).
   */
  #terminalFinalInput(command: string | undefined): string {
    const framing = this.#framing;
    switch (this.#options.sentinel) {
      case 'posix':
        return framing.finalInput(`${command ?? 'true'}\nexit`);
      case 'python':
        return framing.finalInput(command) + framing.finalInput('raise SystemExit');
      default:
        return framing.finalInput(command) + framing.finalInput('process.exit()');
    }
  }

  /**
   * Kills the program (TERM to its group, KILL after `killTimeout`) and resolves once it
   * is gone; pending and queued calls reject with a `StateError`. Idempotent.
   */
  close(): Promise<void> {
    if (this.#state === 'off') return Promise.resolve();
    const closed = new Promise<void>((resolve) => this.#closeWaiters.push(resolve));
    this.#kill(new StateError('the shell was closed by close() before this call finished'));
    return closed;
  }

  #wrongState<T>(call: string, needed: string): Promise<T> {
    const why = this.#state === 'off' && this.#lastFailure ? ` (${this.#lastFailure.message})` : '';
    return Promise.reject(
      new StateError(`${call} needs the shell ${needed}, but it is ${this.#state}${why}`, {
        cause: this.#lastFailure ?? undefined,
      }),
    );
  }

  /** Starts the program through the transport, in a process group of its own where the transport can. */
  async #open(): Promise<ProcessChannel> {
    const { cwd, env, killTimeout, cgroup } = this.#options;
    const launch = await this.#transport.prepare();
    // Locally: a process group of its own, contained, and a shell's exit ends its session at
    // once — jobs holding its pipes are not waited for. Through a daemon, only what the caller
    // set: the daemon decides these for all its programs, and asking would need the protocol
    // extension, which a plain sockexec daemon (the C one) does not speak.
    const local = launch.socket === undefined;
    const processGroup = (local && launch.honours('processGroup')) || undefined;
    const contain =
      local && launch.honours('contain')
        ? (this.#options.contain ?? (cgroup !== undefined || reaperAvailable()))
        : this.#options.contain;
    const exitGrace = local && launch.honours('exitGrace') ? 0 : undefined;
    const request: LaunchRequest = {
      argv: this.#argv,
      cwd,
      env,
      killTimeout,
      processGroup,
      contain,
      exitGrace,
      pty: this.#terminal,
      cgroup,
    };
    return startChannel(launch, request, this.#transport);
  }

  #attach(channel: ProcessChannel): void {
    this.#channel = channel;
    this.#fullParsers.clear(); // they held the last channel back, not this one
    this.#channelHeld = true; // a new channel holds the event loop
    this.#channelKind = channel.kind;
    channel.on('output', (chunk) => {
      if (channel === this.#channel) this.#onOutput(chunk);
    });
    channel.on('error', (error) => {
      if (channel === this.#channel) this.#channelError = error;
    });
    channel.on('close', () => {
      if (channel === this.#channel) this.#onClose(channel);
    });
    if (channel.closed) {
      // It ended before we could listen (an exec failure reported at once): no event will come.
      this.#onClose(channel);
      return;
    }
    if (this.#killReason) {
      channel.destroy();
      return;
    }
    // Where the channel reads what is pending at once (a local child), stderr needs no marker
    // of its own: its rest is read at the stdout marker.
    const setup = this.#framing.setup(channel.readsPendingOutput);
    if (setup) channel.write(setup);
    const exchange = this.#exchange;
    if (!exchange) return;
    if (exchange.startup) {
      // The setup may have changed the frames (no stderr marker when the channel reads its
      // pipes at once): the probe is framed again.
      exchange.frame = this.#framing.frame(null);
      exchange.stderrDone = exchange.frame.stderr === null && !exchange.frame.stderrUntilStdout;
    }
    channel.write(exchange.frame.input);
  }

  #next(): void {
    if (this.#state !== 'idle') return;
    const job = this.#queue.shift();
    // Idle, an unstopped shell does not keep this process alive (as an unref'd socket); a
    // run, a start and a stop do.
    if (!job) {
      if (this.#channelHeld) this.#channel?.unref();
      this.#channelHeld = false;
      return;
    }
    this.#state = 'running';
    if (this.#begin(job, false)) this.#channel!.write(this.#exchange!.frame.input);
  }

  /** Frames the job and arms its timer; false (job rejected, shell idle) if framing failed. */
  #begin(job: Job, startup: boolean): boolean {
    let frame: Frame;
    try {
      frame = this.#framing.frame(startup ? null : job.commander.command);
    } catch (error) {
      this.#state = startup ? 'off' : 'idle';
      job.reject(error);
      queueMicrotask(() => this.#next());
      return false;
    }
    const exchange: Exchange = {
      job,
      frame,
      startup,
      stdoutDone: false,
      stderrDone: frame.stderr === null && !frame.stderrUntilStdout,
      parserError: null,
      parseStdout: (data) => this.#feed(exchange, job.commander.stdout, data),
      parseStderr: (data) => {
        this.#keepStderrTail(data);
        this.#feed(exchange, job.commander.stderr, data);
      },
    };
    this.#exchange = exchange;
    this.#armClock(hasDeadline(job.timeout) ? job.timeout : MAX_TIMER);
    return true;
  }

  /** Starts the clock for the exchange just begun (see #clock); it holds the event loop. */
  #armClock(duration: number): void {
    const clock = this.#clock;
    if (clock && this.#clockDuration === duration) {
      clock.refresh().ref();
      return;
    }
    if (clock) clearTimeout(clock);
    this.#clockDuration = duration;
    this.#clock = setTimeout(() => this.#clockRang(), duration);
  }

  /**
   * The clock rang `#clockDuration` after the latest exchange began (each one restarts it): that
   * one timed out, if it is still out and has a deadline. Idle, it is an old run's clock.
   */
  #clockRang(): void {
    const exchange = this.#exchange;
    if (!exchange) return;
    if (hasDeadline(exchange.job.timeout)) this.#kill(this.#timeoutError(exchange));
    else this.#clock?.refresh();
  }

  /** The shell is off: its clock goes (it would keep this Shell for as long as it waits). */
  #dropClock(): void {
    if (this.#clock) clearTimeout(this.#clock);
    this.#clock = null;
  }

  #feed(exchange: Exchange, parser: OutputParser | undefined, data: Buffer): void {
    if (!parser || exchange.parserError) return;
    let accepted: unknown;
    try {
      accepted = parser.write(data);
    } catch (error) {
      exchange.parserError = parserFailure(error, 'write');
      return;
    }
    if (accepted === false) this.#holdFor(parser);
  }

  /**
   * A parser that is a Node Writable said it is full (`write()` false): the shell's output is
   * paused until it drains, so a slow sink holds the program back — as run()'s callbacks and
   * streams do — instead of everything piling up in the Writable (and the run resolving while
   * most of its output is still queued there). One that closes or errors lets go too.
   */
  #holdFor(parser: OutputParser): void {
    const channel = this.#channel;
    const emitter = parser as Partial<NodeJS.EventEmitter>;
    if (!channel || typeof emitter.once !== 'function' || this.#fullParsers.has(parser)) return;
    this.#fullParsers.add(parser);
    if (this.#fullParsers.size === 1) channel.pause();
    const release = () => {
      emitter.off?.('drain', release);
      emitter.off?.('close', release);
      emitter.off?.('error', release);
      if (!this.#fullParsers.delete(parser)) return;
      if (this.#fullParsers.size === 0 && this.#channel === channel) channel.resume();
    };
    emitter.once('drain', release);
    emitter.once('close', release);
    emitter.once('error', release);
  }

  #onOutput({ type, data }: OutputChunk): void {
    const exchange = this.#exchange;
    if (type === 'stdout') {
      if (!exchange || exchange.stdoutDone) return;
      exchange.stdoutDone = exchange.frame.stdout.push(data, exchange.parseStdout);
      if (exchange.stdoutDone && !exchange.stderrDone && exchange.frame.stderrUntilStdout) {
        // The shell wrote the command's stderr before this marker: what we have not read of it
        // is in the pipe now, and comes through #onOutput before this returns.
        this.#channel?.readPendingOutput('stderr');
        exchange.stderrDone = true;
      }
    } else if (type === 'stderr') {
      // Drained (no sentinel, or between commands): kept only as the tail for crash messages.
      if (!exchange || exchange.stderrDone) {
        this.#keepStderrTail(data);
        return;
      }
      if (exchange.frame.stderr) {
        exchange.stderrDone = exchange.frame.stderr.push(data, exchange.parseStderr);
      } else {
        exchange.parseStderr(data);
      }
    } else {
      return;
    }
    if (exchange.stdoutDone && exchange.stderrDone) this.#finish(exchange);
  }

  /** Both sentinels seen: the command is done and the shell is ready for the next one. */
  #finish(exchange: Exchange): void {
    const refusal = exchange.startup ? (this.#framing.refusal?.() ?? null) : null;
    if (refusal) {
      // The program answered but cannot run as asked (dash on an interactive terminal): it is
      // killed, and start() rejects with why once the shell is off (#onClose).
      this.#kill(refusal);
      return;
    }
    this.#clearExchange();
    const { job } = exchange;
    this.#state = 'idle';
    let result: ShellResult | null = null;
    if (!exchange.parserError) {
      try {
        result = {
          command: job.commander.command,
          exitCode: exchange.frame.exitCode(),
          stdout: job.collect?.stdout.text ?? '',
          stderr: job.collect?.stderr.text ?? '',
        };
      } catch (error) {
        // Joined, the output is longer than a string can be (maxBuffer: Infinity).
        exchange.parserError = new LimitError(
          `the command's output is too long for a string (${describeError(error)}); lower maxBuffer ` +
            'or give run() a commander that streams it',
          'maxBuffer',
        );
      }
    }
    if (result) job.resolve(result);
    else job.reject(exchange.parserError);
    this.#next();
  }

  /** Ends the pending exchange: stops its clock and lets its parsers flush. */
  #clearExchange(): Exchange | null {
    const exchange = this.#exchange;
    if (!exchange) return null;
    this.#exchange = null;
    // No exchange out: the clock may still ring (see #clockRang), but holds nothing.
    this.#clock?.unref();
    const { stdout, stderr } = exchange.job.commander;
    for (const parser of [stdout, stderr]) {
      try {
        parser?.end?.();
      } catch (error) {
        exchange.parserError ??= parserFailure(error, 'end');
      }
    }
    return exchange;
  }

  /** Gives up on the program: it is killed, and `reason` is what pending calls get. */
  #kill(reason: ProcsockError): void {
    this.#killReason ??= reason;
    this.#state = 'stopping';
    this.#channel?.destroy();
  }

  #onClose(channel: ProcessChannel): void {
    this.#channel = null;
    this.#channelHeld = false;
    const status = channel.exitStatus;
    const exchange = this.#clearExchange();
    this.#dropClock();
    const stop = this.#stopRequest;
    this.#stopRequest = null;
    if (stop?.timer) clearTimeout(stop.timer);
    const reason = this.#killReason ?? (stop ? null : this.#unexpectedEnd(status, exchange));
    this.#killReason = null;
    this.#state = 'off';
    if (stop) {
      if (reason) stop.reject(reason);
      else if (status?.exitCode === 0 || this.#framing.cleanStop?.(status)) stop.resolve();
      else stop.reject(this.#crashError(status, 'after stop()'));
    }
    if (reason) {
      this.#lastFailure = reason;
      exchange?.job.reject(reason);
      for (const job of this.#queue.splice(0)) {
        job.reject(
          new StateError(`the shell ended before this command was sent: ${reason.message}`, {
            cause: reason,
          }),
        );
      }
    }
    this.#notifyClosed();
  }

  #notifyClosed(): void {
    for (const resolve of this.#closeWaiters.splice(0)) resolve();
  }

  #unexpectedEnd(status: ExitStatus | null, exchange: Exchange | null): ProcsockError {
    // An option the transport turned out not to honour (a daemon without the protocol
    // extension refused cwd, say): that is the error, not a crash of a shell that never ran.
    if (this.#channelError instanceof UnsupportedOptionError) return this.#channelError;
    const doing = !exchange
      ? 'while idle'
      : exchange.startup
        ? 'before answering its start-up sentinel'
        : `while running ${preview(exchange.job.commander.command)}`;
    if (status?.exitCode === 0) {
      return new ShellExitError(
        `the shell (${this.#program}) exited with code 0 ${doing}, without being asked to ` +
          '(end it with stop()); start() it again',
      );
    }
    return this.#crashError(status, doing);
  }

  #crashError(status: ExitStatus | null, doing: string): ProcsockError {
    const how =
      status === null
        ? `ended without an exit status${this.#channelError ? ` (${this.#channelError.message})` : ''}`
        : status.termSignal !== null
          ? `was killed by SIG${status.termSignal}`
          : `exited with code ${status.exitCode}`;
    const tail = this.#stderrTail?.toString('utf8').trim();
    // Through a daemon, a TERM (or the KILL after it) nobody here sent is most likely the
    // daemon's own deadline, which a plain reply cannot tell from `kill $$`.
    const seconds = ((Date.now() - this.#startedAt) / 1000).toFixed(1);
    const deadline =
      this.#channelKind !== 'local' &&
      (status?.termSignal === 'TERM' || status?.termSignal === 'KILL')
        ? ` (${seconds} s after start(): if nothing in the shell sent it, this is the daemon's ` +
          'deadline, -t, 60 s from connect by default, which ends the whole shell; serve ' +
          'long-lived shells with procsock serve -t 0)'
        : '';
    return new ShellCrashError(
      `the shell (${this.#program}) ${how}${deadline} ${doing}${tail ? ` — its last stderr: ${JSON.stringify(tail)}` : ''}; start() it again`,
      {
        cause: this.#channelError ?? undefined,
        exitCode: status?.exitCode ?? null,
        termSignal: status?.termSignal ?? null,
      },
    );
  }

  #timeoutError(exchange: Exchange): ShellTimeoutError {
    const { timeout, commander, collect } = exchange.job;
    // What the command printed so far is the best clue to why it hung: kept on the error.
    const printed = exchange.startup || !collect ? {} : collectedText(collect);
    return new ShellTimeoutError(
      exchange.startup
        ? `the shell (${this.#program}) did not answer its sentinel within ${timeout} ms of start(); ` +
            'it was killed (check the sentinel command and value)'
        : `${preview(commander.command)} did not finish within ${timeout} ms; ${this.#howKilled()}; ` +
            'start() it again',
      printed,
    );
  }

  /** What killing the shell did, as far as this side knows. */
  #howKilled(): string {
    if (this.#channelKind === 'local') {
      return `the shell (${this.#program}) was killed with its process group`;
    }
    return (
      `the connection to the daemon was closed, so the daemon stops the shell (${this.#program}); ` +
      'what the shell started is stopped too only if the daemon runs with --kill-group'
    );
  }

  #keepStderrTail(data: Buffer): void {
    this.#stderrTail = data.length > STDERR_TAIL ? data.subarray(data.length - STDERR_TAIL) : data;
  }
}

/** A rejection for a timeout that is not a duration (promise-returning calls never throw), else null. */
function badTimeout(timeout: number): Promise<never> | null {
  try {
    checkDuration('timeout', timeout);
    return null;
  } catch (error) {
    return Promise.reject(error);
  }
}

function preview(command: string): string {
  const line = command.trim().split('\n')[0] ?? '';
  const short = line.length > 60 ? `${line.slice(0, 57)}...` : line;
  return JSON.stringify(command.includes('\n') ? `${short} …` : short);
}

/**
 * The Shell's terminal: raw, so that what the framing sends arrives unchanged and unechoed,
 * with stderr on its own pipe, so that each run's stderr stays its own.
 */
function shellTerminal(pty: ShellOptions['pty']): Terminal | undefined {
  if (pty !== undefined && pty !== false && typeof pty === 'object') {
    const { interactive: _, ...terminal } = pty;
    pty = terminal;
    for (const key of ['stderr', 'raw']) {
      if (key in pty) {
        throw new ArgumentError(
          `pty.${key}: a Shell's terminal is always raw with stderr on its own pipe (each run's stderr is its own)`,
        );
      }
    }
  }
  const terminal = resolveTerminal(pty);
  return terminal ? { ...terminal, raw: true, stderr: 'pipe' } : undefined;
}

/** `pty.interactive`, checked: a boolean, and only on a terminal. */
function interactiveTerminal(pty: ShellOptions['pty']): boolean {
  if (pty === null || typeof pty !== 'object' || !('interactive' in pty)) return false;
  const { interactive } = pty;
  if (interactive !== undefined && typeof interactive !== 'boolean') {
    throw new ArgumentError(`pty.interactive: expected a boolean, not ${typeof interactive}`);
  }
  return interactive === true;
}

/** Every key of `ShellOptions` (and `database`, which only `Shell.sqlite` takes and removes). */
const SHELL_OPTION_KEYS: ReadonlySet<string> = new Set([
  'program',
  'args',
  'cwd',
  'env',
  'terminator',
  'sentinel',
  'stderrSentinel',
  'stderr',
  'transport',
  'killTimeout',
  'maxBuffer',
  'contain',
  'cgroup',
  'pty',
] satisfies (keyof ShellOptions)[]);

/** What to do instead, for options a caller of run() or spawn() would reach for. */
const SHELL_INSTEAD: Readonly<Record<string, string>> = {
  timeout: 'give each call its own: start(ms), run(command, ms), stop(ms)',
  signal: 'a Shell takes no AbortSignal: close() kills it, and a run takes a timeout',
  idleTimeout: 'a run takes a wall-clock timeout: run(command, ms)',
  processGroup: 'a local Shell always has a process group of its own',
  detached: 'a Shell ends with this process; contain: false lets its jobs outlive it',
};

/** A Shell option that is not one is refused, never ignored (a typo would silently do nothing). */
function refuseUnknownShellOptions(options: object): void {
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined || SHELL_OPTION_KEYS.has(key)) continue;
    const instead = SHELL_INSTEAD[key];
    throw new ArgumentError(
      `unknown Shell option ${JSON.stringify(key)}${instead ? `: ${instead}` : ''}`,
    );
  }
}

/** A preset makes its own sentinel: one given to it would be overridden, so it is refused. */
function refusePresetSentinel(options: object, preset: string): void {
  if ((options as { sentinel?: unknown }).sentinel !== undefined) {
    throw new ArgumentError(
      `the ${preset} preset makes its own sentinel; drop sentinel (or use new Shell({ sentinel }))`,
    );
  }
}

/**
 * What a parser threw, as the run's error: an error as it is; nothing (`throw undefined`,
 * `throw 0`) as an Error saying so — a falsy failure used to make the run succeed.
 */
function parserFailure(error: unknown, call: 'write' | 'end'): unknown {
  return (
    error || new Error(`an output parser's ${call}() threw ${String(error)}`, { cause: error })
  );
}

/** A collecting run's output so far; nothing when joining it fails (longer than a string). */
function collectedText(collect: CollectCommander): { stdout?: string; stderr?: string } {
  try {
    return { stdout: collect.stdout.text, stderr: collect.stderr.text };
  } catch {
    return {};
  }
}

/**
 * One client connection of the daemon: the request (argc, argv, stdin) is parsed as it
 * arrives, the program runs in a `LocalChannel`, and its output and exit go back as reply
 * pairs. Flow control is end to end: a full program stdin pauses the socket, a full
 * socket pauses the program's pipes.
 *
 *              args complete                 exit written,
 *   reading ─────────────────► running ─────────────────────► replying ──flushed──► closed
 *      │                          │                               │                   ▲
 *      │ EOF, error, violation,   │ EOF, error, violation:        │ client gone,      │
 *      │ deadline, shutdown       │ channel.destroy()             │ deadline          │
 *      │                          ▼                               │                   │
 *      │                      abandoned ──program reaped──────────┼───────────────────┤
 *      └──────────────────────────────────────────────────────────┴───────────────────┘
 *
 * `closed` settles once the socket is closed and the program (if one was started) has
 * been reaped with its pipes closed: nothing the connection opened is left behind.
 * The deadline (and shutdown) only TERMs the program, KILL following after the kill
 * timeout, so the client still learns how it ended; a client that has not taken its reply
 * two kill timeouts after the TERM is dropped.
 *
 * A client that opens with the protocol extension (src/protocol/extension.ts) gets the hello
 * at once, its per-run options checked in ./extension.ts, signals delivered while the
 * program runs, its own stops (`stop`: its timeout, an abort…) carried out as the deadline's
 * are and answered with `stopping`, and `reason` and `usage` before the exit pair. Every connection keeps the
 * reason its run ended for the audit log; only extended clients are sent it.
 */
import type { Socket } from 'node:net';
import { LocalChannel } from '../channel/local.js';
import { naturalEnd } from '../channel/usage.js';
import type { ExitStatus, OutputChunk } from '../core/output.js';
import { signalNumber } from '../core/signals.js';
import type { Terminal } from '../core/terminal.js';
import {
  describeError,
  type ProcsockError,
  ProtocolError,
  SPAWN_ERROR_EXIT_CODE,
} from '../errors.js';
import { peerCredentials, shutdownWrite, watchHangup } from '../native/addon.js';
import type { AuditLog, AuditRecord } from '../policy/audit.js';
import { isRefusal, type LaunchPlan } from '../policy/policy.js';
import {
  type ExtendedRequest,
  type ExtendedRequestHandler,
  encodeHello,
  encodeRunEnd,
  encodeStopping,
  type StopCause,
  type WireReason,
  type WireUsage,
} from '../protocol/extension.js';
import { encodeExit, encodeOutput } from '../protocol/reply.js';
import { RequestDecoder } from '../protocol/request.js';
import { isExtendedRefusal, notUtf8Message, planExtendedRun, uncontainable } from './extension.js';
import type { ResolvedServeOptions } from './options.js';

/** What a plan asks of the spawn: the same for a JS connection and a native one. */
export function planSpawnFields(plan: LaunchPlan) {
  return {
    file: plan.file,
    env: plan.env,
    cwd: plan.cwd,
    uid: plan.identity?.uid,
    gid: plan.identity?.gid,
    rlimits: plan.rlimits,
  };
}

/**
 * Most stdin read ahead of a program's full stdin before the client is paused: more than a
 * client's default socket send buffer (net.core.wmem_default, 208 KiB) holds, so a message a
 * client sends behind the stdin it has in flight is seen at once.
 */
export const READ_AHEAD_BYTES = 512 * 1024;

export type ConnectionState = 'reading' | 'running' | 'replying' | 'abandoned' | 'closed';

export class Connection {
  readonly id: number;
  readonly closed: Promise<void>;
  readonly #socket: Socket;
  readonly #options: ResolvedServeOptions;
  readonly #decoder: RequestDecoder;
  #state: ConnectionState = 'reading';
  #channel: LocalChannel | null = null;
  /** The program's stdin is full: what the client sends meanwhile waits in #stdinQueue. */
  #stdinBlocked = false;
  /**
   * Stdin read ahead of a full program stdin, in order, at most READ_AHEAD_BYTES; then the
   * socket is paused. Reading on is what lets a message behind that stdin (a `stop`, a
   * signal) or the client's end of file be seen at once instead of after the program reads.
   */
  #stdinQueue: Buffer[] = [];
  #queuedBytes = 0;
  /** The stdin terminator was read behind the queue: the program's stdin closes after it. */
  #stdinEndQueued = false;
  #socketPaused = false;
  /** Stops watching the unread socket for a hang-up (set while paused; see #pauseReading). */
  #unwatchHangup: (() => void) | null = null;
  #socketClosed = false;
  #finished = false;
  #deadlineTimer: NodeJS.Timeout | null = null;
  #requestTimer: NodeJS.Timeout | null = null;
  #dropTimer: NodeJS.Timeout | null = null;
  /**
   * The run is being stopped (deadline, shutdown, a stop, a limit): from here a client that
   * takes none of its reply for two kill timeouts is dropped (see #holdDrop).
   */
  #stopping = false;
  /** The socket took no more (write() returned false) and has not drained since. */
  #sendHeld = false;
  #holdTimer: NodeJS.Timeout | null = null;
  #resolveClosed!: () => void;
  readonly #audit: AuditLog | null;
  /** What the audit log will say of this connection, filled in as it goes. */
  readonly #record: AuditRecord;
  readonly #startedAt = performance.now();
  /** Set once a policy limit stopped the program: its further output (or input) is dropped. */
  #outputCapped = false;
  #stdinCapped = false;
  #maxOutput: number | undefined;
  /** The protocol extension's version, once the client opened with it. */
  #extension: number | null = null;
  /** Why procsock stopped the run (the first cause wins), or why it never ran. */
  #stopReason: WireReason | null = null;
  #runTimer: NodeJS.Timeout | null = null;
  /** The header field an extended run was refused for. */
  #refusedField: string | undefined;
  /** The running program's kill timeout (an extended run may have its own). */
  #killTimeout: number;
  /** Set once the client stopped its run: its further output is dropped, a later stop ignored. */
  #clientStopped = false;

  constructor(
    socket: Socket,
    id: number,
    options: ResolvedServeOptions,
    audit: AuditLog | null = null,
  ) {
    this.#socket = socket;
    this.id = id;
    this.#options = options;
    this.#audit = audit;
    this.#record = {
      time: new Date().toISOString(),
      peer: null,
      argv: [],
      pid: null,
      exitCode: null,
      termSignal: null,
      refused: null,
      reason: null,
      usage: null,
      descendantsStopped: null,
      error: null,
      durationMs: 0,
      bytesIn: 0,
      bytesOut: 0,
    };
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.#maxOutput = options.policy.options.maxOutputBytes;
    this.#killTimeout = options.killTimeout;
    this.#decoder = new RequestDecoder(
      {
        onArgs: (argv, notUtf8) => {
          this.#clearRequestTimer();
          this.#startProgram(argv, notUtf8);
        },
        onStdin: (data) => this.#writeStdin(data),
        onStdinEnd: () => this.#endStdin(),
        onExtended: options.extension ? (version) => this.#extend(version) : undefined,
      },
      options.limits,
    );
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** The running program's pid, if it has one (not its reaper's, when the run is contained). */
  get pid(): number | undefined {
    return this.#channel?.programPid;
  }

  /**
   * Starts serving: reads the request, starts the deadline. Call once. A client handed off by
   * the native path (native-connections.ts) comes with the bytes read from it so far and the
   * time it has been served already, which its deadline and request timeout count.
   */
  start(prefix?: Buffer, elapsedMs = 0): void {
    const socket = this.#socket;
    if (this.#audit) {
      const fd = socketFd(socket);
      this.#record.peer = fd === undefined ? null : peerCredentials(fd);
    }
    socket.on('data', (chunk: Buffer) => this.#guard(() => this.#onData(chunk)));
    socket.on('end', () =>
      this.#guard(() => this.#onClientGone('the client closed its end', false)),
    );
    socket.on('error', (error) =>
      this.#guard(() => this.#onClientGone(`socket error: ${describeError(error)}`, true)),
    );
    socket.on('drain', () => this.#guard(() => this.#onSocketDrain()));
    socket.on('close', () => {
      this.#stopHangupWatch();
      this.#socketClosed = true;
      this.#maybeClosed();
    });
    const left = (ms: number) => Math.max(1, Math.round(ms - elapsedMs));
    if (this.#options.timeout > 0) {
      this.#deadlineTimer = setTimeout(
        () => this.#guard(() => this.#onDeadline()),
        left(this.#options.timeout),
      );
    }
    if (this.#options.requestTimeout > 0) {
      this.#requestTimer = setTimeout(
        () => this.#guard(() => this.#onRequestTimeout()),
        left(this.#options.requestTimeout),
      );
    }
    if (prefix && prefix.length > 0) this.#guard(() => this.#onData(prefix));
    socket.resume();
  }

  /**
   * Server shutdown: a program gets TERM (KILL after the kill timeout) and its client the
   * reply; a client still sending its request is closed at once.
   */
  shutdown(): void {
    this.#guard(() => {
      if (this.#state === 'reading') {
        this.#log('closing: the daemon is shutting down');
        this.#stopReason ??= 'shutdown';
        this.#socket.destroy();
      } else if (this.#state === 'running') {
        this.#stopReason ??= 'shutdown';
        this.#terminate('the daemon is shutting down');
      }
      this.#stopping = true;
      this.#holdDrop();
    });
  }

  #onData(chunk: Buffer): void {
    if (this.#state !== 'reading' && this.#state !== 'running') return;
    try {
      this.#decoder.push(chunk);
    } catch (error) {
      this.#record.error ??= `protocol violation: ${describeError(error)}`;
      this.#stopReason ??= 'protocol-violation';
      this.#abandon(`protocol violation: ${describeError(error)}`);
    }
  }

  #startProgram(argv: string[], notUtf8 = -1): void {
    if (!this.#acceptArgv(argv)) return;
    if (notUtf8 >= 0) {
      const what = notUtf8 === 0 ? 'the program name' : `argument ${notUtf8}`;
      const message = notUtf8Message(what);
      this.#refuse(`procsock: ${message}\n`, 126, message, 'spawn-failure');
      return;
    }
    const plan = this.#options.policy.plan(argv);
    if (isRefusal(plan)) {
      const reason = plan.byPolicy ? 'policy-refused' : 'spawn-failure';
      this.#refuse(plan.message, plan.exitCode, plan.message.trim(), reason);
      return;
    }
    this.#spawn(plan, this.#options);
  }

  /** Records argv; refuses an empty program name as a shell would a name it cannot find. */
  #acceptArgv(argv: string[]): boolean {
    this.#record.argv = argv;
    if (argv[0] !== '') return true;
    this.#refuse('procsock: empty program name\n', 127, 'empty program name', 'spawn-failure');
    return false;
  }

  /** The client opened with the protocol extension: greet it, and take its request from here. */
  #extend(version: number): ExtendedRequestHandler {
    this.#extension = version;
    this.#socket.write(encodeHello(version));
    return {
      onHeader: (request) => this.#startExtended(request),
      onStdin: (data) => this.#writeStdin(data),
      onStdinEnd: () => this.#endStdin(),
      onSignal: (name) => this.#signal(name),
      onWindow: (columns, rows) => this.#resize(columns, rows),
      onStop: (cause) => this.#clientStop(cause),
    };
  }

  #startExtended(request: ExtendedRequest): void {
    if (!this.#acceptArgv(request.argv)) return;
    const run = planExtendedRun(request, this.#options);
    if (isExtendedRefusal(run)) {
      this.#refusedField = run.field;
      this.#refuse(run.message, run.exitCode, run.message.trim(), run.reason);
      return;
    }
    this.#maxOutput = run.maxOutput;
    this.#spawn(run.plan, run);
    if (run.timeout !== undefined && this.#state === 'running') {
      this.#runTimer = setTimeout(() => this.#guard(() => this.#onRunTimeout()), run.timeout);
    }
  }

  /** A signal from an extended client, for its running program (a program already gone gets none). */
  #signal(name: string): void {
    if (signalNumber(name) === undefined) {
      throw new ProtocolError(`extended request: no signal named ${JSON.stringify(name)}`);
    }
    const channel = this.#channel;
    if (this.#state !== 'running' || channel === null || channel.closed) return;
    this.#log(`sending ${name} to pid ${channel.pid} at the client's request`);
    channel.kill(`SIG${name}` as NodeJS.Signals);
  }

  /** A window size from an extended client, for its program's terminal (none: nothing to do). */
  #resize(columns: number, rows: number): void {
    const channel = this.#channel;
    if (this.#state !== 'running' || channel === null || channel.closed) return;
    if (!channel.terminal) {
      this.#log(
        `window ${columns}x${rows} from the client ignored: pid ${channel.pid} has no terminal`,
      );
      return;
    }
    this.#log(`window of pid ${channel.pid} set to ${columns}x${rows} at the client's request`);
    channel.resize(columns, rows);
  }

  /**
   * The client stops its run for a cause of its own: the program is stopped as at the deadline
   * (TERM, KILL after the run's kill timeout, descendants with it when contained), its further
   * output dropped (the client gave up on it; the pipes are still read so it cannot block), and
   * the client told when KILL follows, so it waits for the end instead of hanging up. The
   * cause is the run's reason unless another came first. Only the first stop is answered (a
   * client that repeats it without reading gets no growing reply); a run already ending gets
   * none: its end is on the way.
   */
  #clientStop(cause: StopCause): void {
    const channel = this.#channel;
    if (this.#state !== 'running' || channel === null || channel.closed || this.#clientStopped) {
      return;
    }
    this.#clientStopped = true;
    this.#stopReason ??= cause;
    // The client gave up on the run: stdin waiting for the program is dropped, and more with it.
    this.#dropStdinQueue();
    channel.resume();
    this.#socket.write(encodeStopping(this.#killTimeout));
    this.#terminate(`the client stopped the run (${cause})`);
  }

  #onRunTimeout(): void {
    this.#runTimer = null;
    if (this.#state !== 'running') return;
    this.#stopReason ??= 'timeout';
    this.#terminate("the run's own timeout passed");
  }

  #spawn(
    plan: LaunchPlan,
    run: {
      processGroup: boolean;
      killTimeout: number;
      contain: boolean;
      terminal?: Terminal | undefined;
      exitGrace?: number | undefined;
    },
  ): void {
    // Some runs cannot be contained (see uncontainable); an extended client's own choice
    // was checked against that already. A contained run gets its cgroup, where there is one.
    const contained = run.contain && uncontainable(plan) === null;
    const channel = new LocalChannel(plan.argv, {
      ...planSpawnFields(plan),
      processGroup: run.processGroup,
      contain: contained,
      cgroup: contained ? (this.#options.cgroup ?? undefined) : undefined,
      exitGrace: run.exitGrace,
      killTimeout: run.killTimeout,
      pty: run.terminal,
      // Output is only relayed: read it into reused buffers (see #send).
      lendOutput: true,
      onKill: (by) => this.#guard(() => this.#onKill(by)),
    });
    this.#record.pid = channel.pid ?? null;
    this.#channel = channel;
    this.#killTimeout = run.killTimeout;
    this.#state = 'running';
    channel.on('output', (chunk) => this.#guard(() => this.#onOutput(chunk)));
    channel.on('drain', () => this.#guard(() => this.#onStdinDrain()));
    channel.on('exit', (status) => this.#guard(() => this.#onExit(status)));
    channel.on('error', (error) => this.#guard(() => this.#onSpawnError(error)));
    channel.on('close', () => {
      this.#log(`program ${channel.programPid ?? channel.pid ?? '(not started)'} reaped`);
      this.#maybeClosed();
    });
    const reaper = channel.contained ? ' (the reaper of a contained run)' : '';
    const grace = run.exitGrace === undefined ? '' : `, exit grace ${run.exitGrace} ms`;
    this.#log(
      () => `spawn pid ${channel.pid ?? '(failed)'}: ${JSON.stringify(plan.argv)}${reaper}${grace}`,
    );
  }

  /**
   * procsock itself could not start the program (a LocalChannel's one error: no descriptors,
   * no memory): a stderr line and exit status 125, which env, timeout and docker use for a
   * launcher's own failure — a client can tell it from the program's 126 and 127.
   */
  #onSpawnError(error: ProcsockError): void {
    this.#log(`spawn failed: ${describeError(error)}`);
    this.#record.error ??= error.message;
    this.#stopReason = 'spawn-failure';
    this.#onOutput({ type: 'stderr', data: Buffer.from(`procsock: ${error.message}\n`) });
    this.#onExit({ exitCode: SPAWN_ERROR_EXIT_CODE, termSignal: null });
  }

  /** Answers without running anything: a message on stderr and a shell-style exit status. */
  #refuse(message: string, exitCode: number, why: string, reason: WireReason): void {
    this.#log(() => `refused ${JSON.stringify(this.#record.argv)}: ${why}`);
    this.#record.refused = why;
    this.#stopReason = reason;
    this.#state = 'running';
    this.#onOutput({ type: 'stderr', data: Buffer.from(message) });
    this.#onExit({ exitCode, termSignal: null });
  }

  #writeStdin(data: Buffer): void {
    const channel = this.#channel;
    if (channel === null || this.#state !== 'running' || this.#stdinCapped) return;
    if (this.#clientStopped) return;
    const max = this.#options.policy.options.maxStdinBytes;
    this.#record.bytesIn += data.length;
    if (max !== undefined && this.#record.bytesIn > max) {
      this.#stdinCapped = true;
      this.#dropStdinQueue();
      this.#stopAtLimit(`stdin limit of ${max} bytes reached`, 'stdin-limit');
      return;
    }
    if (this.#stdinBlocked) {
      // The decoder's chunk may be a view of the socket's buffer: keep a copy of our own.
      this.#stdinQueue.push(Buffer.from(data));
      this.#queuedBytes += data.length;
      if (this.#queuedBytes >= READ_AHEAD_BYTES) this.#pauseReading();
      return;
    }
    if (!channel.write(data)) this.#stdinBlocked = true;
  }

  /** The stdin terminator: the program's stdin closes once what is queued before it went in. */
  #endStdin(): void {
    // Cut off at the stdin limit, the program is being stopped: it must not read an end of
    // input, which would pass what it got for the whole (`sort > out` writing a truncated
    // result, `cat` exiting 0 before the TERM through a reaper reached it). Its stdin closes
    // at its end.
    if (this.#stdinCapped) return;
    if (this.#stdinBlocked) this.#stdinEndQueued = true;
    else this.#channel?.end();
  }

  /** Stdin waiting for the program is dropped (the run is being stopped, or has ended). */
  #dropStdinQueue(): void {
    this.#stdinQueue = [];
    this.#queuedBytes = 0;
    this.#stdinEndQueued = false;
    this.#stdinBlocked = false;
    this.#resumeReading();
  }

  /**
   * The program's stdin is full and READ_AHEAD_BYTES more wait for it: the client is not read
   * until it drains (back-pressure). Not read, its end of file would go unseen, and a client
   * gone meanwhile would leave its program running (with -t 0, for ever): so its close — full,
   * or a half-close, which while the program runs is a hang-up too (sockexec's rule) — is
   * watched for without reading (native/hangup.c) and handled as the hang-up it is, at once.
   * Without the addon there is no watch: such a hang-up is seen once stdin drains or at -t.
   */
  #pauseReading(): void {
    if (this.#socketPaused) return;
    this.#socketPaused = true;
    this.#socket.pause();
    const fd = socketFd(this.#socket);
    if (fd === undefined) return;
    try {
      this.#unwatchHangup = watchHangup(fd, () =>
        this.#guard(() => this.#onClientGone('the client closed its end', false)),
      );
    } catch (error) {
      this.#log(`cannot watch the paused client for a hang-up: ${describeError(error)}`);
    }
  }

  #resumeReading(): void {
    if (!this.#socketPaused) return;
    this.#socketPaused = false;
    this.#stopHangupWatch();
    if (this.#state === 'running' || this.#state === 'replying') this.#socket.resume();
  }

  /** Called before the socket is read again or closed: the watch holds a dup of it. */
  #stopHangupWatch(): void {
    const unwatch = this.#unwatchHangup;
    this.#unwatchHangup = null;
    unwatch?.();
  }

  /** The program took its stdin: what waited goes in, in order, until it is full again. */
  #onStdinDrain(): void {
    const channel = this.#channel;
    if (!this.#stdinBlocked || channel === null) return;
    this.#stdinBlocked = false;
    while (this.#stdinQueue.length > 0) {
      const data = this.#stdinQueue.shift()!;
      this.#queuedBytes -= data.length;
      if (!channel.write(data)) {
        this.#stdinBlocked = true;
        break;
      }
    }
    if (!this.#stdinBlocked && this.#stdinEndQueued) {
      this.#stdinEndQueued = false;
      channel.end();
    }
    if (this.#queuedBytes < READ_AHEAD_BYTES) this.#resumeReading();
  }

  #onOutput(chunk: OutputChunk): void {
    if (this.#state !== 'running' || this.#outputCapped || this.#clientStopped) return;
    const max = this.#maxOutput;
    let data = chunk.data;
    const over = max !== undefined && this.#record.bytesOut + data.length > max;
    // A copy: the chunk is lent, and the channel is resumed below while this may still be queued.
    if (over) data = Buffer.from(data.subarray(0, max - this.#record.bytesOut));
    this.#record.bytesOut += data.length;
    if (data.length > 0) this.#send(chunk.type, data);
    if (over) {
      this.#outputCapped = true;
      this.#stopAtLimit(`output limit of ${max} bytes reached`, 'output-limit');
    }
  }

  /**
   * The channel lends its output chunks (valid only during the event). A payload below the
   * socket's high-water mark is copied, joined with its framing; a larger one is written as it
   * is, and write() then returns false, so the channel stays paused until 'drain' — that is,
   * until the socket has taken every byte of it. Corked: one writev for the pair.
   */
  #send(type: OutputChunk['type'], data: Buffer): void {
    const socket = this.#socket;
    let more = true;
    socket.cork();
    for (const part of encodeOutput(type, data, socket.writableHighWaterMark - 1)) {
      more = socket.write(part);
    }
    socket.uncork();
    if (!more) {
      this.#channel?.pause();
      this.#held();
    }
  }

  /** A policy limit: the client is told on stderr, the program stopped as at the deadline. */
  #stopAtLimit(why: string, reason: WireReason): void {
    this.#send('stderr', Buffer.from(`procsock: ${why}; the program was stopped\n`));
    this.#record.error ??= why;
    this.#stopReason ??= reason;
    // Output beyond its limit is dropped: keep reading it so the program does not block while it dies.
    if (this.#outputCapped) this.#channel?.resume();
    this.#terminate(why);
  }

  #onExit(status: ExitStatus): void {
    if (this.#state !== 'running') return;
    this.#state = 'replying';
    this.#record.exitCode = status.exitCode;
    this.#record.termSignal = status.termSignal;
    this.#log(
      status.termSignal === null
        ? `program ${this.pid ?? ''} exited with ${status.exitCode}`
        : `program ${this.pid ?? ''} killed by ${status.termSignal}`,
    );
    // Keep reading (and discarding) so the client's late stdin or EOF is noticed.
    this.#dropStdinQueue();
    this.#socket.resume();
    const reason = this.#endReason(status);
    this.#record.reason = reason;
    const exit = encodeExit(status);
    // Half-close only; the socket is destroyed once the client has closed its end too (or
    // after the kill timeout). Destroying it at once would make a late write of the client (its
    // stdin terminator, sent as the program exits) fail with EPIPE, and a Node client loses
    // the reply still unread in its socket with it.
    const socket = this.#socket;
    const written = socket.write(
      this.#extension === null
        ? exit
        : Buffer.concat([encodeRunEnd(reason, this.#usage(), this.#refusedField), exit]),
    );
    if (!written) this.#held();
    this.#shutdownNow();
    socket.end(() => this.#dropAfter(this.#options.killTimeout));
  }

  /**
   * The end of stream right behind the exit pair, in the same tick: end() alone shuts the
   * socket down a loop turn or two after the write, and a client that polls as soon as the
   * exit pair arrives (lua-resty-exec's LuaSocket mode) then takes the missing end for a
   * timeout. Only when the reply is all in the kernel already (else end() keeps the order).
   */
  #shutdownNow(): void {
    const socket = this.#socket;
    if (socket.writableLength > 0) return;
    const fd = socketFd(socket);
    if (fd !== undefined) shutdownWrite(fd);
  }

  /** The first cause procsock stopped the run for; else how the program ended by itself. */
  #endReason(status: ExitStatus): WireReason {
    return this.#stopReason ?? this.#channel?.reason ?? naturalEnd(status);
  }

  /**
   * What the run cost, as the channel measured it (CPU and peak RSS where the spawn backend
   * or the reaper reports them; see LocalChannel.usage), and how many descendants had to be
   * stopped (contained runs): nothing for a run that never started.
   */
  #usage(): WireUsage {
    const usage = this.#channel?.usage;
    if (!usage) return {};
    const known: WireUsage = { wallTime: usage.wallTime };
    if (usage.userCPUTime !== null) known.userCPUTime = usage.userCPUTime;
    if (usage.systemCPUTime !== null) known.systemCPUTime = usage.systemCPUTime;
    if (usage.maxRSS !== null) known.maxRSS = usage.maxRSS;
    if (usage.memoryPeak !== null) known.memoryPeak = usage.memoryPeak;
    const stopped = this.#channel?.descendantsStopped ?? null;
    if (stopped !== null) known.descendantsStopped = stopped;
    return known;
  }

  /**
   * The client sent EOF (`failed` false) or its socket failed. Like sockexec, EOF while the
   * program runs is a hang-up, even a half-close; once the reply is under way, EOF just
   * means the client has nothing more to say, and the reply is still delivered.
   */
  #onClientGone(why: string, failed: boolean): void {
    switch (this.#state) {
      case 'reading':
        if (this.#decoder.phase === 'argc' && this.#decoder.atBoundary) {
          this.#log(`${why} before sending a request`);
        } else {
          this.#log(`protocol violation: ${why} in the middle of the request`);
        }
        this.#state = 'closed';
        this.#socket.destroy();
        return;
      case 'running':
        this.#stopReason ??= 'hangup';
        this.#abandon(why);
        return;
      case 'replying':
        if (!failed) return;
        this.#log(`${why} before taking the whole reply`);
        this.#socket.destroy();
        return;
      default:
        return;
    }
  }

  /** Drops the client; a running program gets TERM, then KILL after the kill timeout. */
  #abandon(why: string): void {
    this.#log(`closing: ${why}`);
    if (this.#state !== 'replying') this.#record.error ??= why;
    const channel = this.#channel;
    this.#state = channel && !channel.closed ? 'abandoned' : 'closed';
    this.#stopHangupWatch();
    this.#stdinQueue = [];
    this.#socket.destroy();
    if (channel && !channel.closed) {
      this.#log(
        `sending TERM to pid ${channel.programPid ?? channel.pid}, KILL in ${this.#killTimeout} ms if it lives`,
      );
      channel.destroy();
    }
  }

  #onDeadline(): void {
    this.#deadlineTimer = null;
    switch (this.#state) {
      case 'reading':
        this.#abandon('the deadline passed before the request was complete');
        return;
      case 'running':
        this.#stopReason ??= 'deadline';
        this.#terminate('the deadline passed');
        return;
      case 'replying':
        this.#abandon('the deadline passed before the client took the reply');
        return;
      default:
        return;
    }
  }

  #onRequestTimeout(): void {
    this.#requestTimer = null;
    if (this.#state !== 'reading') return;
    const why = `the request was not complete within the request timeout (${this.#options.requestTimeout} ms)`;
    this.#record.error ??= why;
    this.#abandon(why);
  }

  #clearRequestTimer(): void {
    if (this.#requestTimer) clearTimeout(this.#requestTimer);
    this.#requestTimer = null;
  }

  #terminate(why: string): void {
    this.#stopping = true;
    this.#holdDrop();
    const channel = this.#channel;
    if (channel === null || channel.closed) return;
    this.#log(
      `${why}: sending TERM to pid ${channel.programPid ?? channel.pid}, KILL in ${this.#killTimeout} ms if it lives`,
    );
    channel.terminate();
  }

  /** The channel's KILL, as it was sent (by the channel, or by a contained run's reaper). */
  #onKill(by: 'channel' | 'reaper'): void {
    const channel = this.#channel;
    const pid = channel?.programPid ?? channel?.pid;
    this.#log(
      `pid ${pid} outlived the grace: KILL sent${by === 'reaper' ? ' (by its reaper)' : ''}`,
    );
  }

  /** The socket is full: the client is not taking its reply (yet). */
  #held(): void {
    this.#sendHeld = true;
    this.#holdDrop();
  }

  #onSocketDrain(): void {
    this.#sendHeld = false;
    if (this.#holdTimer) clearTimeout(this.#holdTimer);
    this.#holdTimer = null;
    this.#channel?.resume();
  }

  /**
   * A last resort for a client that does not take its reply while its run is being stopped:
   * dropped once it has taken nothing for two kill timeouts (its program then gets KILL if it
   * still lives, and its output is drained). Counted only while the socket is full — the
   * client is the hold-up — so a reading client is never dropped on the way: it gets the exit
   * pair however long the KILL takes to be reaped (a contained run on a loaded machine).
   * Before, one timer ran from the TERM, racing the KILL's reap, and could drop a client
   * that was reading.
   */
  #holdDrop(): void {
    if (!this.#stopping || !this.#sendHeld || this.#holdTimer || this.#finished) return;
    this.#holdTimer = setTimeout(() => {
      this.#holdTimer = null;
      this.#guard(() => {
        if (this.#state === 'closed' || this.#state === 'abandoned') return;
        this.#abandon('the client did not take its reply in time');
      });
    }, 2 * this.#killTimeout);
  }

  /**
   * The whole reply is in the kernel (the client's to read, whatever we do now): a client that
   * does not close its end is closed after `ms`, freeing the slot.
   */
  #dropAfter(ms: number): void {
    if (this.#dropTimer || this.#finished) return;
    this.#dropTimer = setTimeout(() => {
      this.#dropTimer = null;
      this.#guard(() => {
        if (this.#state === 'closed' || this.#state === 'abandoned') return;
        this.#abandon('the client did not close its end after its reply');
      });
    }, ms);
  }

  #maybeClosed(): void {
    if (this.#finished || !this.#socketClosed) return;
    if (this.#channel !== null && !this.#channel.closed) return;
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
    if (this.#dropTimer) clearTimeout(this.#dropTimer);
    this.#clearRequestTimer();
    if (this.#holdTimer) clearTimeout(this.#holdTimer);
    if (this.#runTimer) clearTimeout(this.#runTimer);
    this.#runTimer = null;
    this.#holdTimer = null;
    this.#deadlineTimer = null;
    this.#dropTimer = null;
    this.#finished = true;
    this.#state = 'closed';
    this.#log('closed');
    if (this.#audit) {
      this.#recordEnd();
      this.#record.reason ??= this.#stopReason;
      this.#record.durationMs = Math.round(performance.now() - this.#startedAt);
      this.#audit.write(this.#record);
    }
    this.#resolveClosed();
  }

  /**
   * The audit record learns how the program ended from the channel, which knows it even when
   * no reply was sent (a hang-up: the client is gone, the program was still reaped).
   */
  #recordEnd(): void {
    const channel = this.#channel;
    const status = channel?.finalStatus;
    if (!channel || !status) return;
    const record = this.#record;
    record.pid = channel.programPid ?? record.pid;
    if (record.exitCode === null && record.termSignal === null) {
      record.exitCode = status.exitCode;
      record.termSignal = status.termSignal;
    }
    record.usage = channel.usage;
    record.descendantsStopped = channel.descendantsStopped;
  }

  /** A bug in one connection must not take the daemon down: log it and drop that connection. */
  #guard(action: () => void): void {
    try {
      action();
    } catch (error) {
      this.#log(`internal error, dropping the connection: ${describeError(error)}`);
      try {
        this.#abandon('internal error');
      } catch {
        this.#socket.destroy();
      }
    }
  }

  /** A function is called only when there is a log (an argv can be 2 MiB of JSON). */
  #log(message: string | (() => string)): void {
    const log = this.#options.log;
    if (log) log(`connection ${this.id}: ${typeof message === 'string' ? message : message()}`);
  }
}

/** A socket's descriptor (Node does not expose it officially), if it has one open. */
function socketFd(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return fd !== undefined && fd >= 0 ? fd : undefined;
}

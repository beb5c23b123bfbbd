/**
 * The procsock protocol extension, version 1: per-run options, messages while the program
 * runs, and the end reason and resource usage in the reply — for procsock clients only.
 * The README's "Protocol extension" section is the reference; in short:
 *
 *   client → opening   `12:1;procsock/1,` `0:,`
 *            header    (name, value) netstring pairs: arg (repeated), cwd, env (repeated),
 *                      env-mode, timeout, kill-timeout, max-output, kill-group, contain,
 *                      exit-grace, pty, pty-columns, pty-rows, pty-stderr, pty-raw; then `0:,`
 *            messages  (type, data) pairs: `stdin` DATA (empty data closes stdin), `signal` NAME,
 *                      `window` COLUMNSxROWS, `stop` CAUSE (the client's own limit or abort)
 *   server → hello     `8:procsock,1:1,`, at once
 *            output    `stdout`/`stderr` pairs, as in the plain protocol
 *            stopping  `stopping` MS, once, answering the first `stop`: KILL follows within MS
 *            end       [`refused` FIELD], `reason` REASON, `usage` "key=value …", the exit pair; close
 *
 * Why that opening: a plain request starts with a netstring holding a decimal count, so a
 * payload that is not all digits cannot be taken for one by a strict parser (procsock's
 * own, before the extension, closes the connection). The C sockexec reads the count with a
 * lenient scan instead: `1;…` is one argument to it, the empty netstring that follows is that
 * argument, and it fails at once to spawn a program with an empty name and closes the
 * connection without running anything (a payload with no leading digit would leave it waiting
 * for its deadline). So against any daemon that does not speak the extension, an extended
 * client sees the connection close before the hello: a clear, immediate "not supported".
 *
 * This file holds the codec only; what each option means is decided by the daemon
 * (src/server/extension.ts) and its policy.
 */
import { isUtf8 } from 'node:buffer';
import { MAX_TIMER } from '../core/limits.js';
import { MAX_WINDOW_SIDE, type PtyStderr } from '../core/terminal.js';
import { LimitError, ProtocolError } from '../errors.js';
import { ARG_OVERHEAD } from './argv-collector.js';
import { encodeNetstring, netstringParts } from './netstring.js';
import type { RequestLimits } from './request.js';

/** The version this code speaks (and the highest it accepts in an opening). */
export const EXTENSION_VERSION = 1;

const OPENING_PREFIX = '1;procsock/';
/** Longest opening payload: the prefix and a version of up to three digits. */
export const MAX_OPENING_LENGTH = OPENING_PREFIX.length + 3;

/** The version an opening payload offers, or null when it is not an opening. */
export function openingVersion(payload: string): number | null {
  if (!payload.startsWith(OPENING_PREFIX)) return null;
  const digits = payload.slice(OPENING_PREFIX.length);
  return /^[1-9][0-9]{0,2}$/.test(digits) ? Number(digits) : null;
}

/**
 * Why a client stops its own run (the `stop` message): its wall-clock `timeout`, its
 * `idle-timeout`, its `output-limit` (maxBuffer), or an `abort`. The daemon stops the program
 * as at its own deadline and reports this cause as the run's reason.
 */
export const STOP_CAUSES = ['timeout', 'idle-timeout', 'abort', 'output-limit'] as const;
export type StopCause = (typeof STOP_CAUSES)[number];

function isStopCause(text: string): text is StopCause {
  return (STOP_CAUSES as readonly string[]).includes(text);
}

/** Why a run ended, as the daemon reports it to extended clients (and in its audit log). */
export type WireReason =
  | 'exit'
  | 'signal'
  | 'deadline'
  | 'timeout'
  | 'idle-timeout'
  | 'abort'
  | 'output-limit'
  | 'stdin-limit'
  | 'hangup'
  | 'shutdown'
  | 'spawn-failure'
  | 'policy-refused'
  | 'unsupported'
  | 'protocol-violation';

/** What a run cost, in `process.resourceUsage()` units (µs, KiB) plus wall time (ms). Keys the daemon does not know are absent. */
export interface WireUsage {
  userCPUTime?: number;
  systemCPUTime?: number;
  maxRSS?: number;
  /** The run's cgroup's memory.peak, KiB (see `ResourceUsage.memoryPeak`). */
  memoryPeak?: number;
  wallTime?: number;
  descendantsStopped?: number;
}

const USAGE_KEYS: readonly (keyof WireUsage)[] = [
  'userCPUTime',
  'systemCPUTime',
  'maxRSS',
  'memoryPeak',
  'wallTime',
  'descendantsStopped',
];

/** Per-run options as the header carries them. Absent: the daemon's default. */
export interface ExtendedRequest {
  argv: string[];
  /** Absolute path. */
  cwd?: string;
  /** `replace`: these variables are the whole environment; `merge`: set on top of the default one. */
  env?: { mode: 'replace' | 'merge'; vars: [name: string, value: string][] };
  /** Wall-clock limit of the run in ms, from the spawn. */
  timeout?: number;
  /** Ms between TERM and KILL when the run is stopped. */
  killTimeout?: number;
  /** Most bytes of output (stdout and stderr together); then the program is stopped. */
  maxOutput?: number;
  /** Run in a process group of its own and signal the whole group. */
  killGroup?: boolean;
  /** Contain the run (`contain 1`: every descendant stops with it), or not (`contain 0`). */
  contain?: boolean;
  /** Ms output pipes held by descendants may stay open after the program exits (0: none). */
  exitGrace?: number;
  /** PTY mode (`pty 1`): a terminal on stdin and stdout; absent sides are the daemon's defaults. */
  pty?: { columns?: number; rows?: number; stderr?: PtyStderr; raw?: boolean };
  /** Fields this daemon does not implement (newer versions' fields), in order. */
  unsupported: string[];
  /** The first field whose value is not valid UTF-8 (`arg 2`, `env`, `cwd`): refused, not altered. */
  notUtf8?: string;
}

export interface ExtendedRequestHandler {
  /** The header is complete: start the program (or refuse). */
  onHeader(request: ExtendedRequest): void;
  /** A piece of stdin data, never empty, in order. */
  onStdin(data: Buffer): void;
  /** `stdin` with empty data: close the program's stdin. */
  onStdinEnd(): void;
  /** A signal name without `SIG`, checked for form only (`[A-Z][A-Z0-9+-]*`). */
  onSignal(name: string): void;
  /** A new window size for the program's terminal, each side from 1 to 65535. */
  onWindow(columns: number, rows: number): void;
  /** The client stops its run for one of its own causes (checked: one of `STOP_CAUSES`). */
  onStop(cause: StopCause): void;
}

/** Limits of the fields that the plain request's limits do not already cover. */
export const EXTENSION_LIMITS = Object.freeze({
  /** Longest field name or message type. */
  maxName: 16,
  /** Longest `cwd` (Linux PATH_MAX). */
  maxPath: 4096,
  /** Most `env` fields. */
  maxEnv: 4096,
  /** Most fields this daemon does not know, before the request counts as garbage. */
  maxUnsupported: 16,
  /** Longest value of a field this daemon does not know. */
  maxUnsupportedValue: 256,
  /** Longest decimal number (timeouts in ms fit in 10 digits, byte counts in 16). */
  maxNumber: 16,
  /** Longest signal name. */
  maxSignal: 16,
  /** Longest window size, `65535x65535`. */
  maxWindow: 11,
});

const SINGLE_FIELDS = new Set([
  'cwd',
  'env-mode',
  'timeout',
  'kill-timeout',
  'max-output',
  'kill-group',
  'contain',
  'exit-grace',
  'pty',
  'pty-columns',
  'pty-rows',
  'pty-stderr',
  'pty-raw',
]);

type Phase = 'guard' | 'name' | 'value' | 'type' | 'stdin' | 'signal' | 'window' | 'stop';

/**
 * The extended request after its opening, as a consumer of netstring pieces: the plain
 * `RequestDecoder` recognises the opening and hands every later piece to this parser,
 * with the same `NetstringDecoder` underneath, so the extension is exactly as incremental
 * and bounded as the plain request. `setMaxLength` sets the longest netstring accepted next:
 * every length is checked against the field it is for before any byte of it is buffered.
 */
export class ExtendedRequestParser {
  readonly #handler: ExtendedRequestHandler;
  readonly #limits: Readonly<RequestLimits>;
  readonly #setMaxLength: (length: number) => void;
  #phase: Phase = 'guard';
  #pieces: Buffer[] = [];
  #name = '';
  #request: ExtendedRequest = { argv: [], unsupported: [] };
  #seen = new Set<string>();
  #argBytes = 0;
  #envCount = 0;
  #stdinPieceSeen = false;
  #stdinEnded = false;
  /** The `pty` field's value, if given (its other fields are checked against it at the end). */
  #ptyFlag: boolean | undefined;

  constructor(
    handler: ExtendedRequestHandler,
    limits: Readonly<RequestLimits>,
    setMaxLength: (length: number) => void,
  ) {
    this.#handler = handler;
    this.#limits = limits;
    this.#setMaxLength = setMaxLength;
    setMaxLength(EXTENSION_LIMITS.maxName);
  }

  /** True once the header is complete (the program is started or refused). */
  get started(): boolean {
    return (
      this.#phase === 'type' ||
      this.#phase === 'stdin' ||
      this.#phase === 'signal' ||
      this.#phase === 'window' ||
      this.#phase === 'stop'
    );
  }

  onPiece(piece: Buffer, last: boolean): void {
    if (this.#phase === 'stdin') {
      this.#onStdinPiece(piece, last);
      return;
    }
    if (this.#phase === 'value' && this.#name === 'arg') this.#countArgBytes(piece.length);
    if (piece.length > 0) this.#pieces.push(piece);
    if (!last) return;
    const payload = this.#take();
    switch (this.#phase) {
      case 'guard':
        if (payload.length > 0)
          throw violation('the opening must be followed by an empty netstring');
        this.#phase = 'name';
        return;
      case 'name':
        this.#onName(payload.toString('latin1'));
        return;
      case 'value':
        this.#onValue(payload);
        return;
      case 'type':
        this.#onType(payload.toString('latin1'));
        return;
      case 'signal':
        this.#onSignal(payload.toString('latin1'));
        return;
      case 'window':
        this.#onWindow(payload.toString('latin1'));
        return;
      case 'stop':
        this.#onStop(payload.toString('latin1'));
        return;
    }
  }

  #onName(name: string): void {
    if (name === '') {
      this.#endHeader();
      return;
    }
    if (!/^[a-z][a-z0-9-]*$/.test(name)) throw violation(`bad field name ${JSON.stringify(name)}`);
    if (SINGLE_FIELDS.has(name)) {
      if (this.#seen.has(name)) throw violation(`field ${name} given twice`);
      this.#seen.add(name);
    }
    this.#name = name;
    this.#phase = 'value';
    this.#setMaxLength(this.#valueLimit(name));
  }

  #valueLimit(name: string): number {
    switch (name) {
      case 'arg':
        return this.#limits.maxArgLength;
      case 'env':
        return this.#limits.maxArgLength;
      case 'cwd':
        return EXTENSION_LIMITS.maxPath;
      case 'env-mode':
      case 'kill-group':
      case 'contain':
      case 'pty':
      case 'pty-stderr':
      case 'pty-raw':
        return EXTENSION_LIMITS.maxName;
      case 'timeout':
      case 'kill-timeout':
      case 'max-output':
      case 'exit-grace':
      case 'pty-columns':
      case 'pty-rows':
        return EXTENSION_LIMITS.maxNumber;
      default:
        if (this.#request.unsupported.length >= EXTENSION_LIMITS.maxUnsupported) {
          throw new LimitError(
            `more than ${EXTENSION_LIMITS.maxUnsupported} unknown fields`,
            'maxUnsupported',
          );
        }
        return EXTENSION_LIMITS.maxUnsupportedValue;
    }
  }

  #onValue(value: Buffer): void {
    const name = this.#name;
    const request = this.#request;
    this.#phase = 'name';
    this.#setMaxLength(EXTENSION_LIMITS.maxName);
    switch (name) {
      case 'arg':
        if (request.argv.length >= this.#limits.maxArgs) {
          throw new LimitError(
            `argument count exceeds the limit of ${this.#limits.maxArgs}`,
            'maxArgs',
          );
        }
        this.#countArgBytes(ARG_OVERHEAD); // as for a plain request's arguments
        if (!isUtf8(value)) request.notUtf8 ??= `arg ${request.argv.length}`;
        request.argv.push(value.toString('utf8'));
        return;
      case 'env':
        this.#onEnv(value);
        return;
      case 'cwd': {
        if (!isUtf8(value)) request.notUtf8 ??= 'cwd';
        const cwd = value.toString('utf8');
        if (!cwd.startsWith('/') || cwd.includes('\0')) {
          throw violation('cwd must be an absolute path without NUL bytes');
        }
        request.cwd = cwd;
        return;
      }
      case 'env-mode': {
        const mode = value.toString('latin1');
        if (mode !== 'replace' && mode !== 'merge') {
          throw violation(`env-mode must be replace or merge, not ${JSON.stringify(mode)}`);
        }
        request.env = { mode, vars: request.env?.vars ?? [] };
        return;
      }
      case 'timeout':
        request.timeout = duration(name, value);
        return;
      case 'kill-timeout':
        request.killTimeout = duration(name, value);
        return;
      case 'max-output':
        request.maxOutput = count(name, value);
        return;
      case 'kill-group': {
        const flag = value.toString('latin1');
        if (flag !== '0' && flag !== '1') throw violation('kill-group must be 0 or 1');
        request.killGroup = flag === '1';
        return;
      }
      case 'contain': {
        const flag = value.toString('latin1');
        if (flag !== '0' && flag !== '1') throw violation('contain must be 0 or 1');
        request.contain = flag === '1';
        return;
      }
      case 'exit-grace': {
        const ms = count(name, value);
        if (ms > MAX_TIMER)
          throw violation(`exit-grace must be from 0 to ${MAX_TIMER} ms, not ${ms}`);
        request.exitGrace = ms;
        return;
      }
      case 'pty': {
        const flag = value.toString('latin1');
        if (flag !== '0' && flag !== '1') throw violation('pty must be 0 or 1');
        this.#ptyFlag = flag === '1';
        return;
      }
      case 'pty-columns':
        this.#terminalFields().columns = windowSide(name, value.toString('latin1'));
        return;
      case 'pty-rows':
        this.#terminalFields().rows = windowSide(name, value.toString('latin1'));
        return;
      case 'pty-stderr': {
        const where = value.toString('latin1');
        if (where !== 'pipe' && where !== 'pty') throw violation('pty-stderr must be pipe or pty');
        this.#terminalFields().stderr = where;
        return;
      }
      case 'pty-raw': {
        const flag = value.toString('latin1');
        if (flag !== '0' && flag !== '1') throw violation('pty-raw must be 0 or 1');
        this.#terminalFields().raw = flag === '1';
        return;
      }
      default:
        // Unknown fields (a later version's): the daemon answers them as unsupported, naming them.
        request.unsupported.push(name);
        return;
    }
  }

  #onEnv(value: Buffer): void {
    if (++this.#envCount > EXTENSION_LIMITS.maxEnv) {
      throw new LimitError(`more than ${EXTENSION_LIMITS.maxEnv} env fields`, 'maxEnv');
    }
    // The environment shares the kernel's argument space with argv (ARG_MAX), so its limit too.
    this.#countArgBytes(value.length + ARG_OVERHEAD);
    if (!isUtf8(value)) this.#request.notUtf8 ??= 'env';
    const entry = value.toString('utf8');
    const equals = entry.indexOf('=');
    if (equals <= 0 || entry.includes('\0')) {
      throw violation('an env field must be NAME=VALUE, with a name and no NUL byte');
    }
    this.#request.env ??= { mode: 'replace', vars: [] };
    this.#request.env.vars.push([entry.slice(0, equals), entry.slice(equals + 1)]);
  }

  #countArgBytes(length: number): void {
    this.#argBytes += length;
    if (this.#argBytes > this.#limits.maxArgBytes) {
      throw new LimitError(
        `arguments and environment exceed the limit of ${this.#limits.maxArgBytes} bytes in all`,
        'maxArgBytes',
      );
    }
  }

  #terminalFields(): NonNullable<ExtendedRequest['pty']> {
    this.#request.pty ??= {};
    return this.#request.pty;
  }

  #endHeader(): void {
    const request = this.#request;
    if (request.argv.length === 0) throw violation('the header has no arg field');
    if (this.#ptyFlag !== true && request.pty !== undefined) {
      throw violation('pty-columns, pty-rows, pty-stderr and pty-raw need pty 1');
    }
    if (this.#ptyFlag === true) request.pty ??= {};
    this.#ptyFlag = undefined;
    this.#request = { argv: [], unsupported: [] };
    this.#phase = 'type';
    this.#handler.onHeader(request);
  }

  #onType(type: string): void {
    if (type === 'stdin') {
      if (this.#stdinEnded) throw violation('stdin data after stdin was closed');
      this.#phase = 'stdin';
      this.#setMaxLength(this.#limits.maxDataLength);
    } else if (type === 'signal') {
      this.#phase = 'signal';
      this.#setMaxLength(EXTENSION_LIMITS.maxSignal);
    } else if (type === 'window') {
      this.#phase = 'window';
      this.#setMaxLength(EXTENSION_LIMITS.maxWindow);
    } else if (type === 'stop') {
      this.#phase = 'stop';
      this.#setMaxLength(EXTENSION_LIMITS.maxName);
    } else {
      throw violation(`unknown message type ${JSON.stringify(type)}`);
    }
  }

  #onStdinPiece(piece: Buffer, last: boolean): void {
    if (piece.length > 0) {
      this.#stdinPieceSeen = true;
      this.#handler.onStdin(piece);
    }
    if (!last) return;
    const empty = !this.#stdinPieceSeen;
    this.#stdinPieceSeen = false;
    this.#phase = 'type';
    this.#setMaxLength(EXTENSION_LIMITS.maxName);
    if (empty) {
      this.#stdinEnded = true;
      this.#handler.onStdinEnd();
    }
  }

  #onSignal(name: string): void {
    if (!/^[A-Z][A-Z0-9+-]*$/.test(name))
      throw violation(`bad signal name ${JSON.stringify(name)}`);
    this.#phase = 'type';
    this.#setMaxLength(EXTENSION_LIMITS.maxName);
    this.#handler.onSignal(name);
  }

  #onWindow(size: string): void {
    const match = /^([0-9]+)x([0-9]+)$/.exec(size);
    if (!match) throw violation(`bad window size ${JSON.stringify(size)} (COLUMNSxROWS)`);
    this.#phase = 'type';
    this.#setMaxLength(EXTENSION_LIMITS.maxName);
    this.#handler.onWindow(windowSide('window', match[1]!), windowSide('window', match[2]!));
  }

  #onStop(cause: string): void {
    if (!isStopCause(cause)) {
      throw violation(`bad stop cause ${JSON.stringify(cause)} (${STOP_CAUSES.join(', ')})`);
    }
    this.#phase = 'type';
    this.#setMaxLength(EXTENSION_LIMITS.maxName);
    this.#handler.onStop(cause);
  }

  #take(): Buffer {
    const pieces = this.#pieces;
    this.#pieces = [];
    // Pieces are views into socket chunks; copy so a value never pins a 64 KiB chunk.
    return pieces.length === 1 ? Buffer.from(pieces[0]!) : Buffer.concat(pieces);
  }
}

function violation(message: string): ProtocolError {
  return new ProtocolError(`extended request: ${message}`);
}

function duration(name: string, value: Buffer): number {
  const ms = count(name, value);
  if (ms < 1 || ms > MAX_TIMER) {
    throw violation(`${name} must be from 1 to ${MAX_TIMER} ms, not ${ms}`);
  }
  return ms;
}

function windowSide(name: string, text: string): number {
  const side = /^[1-9][0-9]{0,4}$/.test(text) ? Number(text) : 0;
  if (side < 1 || side > MAX_WINDOW_SIDE) {
    throw violation(
      `${name}: a window side is from 1 to ${MAX_WINDOW_SIDE}, not ${JSON.stringify(text)}`,
    );
  }
  return side;
}

function count(name: string, value: Buffer): number {
  const text = value.toString('latin1');
  if (!/^(0|[1-9][0-9]*)$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw violation(`${name} must be a decimal number, not ${JSON.stringify(text)}`);
  }
  return Number(text);
}

// ---------------------------------------------------------------- encoding (client side)

const GUARD = encodeNetstring('');

/** What a client puts in a header: the options, and any further (name, value) fields. */
export type ExtendedRequestFields = Omit<ExtendedRequest, 'unsupported'> & {
  extra?: readonly [name: string, value: string][];
};

/** The opening, the header and its end, in one buffer. */
export function encodeExtendedRequest(
  request: ExtendedRequestFields,
  version = EXTENSION_VERSION,
): Buffer {
  const parts: Buffer[] = [encodeNetstring(`${OPENING_PREFIX}${version}`), GUARD];
  const field = (name: string, value: string) =>
    parts.push(encodeNetstring(name), encodeNetstring(value));
  for (const arg of request.argv) field('arg', arg);
  if (request.cwd !== undefined) field('cwd', request.cwd);
  if (request.env) {
    field('env-mode', request.env.mode);
    for (const [name, value] of request.env.vars) field('env', `${name}=${value}`);
  }
  if (request.timeout !== undefined) field('timeout', String(request.timeout));
  if (request.killTimeout !== undefined) field('kill-timeout', String(request.killTimeout));
  if (request.maxOutput !== undefined) field('max-output', String(request.maxOutput));
  if (request.killGroup !== undefined) field('kill-group', request.killGroup ? '1' : '0');
  if (request.contain !== undefined) field('contain', request.contain ? '1' : '0');
  if (request.exitGrace !== undefined) field('exit-grace', String(request.exitGrace));
  if (request.pty !== undefined) {
    field('pty', '1');
    const { columns, rows, stderr, raw } = request.pty;
    if (columns !== undefined) field('pty-columns', String(columns));
    if (rows !== undefined) field('pty-rows', String(rows));
    if (stderr !== undefined) field('pty-stderr', stderr);
    // Only when asked: a daemon of an earlier procsock/1 answers an unknown field unsupported.
    if (raw) field('pty-raw', '1');
  }
  for (const [name, value] of request.extra ?? []) field(name, value);
  parts.push(GUARD);
  return Buffer.concat(parts);
}

const STDIN_TYPE = encodeNetstring('stdin');

/** One stdin message as buffers to write in order. Empty data encodes to nothing (it would close stdin). */
export function encodeStdinMessage(data: Buffer): Buffer[] {
  return data.length === 0 ? [] : netstringParts(data, STDIN_TYPE);
}

/** Closes the program's stdin. */
export const STDIN_END_MESSAGE: Buffer = Buffer.concat([STDIN_TYPE, GUARD]);

/** A new window size for the program's terminal. */
export function encodeWindowMessage(columns: number, rows: number): Buffer {
  return Buffer.concat([encodeNetstring('window'), encodeNetstring(`${columns}x${rows}`)]);
}

/** A signal for the program, by name without `SIG`. */
export function encodeSignalMessage(name: string): Buffer {
  return Buffer.concat([encodeNetstring('signal'), encodeNetstring(name)]);
}

/** Asks the daemon to stop the program for one of the client's own causes. */
export function encodeStopMessage(cause: StopCause): Buffer {
  return Buffer.concat([encodeNetstring('stop'), encodeNetstring(cause)]);
}

// ---------------------------------------------------------------- the reply's extras

/** The hello pair, the daemon's first bytes to an extended client. */
export function encodeHello(version: number): Buffer {
  return Buffer.concat([encodeNetstring('procsock'), encodeNetstring(String(version))]);
}

/**
 * `reason` and `usage` pairs, sent right before the exit pair; first a `refused` pair naming
 * the header field when the run was refused because of one of the client's options.
 */
export function encodeRunEnd(reason: WireReason, usage: WireUsage, refused?: string): Buffer {
  const tokens = USAGE_KEYS.filter((key) => usage[key] !== undefined).map(
    (key) => `${key}=${Math.max(0, Math.round(usage[key]!))}`,
  );
  return Buffer.concat([
    ...(refused === undefined ? [] : [encodeNetstring('refused'), encodeNetstring(refused)]),
    encodeNetstring('reason'),
    encodeNetstring(reason),
    encodeNetstring('usage'),
    encodeNetstring(tokens.join(' ')),
  ]);
}

/**
 * The answer to a client's first `stop`: the program has been sent TERM (now, or already by
 * another cause), and KILL follows within `ms` — the run's kill timeout — so a client knows
 * how long to wait for the end before it gives up on the daemon.
 */
export function encodeStopping(ms: number): Buffer {
  return Buffer.concat([encodeNetstring('stopping'), encodeNetstring(String(ms))]);
}

/** A `stopping` payload: whole ms, 0 to MAX_TIMER. */
export function parseStopping(text: string): number {
  const ms = /^(0|[1-9][0-9]{0,9})$/.test(text) ? Number(text) : -1;
  if (ms < 0 || ms > MAX_TIMER) {
    throw new ProtocolError(`the daemon sent a bad stopping time ${JSON.stringify(text)}`);
  }
  return ms;
}

/** Longest `usage` payload a client accepts. */
export const MAX_USAGE_LENGTH = 512;

/** Parses a `usage` payload; unknown keys are skipped (a later daemon may add some). */
export function parseUsage(text: string): WireUsage {
  const usage: WireUsage = {};
  for (const token of text.split(' ')) {
    if (token === '') continue;
    const match = /^([A-Za-z]+)=(0|[1-9][0-9]{0,15})$/.exec(token);
    if (!match)
      throw new ProtocolError(`the daemon sent a bad usage entry ${JSON.stringify(token)}`);
    const key = match[1] as keyof WireUsage;
    if (USAGE_KEYS.includes(key)) usage[key] = Number(match[2]);
  }
  return usage;
}

/** A reason as a client accepts it: any lower-case word (a later daemon may add reasons). */
export function parseReason(text: string): WireReason {
  if (!/^[a-z][a-z-]{0,31}$/.test(text)) {
    throw new ProtocolError(`the daemon sent a bad reason ${JSON.stringify(text)}`);
  }
  return text as WireReason;
}

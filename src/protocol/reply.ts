/**
 * The server → client half of the sockexec protocol: pairs of netstrings (type, data).
 *
 *   stdout | stderr | unknown   a chunk of output (boundaries carry no meaning)
 *   exitcode                    decimal status, when the program exited
 *   termsig                     signal name without SIG, when a signal killed it
 *
 * then the server closes the connection. An extended reply (./extension.ts) opens with the
 * `procsock` hello pair, may have a `stopping` pair (the answer to a client's `stop`), and
 * has `reason` and `usage` pairs right before the exit pair.
 */
import { type ExitStatus, exitedWith, killedBy, type OutputType } from '../core/output.js';
import { ProtocolError } from '../errors.js';
import {
  EXTENSION_VERSION,
  MAX_USAGE_LENGTH,
  parseReason,
  parseStopping,
  parseUsage,
  type WireReason,
  type WireUsage,
} from './extension.js';
import { encodeNetstring, NetstringDecoder, netstringParts } from './netstring.js';

const TYPE_PREFIX: Record<OutputType, Buffer> = {
  stdout: encodeNetstring('stdout'),
  stderr: encodeNetstring('stderr'),
  unknown: encodeNetstring('unknown'),
};

/**
 * One output pair as buffers to write in order. The payload is referenced, not copied, when
 * it is longer than `joinLimit` bytes (default 4096); shorter, everything is one new buffer.
 */
export function encodeOutput(type: OutputType, data: Buffer, joinLimit?: number): Buffer[] {
  return netstringParts(data, TYPE_PREFIX[type], joinLimit);
}

/** The closing pair: `exitcode` or `termsig`. */
export function encodeExit(status: ExitStatus): Buffer {
  return status.termSignal === null
    ? Buffer.concat([encodeNetstring('exitcode'), encodeNetstring(String(status.exitCode))])
    : Buffer.concat([encodeNetstring('termsig'), encodeNetstring(status.termSignal)]);
}

export interface ReplyHandler {
  /** A piece of output, never empty. */
  onOutput(type: OutputType, data: Buffer): void;
  onExit(status: ExitStatus): void;
  /** Extended replies: the daemon accepted the extension in this version. */
  onHello?(version: number): void;
  /**
   * Extended replies: why the run ended and what it cost, just before `onExit`; `refused`
   * names the header field (cwd, env…) when the run was refused for one of the client's options.
   */
  onRunEnd?(reason: WireReason | null, usage: WireUsage | null, refused: string | null): void;
  /** Extended replies: the daemon took the client's `stop`; KILL follows within `ms`. */
  onStopping?(ms: number): void;
}

export interface ReplyLimits {
  /** Longest announced output netstring. Output is streamed, never buffered whole. */
  maxDataLength: number;
  /** Expect an extended reply: the hello first, then `reason`/`usage` before the exit. */
  extended: boolean;
}

const MAX_TYPE_LENGTH = 16;
const MAX_STATUS_LENGTH = 32;

type Expecting =
  | 'type'
  | OutputType
  | 'exitcode'
  | 'termsig'
  | 'procsock'
  | 'refused'
  | 'reason'
  | 'usage'
  | 'stopping';

/** Incremental parser of a reply stream, for clients. */
export class ReplyDecoder {
  readonly #handler: ReplyHandler;
  readonly #maxDataLength: number;
  readonly #decoder: NetstringDecoder;
  #expecting: Expecting = 'type';
  #pieces: Buffer[] = [];
  #exited = false;
  readonly #extended: boolean;
  #hello = false;
  #reason: WireReason | null = null;
  #usage: WireUsage | null = null;
  #refused: string | null = null;

  constructor(handler: ReplyHandler, limits: Partial<ReplyLimits> = {}) {
    this.#handler = handler;
    this.#extended = limits.extended ?? false;
    this.#maxDataLength = limits.maxDataLength ?? 1024 * 1024 * 1024;
    this.#decoder = new NetstringDecoder((piece, last) => this.#onPiece(piece, last), {
      maxLength: MAX_TYPE_LENGTH,
    });
  }

  /** True when the input so far ends between two pairs (a clean place for the server to close). */
  get atPairBoundary(): boolean {
    return this.#expecting === 'type' && this.#decoder.atBoundary;
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** Extended replies: true once the daemon's hello arrived (it speaks the extension). */
  get helloReceived(): boolean {
    return this.#hello;
  }

  /** Throws `ProtocolError`/`LimitError` on a violation. */
  push(chunk: Buffer): void {
    this.#decoder.push(chunk);
  }

  #onPiece(piece: Buffer, last: boolean): void {
    const expecting = this.#expecting;
    if (expecting === 'stdout' || expecting === 'stderr' || expecting === 'unknown') {
      if (piece.length > 0) this.#handler.onOutput(expecting, piece);
      if (last) this.#expect('type');
      return;
    }
    if (!last) {
      if (piece.length > 0) this.#pieces.push(piece);
      return;
    }
    // Nearly always the whole netstring came in one piece: no copy then.
    let text: string;
    if (this.#pieces.length === 0) {
      text = piece.toString('latin1');
    } else {
      this.#pieces.push(piece);
      text = Buffer.concat(this.#pieces).toString('latin1');
      this.#pieces = [];
    }
    if (expecting === 'type') this.#onType(text);
    else if (expecting === 'exitcode' || expecting === 'termsig') this.#onStatus(expecting, text);
    else this.#onExtra(expecting, text);
  }

  #onType(type: string): void {
    if (this.#extended && !this.#hello && type !== 'procsock') {
      throw new ProtocolError(
        `the daemon answered an extended request with ${JSON.stringify(type)} instead of its hello`,
      );
    }
    switch (type) {
      case 'stdout':
      case 'stderr':
      case 'unknown':
        this.#expect(type);
        return;
      case 'exitcode':
      case 'termsig':
        if (this.#exited) throw new ProtocolError('the server sent a second exit status');
        this.#expect(type);
        return;
      case 'procsock':
      case 'refused':
      case 'reason':
      case 'usage':
      case 'stopping':
        if (!this.#extended || this.#exited || (type === 'procsock') === this.#hello) break;
        this.#expect(type);
        return;
    }
    throw new ProtocolError(`the server sent an unexpected reply type ${JSON.stringify(type)}`);
  }

  #onExtra(kind: 'procsock' | 'refused' | 'reason' | 'usage' | 'stopping', text: string): void {
    this.#expect('type');
    if (kind === 'procsock') {
      if (!/^[1-9][0-9]{0,2}$/.test(text) || Number(text) > EXTENSION_VERSION) {
        throw new ProtocolError(
          `the daemon answered with protocol version ${JSON.stringify(text)}`,
        );
      }
      this.#hello = true;
      this.#handler.onHello?.(Number(text));
    } else if (kind === 'refused') {
      if (!/^[a-z][a-z0-9-]{0,15}$/.test(text)) {
        throw new ProtocolError(`the daemon refused a bad field name ${JSON.stringify(text)}`);
      }
      this.#refused = text;
    } else if (kind === 'reason') {
      this.#reason = parseReason(text);
    } else if (kind === 'stopping') {
      this.#handler.onStopping?.(parseStopping(text));
    } else {
      this.#usage = parseUsage(text);
    }
  }

  #onStatus(kind: 'exitcode' | 'termsig', text: string): void {
    this.#exited = true;
    this.#expect('type');
    if (this.#extended) this.#handler.onRunEnd?.(this.#reason, this.#usage, this.#refused);
    if (kind === 'exitcode') {
      if (!/^[0-9]{1,10}$/.test(text)) {
        throw new ProtocolError(`the server sent a bad exit code ${JSON.stringify(text)}`);
      }
      this.#handler.onExit(exitedWith(Number(text)));
    } else {
      if (!/^[A-Z0-9+-]{1,16}$/.test(text)) {
        throw new ProtocolError(`the server sent a bad signal name ${JSON.stringify(text)}`);
      }
      this.#handler.onExit(killedBy(text));
    }
  }

  #expect(next: Expecting): void {
    this.#expecting = next;
    this.#decoder.maxLength =
      next === 'type'
        ? MAX_TYPE_LENGTH
        : next === 'usage'
          ? MAX_USAGE_LENGTH
          : next === 'exitcode' ||
              next === 'termsig' ||
              next === 'procsock' ||
              next === 'reason' ||
              next === 'refused' ||
              next === 'stopping'
            ? MAX_STATUS_LENGTH
            : this.#maxDataLength;
  }
}

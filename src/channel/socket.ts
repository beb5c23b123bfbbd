/**
 * `SocketChannel`: a program run by a sockexec-protocol daemon (procsock's or the C
 * sockexec), seen through one connection. Behaves like `LocalChannel`; the differences
 * are those of the protocol: there is no pid, and the only way to stop the program is to
 * hang up (the daemon then sends TERM, and KILL after its grace).
 */
import { connect, type Socket } from 'node:net';
import { ClosedError, ConnectError, type ProcsockError, ProtocolError } from '../errors.js';
import { type ExitStatus, ReplyDecoder } from '../protocol/reply.js';
import { encodeArgs, encodeStdin, STDIN_END } from '../protocol/request.js';
import { ProcessChannel } from './channel.js';

export interface SocketChannelOptions {
  /** Longest output netstring accepted from the daemon (streamed, not buffered). */
  maxDataLength?: number;
}

export class SocketChannel extends ProcessChannel {
  readonly kind = 'socket' as const;
  readonly socket: Socket;
  readonly #decoder: ReplyDecoder;
  #status: ExitStatus | null = null;
  #stdinEnded = false;

  /** Sends argv on an already connected socket; the daemon starts the program when it has them. */
  constructor(
    socket: Socket,
    argv: readonly (string | Buffer)[],
    options: SocketChannelOptions = {},
  ) {
    super();
    this.socket = socket;
    this.#decoder = new ReplyDecoder(
      {
        onOutput: (type, data) => this.emitOutput(type, data),
        onExit: (status) => {
          this.#status = status;
        },
      },
      options,
    );
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => this.emit('drain'));
    socket.on('end', () => this.#onEnd());
    socket.on('error', (error) =>
      this.#fail(closedError('the connection to the daemon failed', error)),
    );
    socket.on('close', () => {
      this.#onEnd();
      this.emitClose();
    });
    socket.write(encodeArgs(argv));
  }

  #onData(chunk: Buffer): void {
    try {
      this.#decoder.push(chunk);
    } catch (error) {
      this.#fail(error as ProcsockError);
    }
  }

  /** The daemon closes the connection after the exit pair: only then is the program done. */
  #onEnd(): void {
    if (this.#status !== null && this.#decoder.atPairBoundary) {
      this.emitExit(this.#status);
    } else if (this.#status === null) {
      this.#fail(
        new ClosedError('the daemon closed the connection before sending the exit status'),
      );
    } else {
      this.#fail(new ProtocolError('the daemon closed the connection in the middle of a reply'));
    }
  }

  #fail(error: ProcsockError): void {
    if (this.exitStatus !== null || this.destroyed) return;
    this.emitError(error);
    this.socket.destroy();
  }

  write(data: Buffer | string): boolean {
    const buffer = typeof data === 'string' ? Buffer.from(data) : data;
    if (this.#stdinEnded || buffer.length === 0 || !this.socket.writable) return true;
    const parts = encodeStdin(buffer);
    if (parts.length === 1) return this.socket.write(parts[0]!);
    this.socket.cork();
    let ok = true;
    for (const part of parts) ok = this.socket.write(part);
    this.socket.uncork();
    return ok;
  }

  end(): void {
    if (this.#stdinEnded) return;
    this.#stdinEnded = true;
    if (this.socket.writable) this.socket.write(STDIN_END);
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  protected destroyResources(): void {
    this.socket.destroy();
  }
}

function closedError(message: string, cause: Error): ClosedError {
  const code = (cause as NodeJS.ErrnoException).code;
  return new ClosedError(`${message}${code ? ` (${code})` : ''}: ${cause.message}`, { cause });
}

/** Connects to a daemon socket, turning system errors into a `ConnectError` that says what to do. */
export function connectToDaemon(path: string, signal?: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path, signal });
    const onError = (error: NodeJS.ErrnoException) => {
      socket.destroy();
      reject(error.name === 'AbortError' ? error : connectError(path, error));
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

function connectError(path: string, error: NodeJS.ErrnoException): ConnectError {
  const reason = error.code ?? 'EUNKNOWN';
  const what: Record<string, string> = {
    ENOENT: `no daemon socket at ${path}; start one with: procsock serve ${path}${process.getuid?.() === 0 ? ' (as root: procsock serve --allow-root, or --user NAME)' : ''}`,
    ECONNREFUSED: `nothing is listening on ${path} (a stale socket file); restart the daemon`,
    EACCES: `permission denied for ${path}; the socket's owner or mode (procsock serve -M) does not let this user connect`,
    ENOTSOCK: `${path} is not a socket`,
    EAGAIN: `the daemon at ${path} is not accepting more connections right now (its queue is full); retry later`,
  };
  return new ConnectError(
    `cannot connect to the procsock daemon: ${what[reason] ?? `${error.message}`} (${reason})`,
    path,
    reason,
    { cause: error },
  );
}

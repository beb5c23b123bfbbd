/**
 * The daemon: listens on a Unix socket and serves each client with a `Connection`.
 *
 * At most `maxConnections` clients are served at once. Further clients are accepted and
 * held, unread, in a queue of at most `backlog`; each starts (and its deadline starts)
 * when a slot frees. Beyond that bound a client is closed at once (logged).
 *
 *   starting ──listening──► listening ──close()──► closing ──all reaped──► closed
 *
 * `close()` stops accepting, closes queued clients, TERMs every program (KILL after the
 * kill timeout), waits until every program is reaped and every socket closed, and removes
 * the socket file. It is idempotent and returns the same promise every time.
 */
import type { Stats } from 'node:fs';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { prepareCgroup } from '../channel/cgroup.js';
import { ArgumentError, describeError } from '../errors.js';
import { type AuditLog, openAuditLog } from '../policy/audit.js';
import { Connection } from './connection.js';
import { DescriptorWatch } from './descriptors.js';
import {
  listenNative,
  type NativeConnection,
  type NativeHost,
  NativeListener,
  nativeListenAvailable,
  nativePathFor,
} from './native-connections.js';
import { type ResolvedServeOptions, resolveServeOptions, type ServeOptions } from './options.js';
import type { SocketDirectory } from './socket-directory.js';
import {
  listenOnPath,
  listenOnPathByFd,
  listenOnPathNatively,
  octal,
  prepareSocketPath,
  removeSocketFile,
} from './socket-path.js';

export type ServerState = 'starting' | 'listening' | 'closing' | 'closed';

export class Server implements NativeHost {
  readonly path: string;
  readonly options: ResolvedServeOptions;
  readonly #net: NetServer;
  /** JS Connections (with the native path: the clients handed off to JS, in native slots). */
  readonly #active = new Set<Connection>();
  readonly #queue = new Set<Socket>();
  /**
   * Plain connections are served natively (native-connections.ts) when these options allow
   * it; then the addon listens and accepts, and `#net` is never used.
   */
  readonly #nativePath: boolean;
  #listener: NativeListener | null = null;
  #state: ServerState = 'starting';
  #socketFile: Stats | null = null;
  #directory: SocketDirectory | null = null;
  #nextId = 1;
  #closing: Promise<void> | null = null;
  #audit: AuditLog | null = null;
  /** Says when the descriptor limit is reached (and left): only with a log to say it in. */
  #descriptors: DescriptorWatch | null = null;

  /** Use `serve()`: it validates the options and resolves once listening. */
  constructor(options: ResolvedServeOptions) {
    this.options = options;
    this.path = options.path;
    this.#net = createServer({ allowHalfOpen: true, pauseOnConnect: true });
    this.#net.on('connection', (socket) => this.#onConnection(socket));
    this.#net.on('error', (error) => this.#log(`listening socket error: ${describeError(error)}`));
    this.#nativePath = nativePathFor(options);
  }

  /** Whether plain connections are served in native code (see native-connections.ts). */
  get nativeConnections(): boolean {
    return this.#nativePath;
  }

  get audit(): AuditLog | null {
    return this.#audit;
  }

  get state(): ServerState {
    return this.#state;
  }

  /** Connections being served now (each counts until its program is reaped). */
  get connections(): number {
    return this.#active.size + (this.#listener?.counts.served ?? 0);
  }

  /** Clients accepted and waiting for a free slot. */
  get queued(): number {
    return this.#queue.size + (this.#listener?.counts.queued ?? 0);
  }

  /** Binds the socket path (see socket-path.ts) and starts accepting. */
  async listen(): Promise<void> {
    const { path, mode, backlog, cgroup } = this.options;
    // Before the first client can come: the daemon leaves the runs' directory first.
    const controllers = cgroup === null ? [] : prepareCgroup(cgroup);
    const directory = await prepareSocketPath(path);
    let audit: AuditLog | null = null;
    try {
      audit = this.#openAudit();
      if (this.#nativePath) {
        const { fd, stats } = listenOnPathNatively(listenNative, path, directory, mode, backlog);
        this.#socketFile = stats;
        this.#audit = audit; // (before any client can be accepted)
        this.#listener = new NativeListener(fd, this);
      } else if (nativeListenAvailable()) {
        this.#socketFile = await listenOnPathByFd(
          this.#net,
          listenNative,
          path,
          directory,
          mode,
          backlog,
        );
      } else {
        // Without the addon: libuv binds, and unlinks the path by name at close (see listenOnPathByFd).
        this.#socketFile = await listenOnPath(this.#net, path, directory, mode, backlog);
      }
    } catch (error) {
      directory.close();
      await audit?.close();
      throw error;
    }
    this.#directory = directory;
    this.#audit = audit;
    if (this.options.log) this.#descriptors = new DescriptorWatch(this.options.log);
    this.#state = 'listening';
    this.#log(
      `listening on ${path} (mode ${octal(mode)}, max ${this.options.maxConnections} connections, queue ${backlog}, ${this.options.policy.isOpen ? 'no policy: as sockexec' : 'policy in force'})`,
    );
    if (cgroup !== null) {
      this.#log(
        `contained runs get a cgroup of their own under ${cgroup} (controllers: ${controllers.join(' ') || 'none'})`,
      );
    }
  }

  #openAudit(): AuditLog | null {
    const target = this.options.policy.options.audit;
    if (target === undefined) return null;
    try {
      return openAuditLog(target);
    } catch (error) {
      throw new ArgumentError(
        `serve(): policy: cannot open the audit log ${target}: ${describeError(error)}`,
      );
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#state = 'closing';
    this.#log(`shutting down: ${this.connections} connections, ${this.queued} waiting`);
    const stopped = new Promise<void>((resolve) => {
      if (!this.#net.listening) resolve();
      else this.#net.close(() => resolve());
    });
    // (The native listener shuts down its own connections, queued and served.)
    const native = this.#listener?.close();
    for (const socket of this.#queue) socket.destroy();
    this.#queue.clear();
    const connections = [...this.#active];
    for (const connection of connections) connection.shutdown();
    await Promise.all([stopped, native, ...connections.map((connection) => connection.closed)]);
    if (this.#directory && this.#socketFile) removeSocketFile(this.#directory, this.#socketFile);
    this.#directory?.close();
    await this.#audit?.close();
    this.#state = 'closed';
    this.#log('closed');
  }

  #onConnection(socket: Socket): void {
    socket.on('error', () => {
      // Until a Connection owns it, a failing socket is just closed (see the 'close' below).
    });
    if (this.#state !== 'listening') {
      socket.destroy();
      return;
    }
    if (this.#active.size < this.options.maxConnections) {
      this.#serve(socket);
    } else if (this.#queue.size < this.options.backlog) {
      this.#queue.add(socket);
      socket.once('close', () => {
        this.#queue.delete(socket);
        this.#checkDescriptors();
      });
      this.#log(
        `all ${this.options.maxConnections} slots busy: client waits (${this.#queue.size} waiting)`,
      );
    } else {
      this.#log(`all slots busy and ${this.#queue.size} clients waiting: closing a new client`);
      socket.destroy();
    }
    this.#checkDescriptors();
  }

  #checkDescriptors(): void {
    this.#descriptors?.check(this.#active.size + this.queued);
  }

  /** A native connection's client is served by a JS Connection from now on, in the same slot. */
  onHandoff(native: NativeConnection, socket: Socket, prefix: Buffer, elapsedMs: number): void {
    socket.on('error', () => {
      // The Connection owns it from the next line on.
    });
    const connection = new Connection(socket, native.id, this.options, this.#audit);
    this.#active.add(connection);
    void connection.closed.then(() => {
      this.#active.delete(connection);
      native.handedOffClosed();
    });
    connection.start(prefix, elapsedMs);
    if (this.#state === 'closing') connection.shutdown();
  }

  #release(connection: Connection): void {
    if (!this.#active.delete(connection)) return;
    this.#serveNext();
    this.#checkDescriptors();
  }

  #serve(socket: Socket): void {
    const connection = new Connection(socket, this.#nextId++, this.options, this.#audit);
    this.#active.add(connection);
    this.#log(`connection ${connection.id}: accepted (${this.#active.size} active)`);
    void connection.closed.then(() => this.#release(connection));
    connection.start();
  }

  #serveNext(): void {
    if (this.#state !== 'listening') return;
    for (const socket of this.#queue) {
      if (this.#active.size >= this.options.maxConnections) return;
      this.#queue.delete(socket);
      if (socket.destroyed) continue;
      this.#serve(socket);
    }
  }

  #log(line: string): void {
    this.options.log?.(line);
  }
}

/** Starts a daemon on `options.path`; resolves once it is listening. */
export async function serve(options: ServeOptions): Promise<Server> {
  const server = new Server(resolveServeOptions(options));
  await server.listen();
  return server;
}

/**
 * A web server that runs programs per request and streams their output as it comes, without
 * blocking — lua-resty-exec's nginx locations, on plain `node:http`. The same code runs the
 * programs as its own children or through the procsock daemon (one switch: the socket).
 *
 *   node --import tsx examples/http-server.ts                       # local children
 *   procsock serve /tmp/procsock.sock &
 *   node --import tsx examples/http-server.ts --socket /tmp/procsock.sock --port 8080
 *   (or PROCSOCK_SOCKET=/tmp/procsock.sock PORT=8080 node --import tsx examples/http-server.ts)
 *
 *   curl localhost:8080/uname                 # Linux
 *   curl localhost:8080/uname-a               # Linux host 6.1.0 … x86_64 GNU/Linux
 *   curl --data-binary @/etc/hostname localhost:8080/cat    # the body, through cat
 *   curl -N 'localhost:8080/slow-print?lines=5&interval=1'  # a line a second, as printed
 *   curl localhost:8080/bash-path             # bash -c 'echo $PATH'
 *   curl --data-binary $'hello\nworld\n' localhost:8080/duplex   # line by line through cat
 *
 * Output is streamed with chunked transfer; the headers go out with the first chunk, so an
 * error before any output still gets its status: daemon unreachable → 503, no output within
 * the timeout → 504 (the program is stopped). A failure after output has started cuts the
 * response off (no final chunk), so the HTTP client sees it is incomplete. The exit status
 * comes as an HTTP trailer, `X-Exit-Code` or `X-Term-Signal`; the program's stderr goes to
 * the server's log. An HTTP client that hangs up mid-stream stops the program.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  AbortError,
  ConnectError,
  connect,
  createExec,
  type Exec,
  type ExecResult,
  TimeoutError,
} from 'procsock';

export interface HttpServerOptions {
  /** The daemon's socket; without one, programs run as children of this server. */
  socket?: string;
  /** TCP port; 0 (default) picks a free one. */
  port?: number;
  /** Address to listen on. Default loopback only: this runs programs for whoever asks. */
  host?: string;
  /** Longest wait in ms for a program's next output before it is stopped (504). Default 10000. */
  timeout?: number;
  /** argv of the slow printer, instead of the built-in one (which takes ?lines=&interval=). */
  slowPrinter?: readonly string[];
  /** Where the programs' stderr and the errors go. Default: this process's stderr. */
  log?: (line: string) => void;
}

export interface HttpExample {
  server: Server;
  /** `http://127.0.0.1:PORT`. */
  url: string;
  port: number;
  /** Stops listening, ends open connections (their programs are stopped) and resolves. */
  close(): Promise<void>;
}

/** The built-in slow printer: `lines` lines, `interval` seconds apart (sh and sleep only). */
const SLOW_PRINT = 'i=1; while [ "$i" -le "$1" ]; do echo "line $i"; i=$((i+1)); sleep "$2"; done';
const MAX_BODY = 64 * 1024;

export async function startHttpServer(options: HttpServerOptions = {}): Promise<HttpExample> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const exec = createExec(options.socket ?? 'local', {
    encoding: 'buffer',
    idleTimeout: options.timeout ?? 10_000,
  });
  const server = createServer((req, res) => {
    route(req, res, exec, options, log).catch((error: unknown) => fail(res, error, log));
  });
  server.listen(options.port ?? 0, options.host ?? '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    server,
    port,
    url: `http://${options.host ?? '127.0.0.1'}:${port}`,
    async close() {
      const closed = once(server, 'close');
      server.close();
      server.closeAllConnections();
      await closed;
    },
  };
}

async function route(
  req: IncomingMessage,
  res: ServerResponse,
  exec: Exec<'buffer'>,
  options: HttpServerOptions,
  log: (line: string) => void,
): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const method = url.pathname === '/cat' || url.pathname === '/duplex' ? 'POST' : 'GET';
  if (!ROUTES.has(url.pathname)) return reply(res, 404, `no route ${url.pathname}\n`);
  if (req.method !== method) {
    res.setHeader('allow', method);
    return reply(res, 405, `${url.pathname} takes ${method}\n`);
  }
  switch (url.pathname) {
    case '/uname':
      return stream(res, exec, ['uname'], null, log);
    case '/uname-a':
      return stream(res, exec, ['uname', '-a'], null, log);
    case '/cat':
      return stream(res, exec, ['cat'], req, log); // the body is streamed in, not buffered
    case '/slow-print':
      return stream(res, exec, slowPrinter(url, options), null, log);
    case '/bash-path':
      return stream(res, exec, ['bash', '-c', 'echo $PATH'], null, log);
    case '/duplex':
      return duplex(req, res, options);
  }
}

const ROUTES = new Set(['/uname', '/uname-a', '/cat', '/slow-print', '/bash-path', '/duplex']);

function slowPrinter(url: URL, options: HttpServerOptions): readonly string[] {
  if (options.slowPrinter) return options.slowPrinter;
  // Only checked numbers reach the program, as separate arguments: never spliced into code.
  const lines = boundedNumber(url.searchParams.get('lines'), 5, 1, 100, /^[0-9]+$/);
  const interval = boundedNumber(url.searchParams.get('interval'), 1, 0, 10, /^[0-9.]+$/);
  return ['sh', '-c', SLOW_PRINT, 'slow-print', String(lines), String(interval)];
}

function boundedNumber(
  text: string | null,
  fallback: number,
  min: number,
  max: number,
  form: RegExp,
) {
  if (text === null) return fallback;
  const value = Number(text);
  if (!form.test(text) || !(value >= min && value <= max)) {
    throw new BadRequest(`expected a number from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return value;
}

class BadRequest extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

/** Runs argv and streams its stdout into the response, chunk by chunk, as it is printed. */
async function stream(
  res: ServerResponse,
  exec: Exec<'buffer'>,
  argv: readonly string[],
  stdin: IncomingMessage | null,
  log: (line: string) => void,
): Promise<void> {
  const result: ExecResult<Buffer> = await exec(argv, {
    stdin,
    stdout: (chunk) => send(res, chunk),
    stderr: (chunk) => log(`${argv[0]}: ${chunk.toString().trimEnd()}`),
    signal: hangUpSignal(res),
  });
  begin(res);
  res.addTrailers(
    result.exitCode !== null
      ? { 'x-exit-code': String(result.exitCode) }
      : { 'x-term-signal': result.termSignal ?? 'unknown' },
  );
  res.end();
}

/**
 * The duplex round trip (lua-resty-exec's socket module): one `cat`, fed the request body
 * line by line; each line is sent, its echo awaited and streamed out before the next.
 */
async function duplex(
  req: IncomingMessage,
  res: ServerResponse,
  options: HttpServerOptions,
): Promise<void> {
  const body = await readBody(req);
  const session = await connect(options.socket ?? 'local', {
    timeout: options.timeout ?? 10_000,
    signal: hangUpSignal(res),
  });
  try {
    session.sendArgs(['cat']);
    for (const line of body.split('\n').filter((text) => text !== '')) {
      await session.send(`${line}\n`);
      let echo = '';
      while (!echo.endsWith('\n')) {
        const received = await session.receive();
        if (received.type === 'timeout') {
          const timeout = options.timeout ?? 10_000;
          throw new TimeoutError('cat sent no echo within the timeout', timeout, 'idleTimeout');
        }
        if (received.type !== 'stdout') throw new Error(`cat ended early (${received.type})`);
        echo += received.data.toString();
      }
      await send(res, `stdout: ${echo}`);
    }
    session.sendClose();
    const exit = await session.receive();
    begin(res);
    res.end(exit.type === 'exit' ? `exit ${exit.exitCode ?? exit.termSignal}\n` : `${exit.type}\n`);
  } finally {
    await session.close();
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const pieces: Buffer[] = [];
  let size = 0;
  for await (const piece of req as AsyncIterable<Buffer>) {
    size += piece.length;
    if (size > MAX_BODY) throw new BadRequest(`the body is over ${MAX_BODY} bytes`, 413);
    pieces.push(piece);
  }
  return Buffer.concat(pieces).toString();
}

/** Aborts when the HTTP client hangs up before the response was finished. */
function hangUpSignal(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort(new Error('the HTTP client hung up'));
  });
  return controller.signal;
}

function begin(res: ServerResponse): void {
  if (res.headersSent) return;
  res.writeHead(200, {
    'content-type': 'text/plain; charset=utf-8',
    'x-content-type-options': 'nosniff',
    trailer: 'x-exit-code, x-term-signal',
  });
}

/** Writes a chunk; while the HTTP client is slow, the program is held back (back-pressure). */
function send(res: ServerResponse, chunk: Buffer | string): Promise<void> | undefined {
  begin(res);
  if (res.destroyed || res.write(chunk)) return undefined;
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

function reply(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(body);
}

/** An error as an HTTP status; once output has started, the response is cut off instead. */
function fail(res: ServerResponse, error: unknown, log: (line: string) => void): void {
  if (error instanceof AbortError || res.destroyed) return; // the HTTP client hung up
  const status =
    error instanceof ConnectError
      ? 503
      : error instanceof TimeoutError
        ? 504
        : error instanceof BadRequest
          ? error.status
          : 500;
  const message = error instanceof Error ? error.message : String(error);
  if (status >= 500) log(`http: ${status}: ${message}`);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const why = status === 503 ? 'the procsock daemon is unreachable: ' : '';
  reply(res, status, `${why}${message}\n`);
}

/** What a user can do about a failed listen, in one line (no stack trace). */
function listenFailure(error: NodeJS.ErrnoException, host: string, port: number): string {
  const where = `${host}:${port}`;
  if (error.code === 'EADDRINUSE') {
    return `port ${port} is already in use on ${host} (another server?); choose another with --port N or PORT=N`;
  }
  if (error.code === 'EACCES')
    return `not allowed to listen on ${where} (ports below 1024 need privilege)`;
  if (error.code === 'EADDRNOTAVAIL') return `${host} is not an address of this machine`;
  return `cannot listen on ${where}: ${error.message}`;
}

async function main(): Promise<number> {
  let values: { socket?: string; port?: string; host?: string };
  try {
    ({ values } = parseArgs({
      options: { socket: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' } },
    }));
  } catch (error) {
    console.error(
      `http-server: ${(error as Error).message} (options: --socket PATH --port N --host ADDR)`,
    );
    return 2;
  }
  const socket = values.socket ?? process.env.PROCSOCK_SOCKET;
  const portText = values.port ?? process.env.PORT ?? '8080';
  const port = Number(portText);
  if (!/^[0-9]+$/.test(portText) || port > 65535) {
    console.error(
      `http-server: --port: expected a port number from 0 to 65535, got ${JSON.stringify(portText)}`,
    );
    return 2;
  }
  const host = values.host ?? '127.0.0.1';
  let example: HttpExample;
  try {
    example = await startHttpServer({ socket: socket || undefined, port, host });
  } catch (error) {
    console.error(`http-server: ${listenFailure(error as NodeJS.ErrnoException, host, port)}`);
    return 1;
  }
  console.log(
    `listening on ${example.url}, programs run ${socket ? `by the daemon at ${socket}` : 'locally'}`,
  );
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void example.close());
  }
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main();
}

/**
 * examples/http-server.ts end to end: real HTTP requests to the example server, which runs
 * its programs locally and through a real daemon. Streaming is proven with a printer that
 * cannot print its second line until the test, having received the first one over HTTP,
 * opens a fifo for it.
 */
import { strict as assert } from 'node:assert';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type HttpExample, startHttpServer } from '../../examples/http-server.js';
import { testChildren } from '../helpers/cli.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { isAlive, tempDir, waitUntil } from '../helpers/process.js';

// The example runs bash with this process's environment, and bash started with a socket as
// stdin (child_process pipes are socketpairs) reads ~/.bashrc, which may change PATH: an
// empty HOME keeps the machine's rc files out of GET /bash-path.
const emptyHome = tempDir('procsock-http-home-');
process.env.HOME = emptyHome.dir;
after(() => emptyHome.cleanup());

interface Response {
  status: number;
  body: Buffer;
  trailers: NodeJS.Dict<string>;
  headers: NodeJS.Dict<string | string[]>;
}

/** Sends a request; resolves with the response as it starts (its body still to read). */
function open(
  url: string,
  { method = 'GET', body }: { method?: string; body?: Buffer | string | 'open' } = {},
): { response: Promise<IncomingMessage>; abort(): void; end(): void } {
  const req = httpRequest(url, { method, agent: false });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.on('response', resolve);
    req.on('error', reject);
  });
  if (body === 'open')
    req.flushHeaders(); // a body that has not ended: sent chunked, later
  else req.end(body);
  return { response, abort: () => req.destroy(), end: () => req.end() };
}

async function fetchAll(
  url: string,
  options: { method?: string; body?: Buffer | string } = {},
): Promise<Response> {
  const res = await open(url, options).response;
  const pieces: Buffer[] = [];
  for await (const piece of res) pieces.push(piece as Buffer);
  return {
    status: res.statusCode!,
    body: Buffer.concat(pieces),
    trailers: res.trailers,
    headers: res.headers,
  };
}

/** Reads the response until `text` has arrived; returns everything read so far. */
async function readUntil(res: IncomingMessage, text: string): Promise<string> {
  let seen = '';
  res.setEncoding('utf8');
  while (!seen.includes(text)) {
    const piece = res.read() as string | null;
    if (piece !== null) {
      seen += piece;
      continue;
    }
    if (res.readableEnded)
      throw new Error(`the response ended before ${JSON.stringify(text)}: ${seen}`);
    await Promise.race([once(res, 'readable'), once(res, 'end')]);
  }
  return seen;
}

const uname = (...args: string[]) => execFileSync('uname', args, { encoding: 'utf8' });

for (const where of ['local', 'daemon'] as const) {
  describe(`http-server example (${where})`, () => {
    let daemon: TestDaemon | null = null;
    let server: HttpExample;
    /** A server whose slow printer prints `line 1 PID`, then waits for the fifo. */
    let gated: HttpExample;
    const dir = tempDir('procsock-http-');
    const fifo = dir.path('gate');
    const log: string[] = [];
    let childrenBefore: number;

    before(async () => {
      childrenBefore = testChildren().filter((child) => child.state !== 'Z').length;
      execFileSync('mkfifo', [fifo]);
      if (where === 'daemon') daemon = await startDaemon({ killTimeout: 500 });
      const socket = daemon?.path;
      server = await startHttpServer({ socket, timeout: 5000, log: (line) => log.push(line) });
      gated = await startHttpServer({
        socket,
        log: (line) => log.push(line),
        slowPrinter: [
          'sh',
          '-c',
          'echo "line 1 $$"; read go < "$1"; echo "line 2"',
          'printer',
          fifo,
        ],
      });
    });

    after(async () => {
      await server.close();
      await gated.close();
      await daemon?.close();
      dir.cleanup();
      // Every program was reaped: no zombie, nothing left running.
      const children = testChildren();
      assert.deepEqual(
        children.filter((child) => child.state === 'Z'),
        [],
      );
      assert.equal(children.length, childrenBefore, JSON.stringify(children));
    });

    test('GET /uname and /uname-a: the output, and the exit code as a trailer', async () => {
      const plain = await fetchAll(`${server.url}/uname`);
      assert.equal(plain.status, 200);
      assert.equal(plain.body.toString(), uname());
      assert.equal(plain.headers['transfer-encoding'], 'chunked');
      assert.deepEqual(plain.trailers, { 'x-exit-code': '0' });
      const all = await fetchAll(`${server.url}/uname-a`);
      assert.equal(all.status, 200);
      assert.equal(all.body.toString(), uname('-a'));
    });

    test('POST /cat: the request body goes to stdin and comes back byte for byte', async () => {
      const body = randomBytes(300_000);
      const res = await fetchAll(`${server.url}/cat`, { method: 'POST', body });
      assert.equal(res.status, 200);
      assert.ok(res.body.equals(body), 'the same bytes came back');
      assert.equal(res.trailers['x-exit-code'], '0');
    });

    test('GET /bash-path: bash -c with $PATH expanded by bash', async () => {
      const res = await fetchAll(`${server.url}/bash-path`);
      assert.equal(res.body.toString(), `${process.env.PATH}\n`);
    });

    test('POST /duplex: one cat, each body line sent and its echo received in turn', async () => {
      const res = await fetchAll(`${server.url}/duplex`, {
        method: 'POST',
        body: 'first line\nsecond line\n',
      });
      assert.equal(res.status, 200);
      assert.equal(res.body.toString(), 'stdout: first line\nstdout: second line\nexit 0\n');
    });

    test('GET /slow-print (built-in printer): every line, in order', async () => {
      const res = await fetchAll(`${server.url}/slow-print?lines=3&interval=0`);
      assert.equal(res.body.toString(), 'line 1\nline 2\nline 3\n');
      const bad = await fetchAll(`${server.url}/slow-print?lines=1;reboot`);
      assert.equal(bad.status, 400);
    });

    test('GET /slow-print: the first line reaches the HTTP client while the printer still runs', async () => {
      const res = await open(`${gated.url}/slow-print`).response;
      assert.equal(res.statusCode, 200);
      const first = await readUntil(res, '\n');
      const pid = Number(/^line 1 (\d+)\n$/.exec(first)?.[1]);
      // The printer cannot have finished: it is blocked until the fifo is opened, below.
      assert.ok(isAlive(pid), 'the printer is still running');
      await writeFile(fifo, 'go\n');
      const rest = await readUntil(res, 'line 2\n');
      assert.equal(rest, 'line 2\n');
      await once(res.resume(), 'end');
      assert.equal(res.trailers['x-exit-code'], '0');
    });

    test('an HTTP client hanging up mid-stream stops the program', async () => {
      const request = open(`${gated.url}/slow-print`);
      const res = await request.response;
      const pid = Number(/^line 1 (\d+)\n$/.exec(await readUntil(res, '\n'))?.[1]);
      assert.ok(isAlive(pid));
      request.abort();
      await waitUntil(() => !isAlive(pid), `the printer (pid ${pid}) is gone`);
    });

    test('504 when the program sends nothing within the timeout', async () => {
      const quick = await startHttpServer({
        socket: daemon?.path,
        timeout: 200,
        log: (line) => log.push(line),
      });
      try {
        // cat waits for a body that never comes, so it prints nothing.
        const request = open(`${quick.url}/cat`, { method: 'POST', body: 'open' });
        const res = await request.response;
        assert.equal(res.statusCode, 504);
        res.setEncoding('utf8');
        let body = '';
        for await (const piece of res) body += piece;
        assert.match(body, /sent no data for 200 ms/);
        request.abort();
      } finally {
        await quick.close();
      }
    });

    test('unknown route 404, wrong method 405', async () => {
      assert.equal((await fetchAll(`${server.url}/nope`)).status, 404);
      const wrong = await fetchAll(`${server.url}/uname`, { method: 'POST', body: 'x' });
      assert.equal(wrong.status, 405);
      assert.equal(wrong.headers.allow, 'GET');
    });
  });
}

describe('http-server example, daemon gone', () => {
  test('503 with a clear body, for ez-mode routes and the duplex route', async () => {
    const daemon = await startDaemon();
    const path = daemon.path;
    const log: string[] = [];
    const server = await startHttpServer({ socket: path, log: (line) => log.push(line) });
    try {
      assert.equal((await fetchAll(`${server.url}/uname`)).status, 200);
      await daemon.close();
      for (const [route, method] of [
        ['/uname', 'GET'],
        ['/duplex', 'POST'],
      ] as const) {
        const body = method === 'POST' ? 'x\n' : undefined;
        const res = await fetchAll(`${server.url}${route}`, { method, body });
        assert.equal(res.status, 503, route);
        assert.match(
          res.body.toString(),
          /^the procsock daemon is unreachable: .*no daemon socket at /,
        );
      }
    } finally {
      await server.close();
    }
  });
});

describe('http-server example, started from the command line', () => {
  const example = new URL('../../examples/http-server.ts', import.meta.url).pathname;
  const start = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', example, ...args], (error, stdout, stderr) =>
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr }),
      );
    });

  test('a busy port, a bad port and an unknown option: one clear line, no stack trace', async () => {
    const busy = createNetServer().listen(0, '127.0.0.1');
    await once(busy, 'listening');
    const { port } = busy.address() as AddressInfo;
    try {
      const [inUse, badPort, unknown] = await Promise.all([
        start(['--port', String(port)]),
        start(['--port', 'eighty']),
        start(['--prot', '80']),
      ]);
      assert.equal(inUse.code, 1);
      assert.equal(
        inUse.stderr,
        `http-server: port ${port} is already in use on 127.0.0.1 (another server?); choose another with --port N or PORT=N\n`,
      );
      assert.equal(badPort.code, 2);
      assert.match(badPort.stderr, /^http-server: --port: expected a port number .*"eighty"\n$/);
      assert.equal(unknown.code, 2);
      assert.match(unknown.stderr, /^http-server: Unknown option '--prot'.*\n$/);
    } finally {
      busy.close();
    }
  });
});

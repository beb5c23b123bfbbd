/**
 * What the client reports when the other end is missing or misbehaves: no daemon, a
 * stale socket, a peer that breaks the protocol or hangs up early — and what it accepts
 * that procsock's own daemon never sends (`unknown` output).
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { dirname } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createExec, run } from '../../src/client/exec.js';
import { connect } from '../../src/client/session.js';
import { ClosedError, ConnectError, ProtocolError } from '../../src/errors.js';
import { startDaemon, startDaemonProcess } from '../helpers/daemon.js';
import { childrenOf, isAlive, tempDir, waitUntil } from '../helpers/process.js';

const dir = tempDir('procsock-client-');
after(() => dir.cleanup());

/** A fake daemon that reads the request and answers with `reply` bytes, then hangs up. */
async function fakeDaemon(name: string, reply: string): Promise<{ path: string; server: Server }> {
  const path = dir.path(name);
  const server = createServer((socket) => {
    socket.once('data', () => socket.end(reply));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { path, server };
}

describe('connection errors', () => {
  test('no socket file: ConnectError naming the path and how to start a daemon', async () => {
    const path = dir.path('nobody-here.sock');
    await assert.rejects(run('true', { socket: path }), (error: ConnectError) => {
      assert.ok(error instanceof ConnectError);
      assert.equal(error.code, 'PROCSOCK_CONNECT');
      assert.equal(error.reason, 'ENOENT');
      assert.equal(error.path, path);
      assert.match(error.message, /no daemon socket at .*nobody-here\.sock.*procsock serve/);
      return true;
    });
    await assert.rejects(connect(path), ConnectError);
  });

  test('a path that is a file or a directory: ConnectError saying it is no socket (not "stale")', async () => {
    const file = dir.path('not-a-socket');
    writeFileSync(file, '');
    for (const [path, what] of [
      [file, 'a regular file'],
      [dir.path(''), 'a directory'],
    ] as const) {
      await assert.rejects(run('true', { socket: path }), (error: ConnectError) => {
        assert.ok(error instanceof ConnectError);
        assert.equal(error.reason, 'ECONNREFUSED');
        assert.match(error.message, new RegExp(`is ${what}, not a daemon's socket`));
        return true;
      });
    }
  });

  test('a path longer than a socket address holds is refused, never cut short to another socket', async () => {
    // A daemon listening at the first 107 bytes of the long path: Node would connect to it.
    const long = dir.path('z'.repeat(120));
    const short = long.slice(0, 107);
    const server = createServer((socket) => socket.end('8:exitcode,1:0,'));
    await new Promise<void>((resolve) => server.listen(short, resolve));
    try {
      await assert.rejects(run('true', { socket: long }), (error: ConnectError) => {
        assert.ok(error instanceof ConnectError, String(error));
        assert.equal(error.reason, 'ENAMETOOLONG');
        assert.match(error.message, /holds at most 107/);
        return true;
      });
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test('a stale socket file (nothing listening): ConnectError that says so', async () => {
    const path = dir.path('stale.sock');
    // A daemon that died without cleaning up: a socket file nobody listens on.
    const child = spawn(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`,
    ]);
    await new Promise((resolve) => child.stdout.once('data', resolve));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('close', resolve));
    assert.ok(existsSync(path));
    await assert.rejects(createExec(path)('true'), (error: ConnectError) => {
      assert.equal(error.reason, 'ECONNREFUSED');
      assert.match(error.message, /nothing is listening on .*stale\.sock/);
      return true;
    });
  });

  const notRoot = process.getuid?.() !== 0 && 'needs root, to try as another user';
  test('permission denied: ConnectError with reason EACCES, naming the path', {
    skip: notRoot,
  }, async () => {
    // Root may connect to any socket: try as nobody, against a daemon's 0660 root-owned socket.
    const daemon = await startDaemon();
    try {
      chmodSync(dirname(daemon.path), 0o755);
      const client = fileURLToPath(new URL('../../src/client/exec.ts', import.meta.url));
      const code = `import { run } from ${JSON.stringify(client)};
try { await run('true', { socket: process.argv[1] }); console.log('connected'); }
catch (error) { console.log(JSON.stringify({ reason: error.reason, message: error.message })); }`;
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', '--input-type=module', '-e', code, daemon.path],
        { uid: 65534, gid: 65534 },
      );
      let output = '';
      child.stdout.on('data', (data) => {
        output += data;
      });
      await new Promise((resolve) => child.once('close', resolve));
      const { reason, message } = JSON.parse(output);
      assert.equal(reason, 'EACCES');
      assert.ok(message.includes(daemon.path));
      assert.match(message, /permission denied/);
    } finally {
      await daemon.close();
    }
  });
});

describe('a misbehaving daemon', () => {
  const servers: Server[] = [];
  after(() => {
    for (const server of servers) server.close();
  });
  let unknownPath: string;
  let garbagePath: string;
  let hangUpPath: string;
  before(async () => {
    const unknown = await fakeDaemon(
      'unknown.sock',
      '7:unknown,3:abc,6:stdout,2:hi,8:exitcode,1:0,',
    );
    const garbage = await fakeDaemon('garbage.sock', '6:stdout,2:hi,this is not a netstring');
    const hangUp = await fakeDaemon('hangup.sock', '6:stdout,2:hi,');
    servers.push(unknown.server, garbage.server, hangUp.server);
    unknownPath = unknown.path;
    garbagePath = garbage.path;
    hangUpPath = hangUp.path;
  });

  test('output of type unknown is collected in the result', async () => {
    const result = await run(['anything'], { socket: unknownPath });
    assert.equal(result.unknown, 'abc');
    assert.equal(result.stdout, 'hi');
    assert.equal(result.exitCode, 0);
  });

  test('a session receives unknown output as such', async () => {
    const session = await connect(unknownPath);
    session.sendArgs(['anything']);
    const received = [];
    for await (const item of session) received.push(item);
    assert.deepEqual(received, [
      { type: 'unknown', data: Buffer.from('abc') },
      { type: 'stdout', data: Buffer.from('hi') },
      // A plain daemon tells no more than the status.
      {
        type: 'exit',
        exitCode: 0,
        termSignal: null,
        reason: 'exit',
        usage: null,
        descendantsStopped: null,
      },
    ]);
    await session.close();
  });

  test('a protocol violation rejects with ProtocolError', async () => {
    await assert.rejects(run('x', { socket: garbagePath }), ProtocolError);
  });

  test('a hang-up before the exit status rejects with ClosedError', async () => {
    await assert.rejects(run('x', { socket: hangUpPath }), ClosedError);
    const session = await connect(hangUpPath);
    session.sendArgs(['x']);
    assert.deepEqual(await session.receive(), { type: 'stdout', data: Buffer.from('hi') });
    await assert.rejects(session.receive(), ClosedError);
    assert.deepEqual(await session.receive(), { type: 'closed' });
    await session.close();
  });

  test('a request over the daemon limits: the ClosedError says it was refused unread, and which limits', async () => {
    const strict = await startDaemon({ limits: { maxArgLength: 1000 } });
    try {
      await assert.rejects(run(['echo', 'x'.repeat(100_000)], { socket: strict.path }), (error) => {
        assert.ok(error instanceof ClosedError, String(error));
        assert.match(
          error.message,
          /without replying anything: either it refused the request unread/,
        );
        assert.match(error.message, /--max-arg-length/);
        return true;
      });
      // The daemon serves the next request as usual.
      assert.equal((await run(['echo', 'ok'], { socket: strict.path })).stdout, 'ok\n');
    } finally {
      await strict.close();
    }
  });

  test('a daemon killed while its silent program runs: a ClosedError that says it may have stopped', async () => {
    const daemon = await startDaemonProcess(['-t', '0']);
    try {
      const call = run(['sleep', '30'], { socket: daemon.path });
      await waitUntil(() => childrenOf(daemon.pid).length > 0, 'the daemon started sleep');
      const started = childrenOf(daemon.pid).map((child) => child.pid);
      process.kill(daemon.pid, 'SIGKILL');
      await assert.rejects(call, (error) => {
        assert.ok(error instanceof ClosedError, String(error));
        assert.match(error.message, /or it stopped \(killed, shut down\) while the program ran/);
        return true;
      });
      // What the daemon started does not outlive it (a parent-death signal).
      await waitUntil(() => !started.some(isAlive), 'the daemon’s child is gone');
    } finally {
      await daemon.exited;
      daemon.cleanup();
    }
  });

  test('the daemon going away before the args are sent is reported at sendArgs', async () => {
    const path = dir.path('drop.sock');
    const server = createServer((socket) => socket.destroy());
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(path, resolve));
    const session = await connect(path);
    await waitUntil(() => session.socket!.destroyed, 'the hang-up is seen', 5000);
    assert.throws(() => session.sendArgs(['true']), ClosedError);
    await session.close();
  });

  test('a daemon that talks before the args are sent is reported at sendArgs', async () => {
    const path = dir.path('talker.sock');
    const server = createServer((socket) => {
      socket.write('6:stdout,2:hi,');
      socket.on('error', () => {});
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(path, resolve));
    const session = await connect(path);
    const socket = session.socket!;
    await waitUntil(
      () => socket.readableLength > 0 || socket.destroyed,
      'the early bytes arrive',
      5000,
    );
    assert.throws(
      () => session.sendArgs(['true']),
      (error: ClosedError) =>
        error instanceof ClosedError && /sent data before the args/.test(error.message),
    );
    assert.equal(session.state, 'connected', 'nothing started');
    await session.close();
  });
});

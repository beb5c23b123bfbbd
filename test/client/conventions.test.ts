/**
 * The API's conventions, on a local child and through a real daemon: `timeout` is the
 * whole run's wall-clock limit, `idleTimeout` the between-data one; collected output is
 * capped by `maxBuffer` (LimitError, program stopped); options a transport cannot carry out
 * are refused, never dropped; promise-returning calls reject, never throw.
 */
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { localTransport } from '../../src/channel/local.js';
import { daemonTransport } from '../../src/channel/socket.js';
import type { Launch, Transport } from '../../src/channel/transport.js';
import { parseRunArgs } from '../../src/cli/run.js';
import { createExec, run } from '../../src/client/exec.js';
import type { ExecResult } from '../../src/client/execute.js';
import { connect } from '../../src/client/session.js';
import { DEFAULT_MAX_BUFFER } from '../../src/core/limits.js';
import {
  ArgumentError,
  ConnectError,
  LimitError,
  PolicyError,
  ProcsockError,
  SocketError,
  SocketPathError,
  StateError,
  TimeoutError,
  UnsupportedOptionError,
  type UsageError,
} from '../../src/errors.js';
import { Policy } from '../../src/policy/policy.js';
import { Shell } from '../../src/shell/shell.js';
import { childrenNamed, openTarget, TARGET_KINDS, type TestTarget } from '../channel/targets.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { failure, withoutUsage } from '../helpers/outcome.js';
import { tempDir, waitUntil } from '../helpers/process.js';

const MiB = 1024 * 1024;
/** Prints a line every 50 ms, forever: never idle, never done. */
const CHATTY = ['sh', '-c', 'while :; do echo tick; sleep 0.05; done'];

for (const kind of TARGET_KINDS) {
  describe(`time and size limits: ${kind}`, () => {
    let target: TestTarget;
    before(async () => {
      target = await openTarget(kind);
    });
    after(() => target.close());

    /** The program is gone: reaped locally at once; through the daemon, once it saw the hang-up. */
    const gone = (command: string) =>
      waitUntil(
        () => childrenNamed(command).length === 0,
        `${command} is stopped and reaped`,
        5000,
      );

    test('timeout is wall-clock: a program that keeps printing is stopped', async () => {
      const exec = createExec(target.target, { idleTimeout: 0 });
      await assert.rejects(exec({ argv: CHATTY, timeout: 400 }), (error: TimeoutError) => {
        assert.ok(error instanceof TimeoutError);
        assert.equal(error.code, 'PROCSOCK_TIMEOUT');
        assert.equal(error.option, 'timeout');
        assert.equal(error.timeout, 400);
        assert.match(error.message, /did not finish within 400 ms/);
        return true;
      });
      await gone('sh');
    });

    test('idleTimeout the lua way: data keeps it alive, silence stops the program', async () => {
      const exec = createExec(target.target, { idleTimeout: 300 });
      const ticks = ['sh', '-c', 'for i in 1 2 3 4 5 6; do echo $i; sleep 0.1; done'];
      assert.equal((await exec(ticks)).stdout, '1\n2\n3\n4\n5\n6\n');
      await assert.rejects(exec('sh', '-c', 'echo hi; exec sleep 30'), (error: TimeoutError) => {
        assert.equal(error.option, 'idleTimeout');
        assert.equal(error.timeout, 300);
        return true;
      });
      await gone('sleep');
    });

    test('timeoutFatal: false waits for a quiet program; with a wall-clock timeout it is refused', async () => {
      const exec = createExec(target.target, { idleTimeout: 50, timeoutFatal: false });
      assert.equal((await exec('sh', '-c', 'sleep 0.3; echo late')).stdout, 'late\n');
      await assert.rejects(exec({ argv: ['true'], timeout: 1000 }), /timeoutFatal: false/);
    });

    test('maxBuffer: past it the program is stopped and the call rejects with LimitError', async () => {
      await assert.rejects(
        run(['yes'], { transport: target.target, maxBuffer: MiB }),
        (error: LimitError) => {
          assert.ok(error instanceof LimitError);
          assert.equal(error.code, 'PROCSOCK_LIMIT');
          assert.equal(error.limit, 'maxBuffer');
          assert.match(error.message, /yes wrote more than 1048576 bytes to stdout \(maxBuffer\)/);
          return true;
        },
      );
      await gone('yes');
      await assert.rejects(
        run(['sh', '-c', 'head -c 100000 /dev/zero >&2; sleep 30'], {
          transport: target.target,
          maxBuffer: 65536,
          encoding: 'buffer',
        }),
        /to stderr \(maxBuffer\)/,
      );
      await gone('sleep');
    });

    test("maxBuffer: the error's result keeps the output up to the limit, whole characters in utf8", async () => {
      // One write of 10 two-byte characters: the limit of 5 cuts the third in half.
      const wide = [
        'python3',
        '-c',
        'import os; os.write(1, ("é" * 10).encode()); import time; time.sleep(30)',
      ];
      const [text, result] = await failure(run(wide, { transport: target.target, maxBuffer: 5 }));
      assert.equal(text.code, 'PROCSOCK_LIMIT');
      assert.equal(result.stdout, 'éé');
      const [, bytes] = await failure(
        run(wide, { transport: target.target, maxBuffer: 5, encoding: 'buffer' }),
      );
      // Bytes are bytes: exactly the limit.
      assert.deepEqual(
        (bytes as unknown as ExecResult<Buffer>).stdout,
        Buffer.from('é'.repeat(10)).subarray(0, 5),
      );
      await gone('python3');
    });

    test('maxBuffer counts collected bytes only: a callback stream is not capped', async () => {
      let streamed = 0;
      const result = await run(['head', '-c', String(3 * MiB), '/dev/zero'], {
        transport: target.target,
        maxBuffer: MiB,
        encoding: 'buffer',
        stdout: (chunk) => {
          streamed += chunk.length;
        },
      });
      assert.equal(streamed, 3 * MiB);
      assert.equal(result.exitCode, 0);
      const exact = await run(['head', '-c', String(MiB), '/dev/zero'], {
        transport: target.target,
        maxBuffer: MiB,
      });
      assert.equal(exact.stdout.length, MiB, 'exactly maxBuffer bytes is allowed');
    });

    test('maxBuffer has a default (DEFAULT_MAX_BUFFER, 64 MiB)', async () => {
      assert.equal(DEFAULT_MAX_BUFFER, 64 * MiB);
      await assert.rejects(
        run(['head', '-c', String(DEFAULT_MAX_BUFFER + 1), '/dev/zero'], {
          transport: target.target,
          encoding: 'buffer',
        }),
        (error: LimitError) => error.limit === 'maxBuffer',
      );
    });
  });
}

describe('options a transport cannot carry out', () => {
  // A daemon that does not speak the protocol extension (as the C sockexec): it closes an
  // extended request's connection at once (test/server/c-sockexec.test.ts: the C one does too).
  let plain: TestDaemon;
  let marker: ReturnType<typeof tempDir>;
  before(async () => {
    plain = await startDaemon({ extension: false });
    marker = tempDir('procsock-refused-');
  });
  after(async () => {
    await plain.close();
    marker.cleanup();
  });

  test('cwd and env through a plain daemon are refused with a clear error; nothing runs', async () => {
    const file = marker.path('ran');
    const socket = plain.path;
    for (const [option, value] of [
      ['cwd', '/usr'],
      ['env', { PATH: '/usr/bin:/bin' }],
      ['killTimeout', 100],
      ['processGroup', true],
    ] as const) {
      await assert.rejects(
        run(['touch', file], { socket, [option]: value }),
        (error: UnsupportedOptionError) => {
          assert.ok(error instanceof UnsupportedOptionError, String(error));
          assert.equal(error.code, 'PROCSOCK_UNSUPPORTED');
          assert.equal(error.option, option);
          assert.match(
            error.message,
            new RegExp(`^${option} cannot be honoured by the sockexec daemon at`),
          );
          return true;
        },
      );
    }
    const message = await run(['pwd'], { socket, cwd: '/usr' }).catch(
      (error: Error) => error.message,
    );
    assert.match(String(message), /\['env', '-C', dir, \.\.\.argv\]/, 'it says what to do instead');
    await assert.rejects(createExec(socket, { env: {} })('true'), UnsupportedOptionError);
    const session = await connect(socket, { cwd: '/' });
    session.sendArgs(['touch', file]);
    await assert.rejects(session.wait(), UnsupportedOptionError);
    await session.close();
    const shell = Shell.posix({ transport: { socket }, cwd: '/tmp' });
    await assert.rejects(shell.start(5000), UnsupportedOptionError);
    assert.equal(shell.state, 'off');
    assert.ok(!existsSync(file), 'no program ran');
  });

  test('a Shell that sets nothing extra works through a plain daemon (plain requests only)', async () => {
    // Locally a Shell asks for a process group, containment and no exit grace; through a
    // daemon those are the daemon's to decide, so asking must not need the extension.
    for (const program of ['sh', 'bash']) {
      const shell = Shell.posix({ program, transport: { socket: plain.path } });
      await shell.start(5000);
      assert.deepEqual(
        { ...(await shell.run('echo hi; (exit 3)')) },
        { command: 'echo hi; (exit 3)', exitCode: 3, stdout: 'hi\n', stderr: '' },
      );
      await shell.stop(5000);
    }
  });

  test('the same options are honoured locally', async () => {
    const result = await run(['sh', '-c', 'pwd; echo "$GREETING"'], {
      cwd: '/usr',
      env: { PATH: process.env.PATH, GREETING: 'hej' },
    });
    assert.equal(result.stdout, '/usr\nhej\n');
  });
});

describe('a transport of your own', () => {
  /** A local transport that records each request, and honours everything but env. */
  function recording(): { transport: Transport; requests: unknown[] } {
    const inner = localTransport();
    const requests: unknown[] = [];
    const transport: Transport = {
      description: 'the recording transport',
      async prepare(options) {
        const launch = await inner.prepare(options);
        const mine: Launch = {
          honours: (option) => option !== 'env',
          start: (request) => {
            requests.push(request);
            return launch.start(request);
          },
          cancel: () => launch.cancel(),
        };
        return mine;
      },
    };
    return { transport, requests };
  }

  test('run, createExec, connect and Shell all start through it', async () => {
    const { transport, requests } = recording();
    assert.equal((await run(['echo', 'a'], { transport })).stdout, 'a\n');
    assert.equal((await createExec(transport)('echo', 'b')).stdout, 'b\n');
    const session = await connect(transport);
    session.sendArgs(['true']);
    assert.deepEqual(withoutUsage(await session.wait()), {
      exitCode: 0,
      termSignal: null,
      reason: 'exit',
      descendantsStopped: null,
    });
    await session.close();
    const shell = Shell.posix({ transport });
    await shell.start(5000);
    assert.equal((await shell.run('echo c')).stdout, 'c\n');
    await shell.stop(5000);
    assert.equal(requests.length, 4);
    await assert.rejects(run(['true'], { transport, env: {} }), (error: UnsupportedOptionError) => {
      assert.equal(error.transport, 'the recording transport');
      return true;
    });
    assert.equal(requests.length, 4, 'a refused option starts nothing');
  });
});

describe('a hostile daemon', () => {
  const dir = tempDir('procsock-hostile-');
  let server: Server;
  let path: string;
  before(async () => {
    path = dir.path('hostile.sock');
    // Announces a 99999999-byte output netstring, and starts sending it.
    server = createServer((socket) => {
      socket.once('data', () => socket.write(`6:stdout,99999999:${'x'.repeat(1000)}`));
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
  });
  after(() => {
    server.close();
    dir.cleanup();
  });

  test('a reply netstring longer than the client accepts is a LimitError', async () => {
    await assert.rejects(run(['x'], { socket: path }), LimitError);
    const strict = daemonTransport(path, { maxDataLength: 100 });
    await assert.rejects(run(['x'], { transport: strict, encoding: 'buffer' }), LimitError);
  });
});

describe('promise-returning calls never throw', () => {
  /** Calls `call`, which must not throw, and returns its rejection. */
  async function rejection(what: string, call: () => Promise<unknown>): Promise<unknown> {
    let promise: Promise<unknown> | undefined;
    assert.doesNotThrow(() => {
      promise = call();
    }, what);
    return promise!.then(
      () => assert.fail(`${what}: resolved`),
      (error: unknown) => error,
    );
  }

  test('run, an exec, connect: bad arguments reject with ArgumentError', async () => {
    const exec = createExec();
    const calls: [string, () => Promise<unknown>][] = [
      ['run(42)', () => run(42 as unknown as string)],
      ['run([])', () => run([])],
      ['run(bad timeout)', () => run('true', { timeout: -1 })],
      ['run(huge timeout)', () => run('true', { timeout: 2 ** 31 })],
      ['run(bad idleTimeout)', () => run('true', { idleTimeout: Number.NaN })],
      ['run(bad maxBuffer)', () => run('true', { maxBuffer: 0 })],
      ['run(bad socket)', () => run('true', { socket: 5 as unknown as string })],
      ['run(bad transport)', () => run('true', { transport: {} as Transport })],
      [
        'run(socket and transport)',
        () => run('true', { socket: '/x', transport: localTransport() }),
      ],
      ['run(bad cwd)', () => run('true', { cwd: 7 as unknown as string })],
      ['run(bad env)', () => run('true', { env: 'PATH=/' as unknown as NodeJS.ProcessEnv })],
      ['run(bad signal)', () => run('true', { signal: {} as AbortSignal })],
      ['run(unknown option)', () => run('true', { nope: 1 } as never)],
      // Names every object inherits are not options either (they passed as table keys once).
      ['run(constructor option)', () => run('true', { constructor: 1 } as never)],
      ['run(__proto__ option)', () => run('true', JSON.parse('{"__proto__": 1}'))],
      ['exec()', () => exec()],
      ['exec(1, 2)', () => (exec as unknown as (...a: unknown[]) => Promise<unknown>)(1, 2)],
      ['connect(42)', () => connect(42 as unknown as string)],
      ['connect(bad timeout)', () => connect('local', { timeout: -5 })],
      ['connect(bad option)', () => connect('local', { tiemout: 5 } as never)],
      ['connect(bad highWaterMark)', () => connect('local', { highWaterMark: 0 })],
    ];
    for (const [what, call] of calls) {
      const error = await rejection(what, call);
      assert.ok(error instanceof ArgumentError, `${what}: ${String(error)}`);
    }
  });

  test('a session: misuse and bad arguments reject', async () => {
    const session = await connect();
    for (const [what, call, type] of [
      ['send before sendArgs', () => session.send('x'), StateError],
      ['receive before sendArgs', () => session.receive(), StateError],
      ['wait before sendArgs', () => session.wait(), StateError],
    ] as const) {
      assert.ok((await rejection(what, call)) instanceof type, what);
    }
    session.sendArgs(['cat']);
    for (const [what, call] of [
      ['send(42)', () => session.send(42 as unknown as string)],
      ['receive(bad timeout)', () => session.receive({ timeout: -1 })],
      ['receive(null)', () => session.receive(null as never)],
    ] as const) {
      assert.ok((await rejection(what, call)) instanceof ArgumentError, what);
    }
    await session.close();
  });
});

describe('every error is a ProcsockError with a stable code', () => {
  test('policy, usage and allow-list errors', () => {
    assert.throws(
      () => new Policy({ allow: ['relative/path'], allowRoot: true }),
      (error: PolicyError) => {
        assert.ok(error instanceof PolicyError && error instanceof ProcsockError);
        assert.equal(error.code, 'PROCSOCK_POLICY');
        assert.match(error.message, /must be an absolute path/);
        return true;
      },
    );
    assert.throws(
      () => new Policy({ user: 'no-such-user-procsock', allowRoot: true }),
      (error: PolicyError) => error.code === 'PROCSOCK_POLICY',
    );
    assert.throws(
      () => parseRunArgs(['--timeout', 'soon', '--', 'true']),
      (error: UsageError) => error instanceof ProcsockError && error.code === 'PROCSOCK_USAGE',
    );
  });

  test('the two socket errors share one base and keep their names, codes and fields', () => {
    const cause = new Error('underlying');
    const cases = [
      [
        new ConnectError('no daemon', '/run/x.sock', 'ENOENT', { cause }),
        'ConnectError',
        'PROCSOCK_CONNECT',
      ],
      [
        new SocketPathError('in use', '/run/x.sock', { cause }),
        'SocketPathError',
        'PROCSOCK_SOCKET_PATH',
      ],
    ] as const;
    for (const [error, name, code] of cases) {
      assert.ok(error instanceof SocketError && error instanceof ProcsockError, name);
      assert.equal(error.name, name);
      assert.equal(error.code, code);
      assert.equal(error.path, '/run/x.sock');
      assert.equal(error.cause, cause);
    }
    assert.equal(cases[0][0].reason, 'ENOENT');
    assert.ok(!(cases[1][0] instanceof ConnectError) && !(cases[0][0] instanceof SocketPathError));
  });
});

/**
 * The client through a procsock daemon with the protocol extension: the same options and the
 * same results as locally (run, an exec, a Session, a Shell), Session.signal, refusals by the
 * daemon's policy as typed errors, and a daemon that does not speak the extension refused
 * fast with a typed error — while calls that need nothing extra stay plain sockexec requests.
 */
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { reaperAvailable } from '../../src/channel/contain.js';
import { createExec, run } from '../../src/client/exec.js';
import type { ExecResult } from '../../src/client/execute.js';
import { connect } from '../../src/client/session.js';
import { type ProcsockError, UnsupportedOptionError } from '../../src/errors.js';
import { Shell } from '../../src/shell/shell.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { DAEMON_DESCENDANTS_STOPPED, withoutUsage } from '../helpers/outcome.js';
import { tempDir } from '../helpers/process.js';

let daemon: TestDaemon;
const files = tempDir('procsock-client-extension-');
before(async () => {
  daemon = await startDaemon({ timeout: 60_000, killTimeout: 2000 });
});
after(async () => {
  await daemon.close();
  files.cleanup();
});

test('run() with cwd and env through the daemon: pwd prints /usr and $FOO is bar, as locally', async () => {
  const argv = ['sh', '-c', 'pwd; echo $FOO'];
  const options = { cwd: '/usr', env: { FOO: 'bar' } };
  const remote = await run(argv, { socket: daemon.path, ...options });
  const local = await run(argv, options);
  assert.equal(remote.stdout, '/usr\nbar\n');
  assert.deepEqual(
    { stdout: remote.stdout, stderr: remote.stderr, exitCode: remote.exitCode },
    { stdout: local.stdout, stderr: local.stderr, exitCode: local.exitCode },
  );
});

test('env is the whole environment, as Node means it; undefined values are left out', async () => {
  const env = { ONLY: 'me', GONE: undefined, PATH: '/usr/bin:/bin' };
  const remote = await run(['/usr/bin/env'], { socket: daemon.path, env });
  const local = await run(['/usr/bin/env'], { env });
  assert.equal(remote.stdout, local.stdout);
  assert.equal(remote.stdout.split('\n').sort().join('\n'), '\nONLY=me\nPATH=/usr/bin:/bin');
});

test('a relative cwd means relative to this process, as locally', async () => {
  const remote = await run(['pwd'], { socket: daemon.path, cwd: '.' });
  assert.equal(remote.stdout, `${process.cwd()}\n`);
});

test('an exec with cwd/processGroup defaults, through the daemon', async () => {
  const exec = createExec(daemon.path, { cwd: '/', processGroup: true });
  const script = 'pwd; read -r _ _ _ _ pgid _ < /proc/$$/stat; [ "$pgid" = $$ ] && echo leader';
  const result = await exec('sh', '-c', script);
  assert.equal(result.stdout, '/\nleader\n');
});

test('Session.signal(INT) reaches the program through the daemon', async () => {
  const session = await connect(daemon.path, { protocol: 'procsock' });
  session.sendArgs([
    'sh',
    '-c',
    "trap 'echo got INT; exit 7' INT; echo ready; while :; do sleep 0.05; done",
  ]);
  const first = await session.receive();
  assert.deepEqual(first.type === 'stdout' && first.data.toString(), 'ready\n');
  session.signal('INT');
  let stdout = '';
  for await (const item of session) {
    if (item.type === 'exit')
      assert.deepEqual(withoutUsage(item), {
        type: 'exit',
        exitCode: 7,
        termSignal: null,
        reason: 'exit',
        descendantsStopped: DAEMON_DESCENDANTS_STOPPED,
      });
    else stdout += item.data.toString();
  }
  assert.equal(stdout, 'got INT\n');
  await session.close();
});

test('Session.signal works locally too, by name or number; an unknown one is an ArgumentError', async () => {
  const session = await connect('local');
  session.sendArgs(['sh', '-c', 'echo ready; exec sleep 30']);
  assert.equal((await session.receive()).type, 'stdout');
  assert.throws(() => session.signal('NOSUCHSIGNAL'), { code: 'PROCSOCK_ARGUMENT' });
  session.signal('SIGUSR1');
  assert.deepEqual(withoutUsage(await session.wait()), {
    exitCode: null,
    termSignal: 'USR1',
    reason: 'signal',
    descendantsStopped: null,
  });
  await session.close();
});

test('Session.signal on a plain daemon session says how to get it', async () => {
  const session = await connect(daemon.path);
  session.sendArgs(['cat']);
  assert.throws(
    () => session.signal('INT'),
    (error: UnsupportedOptionError) =>
      error instanceof UnsupportedOptionError &&
      error.option === 'signal' &&
      /protocol: 'procsock'/.test(error.message),
  );
  session.sendClose();
  assert.deepEqual(withoutUsage(await session.wait()), {
    exitCode: 0,
    termSignal: null,
    reason: 'exit',
    descendantsStopped: null,
  });
  await session.close();
});

test('a Shell through the daemon with cwd and env', async () => {
  const shell = Shell.posix({
    program: 'sh',
    transport: { socket: daemon.path },
    cwd: '/usr',
    env: { PATH: '/usr/bin:/bin', GREETING: 'hej' },
  });
  await shell.start(10_000);
  try {
    assert.equal((await shell.run('pwd; echo $GREETING', 10_000)).stdout, '/usr\nhej\n');
  } finally {
    await shell.stop(10_000);
  }
});

describe('a daemon whose policy forbids client options', () => {
  let strict: TestDaemon;
  const allowed = files.path('allowed');
  before(async () => {
    mkdirSync(allowed, { recursive: true });
    strict = await startDaemon({
      policy: { allow: ['/usr/bin/sh', '/usr/bin/touch'], clientEnv: ['FOO'], clientCwd: 'none' },
    });
  });
  after(() => strict.close());

  test('a forbidden env name is refused with a typed error naming it; nothing runs', async () => {
    const marker = files.path('env-ran');
    await assert.rejects(
      run(['touch', marker], { socket: strict.path, env: { LD_PRELOAD: '/x.so' } }),
      (error: UnsupportedOptionError) => {
        assert.ok(error instanceof UnsupportedOptionError, String(error));
        assert.equal(error.option, 'env');
        assert.match(error.message, /clients may not set LD_PRELOAD on this daemon/);
        return true;
      },
    );
    assert.equal(existsSync(marker), false);
    const ok = await run(['sh', '-c', 'echo $FOO'], { socket: strict.path, env: { FOO: 'yes' } });
    assert.equal(ok.stdout, 'yes\n');
  });

  test('a forbidden cwd likewise; a program not allowed stays a result (exit 126), as in plain', async () => {
    await assert.rejects(run(['sh', '-c', 'true'], { socket: strict.path, cwd: allowed }), {
      code: 'PROCSOCK_UNSUPPORTED',
      option: 'cwd',
    });
    const refused = await run(['cat'], { socket: strict.path, env: { FOO: 'x' } });
    assert.equal(refused.exitCode, 126);
    assert.equal(
      refused.stderr,
      'procsock: cat: not allowed by the daemon policy (its operator can allow it: procsock serve --allow PATH)\n',
    );
  });
});

describe('a daemon that does not speak the extension', () => {
  let plain: TestDaemon;
  before(async () => {
    plain = await startDaemon({ extension: false });
  });
  after(() => plain.close());

  test('options that need it fail fast with a typed error; plain calls still work', async () => {
    const marker = files.path('plain-ran');
    await assert.rejects(
      run(['touch', marker], { socket: plain.path, cwd: '/' }),
      (error: Error) => {
        assert.ok(error instanceof UnsupportedOptionError, String(error));
        assert.equal(error.option, 'cwd');
        assert.match(error.message, /does not speak the procsock protocol extension/);
        return true;
      },
    );
    assert.equal(existsSync(marker), false, 'nothing ran');
    const session = await connect(plain.path, { protocol: 'procsock' });
    session.sendArgs(['cat']);
    await assert.rejects(session.wait(), { code: 'PROCSOCK_UNSUPPORTED', option: 'protocol' });
    await session.close();
    assert.equal((await run(['echo', 'plain'], { socket: plain.path })).stdout, 'plain\n');
  });
});

describe('calls that need nothing extra stay plain sockexec requests, byte for byte', () => {
  /** A fake daemon that records the first bytes of each connection and answers exit 0. */
  let server: Server;
  let path: string;
  const seen: Buffer[] = [];
  before(async () => {
    path = files.path('recorder.sock');
    server = createServer((socket: Socket) => {
      socket.once('data', (chunk: Buffer) => {
        seen.push(Buffer.from(chunk));
        socket.end('8:exitcode,1:0,');
      });
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  test('run, an exec and a session', async () => {
    // The default limits are no reason to extend (a limit of the call's own is: stops.test.ts).
    await run(['echo', 'hi'], { socket: path, idleTimeout: 60_000, timeoutFatal: true });
    await createExec(path)('uname');
    const session = await connect(path);
    session.sendArgs(['true']);
    await session.wait();
    await session.close();
    assert.deepEqual(
      seen.map((bytes) => bytes.toString('latin1')),
      ['1:2,4:echo,2:hi,0:,', '1:1,5:uname,0:,', '1:1,4:true,'],
    );
  });

  test("protocol: 'plain' sends the plain request even with limits of the call's own; an option that needs more is refused", async () => {
    seen.length = 0;
    const signal = new AbortController().signal;
    const options = { socket: path, protocol: 'plain', timeout: 5000, signal } as const;
    assert.equal((await run(['echo', 'hi'], { ...options, maxBuffer: 10 })).exitCode, 0);
    assert.deepEqual(
      seen.map((bytes) => bytes.toString('latin1')),
      ['1:2,4:echo,2:hi,0:,'],
    );
    await assert.rejects(run(['pwd'], { ...options, cwd: '/tmp' }), (error: unknown) => {
      assert.ok(error instanceof UnsupportedOptionError, String(error));
      assert.equal(error.option, 'cwd');
      assert.match(error.message, /protocol: 'plain'/);
      return true;
    });
    await assert.rejects(
      run(['true'], { socket: path, protocol: 'plain' as 'auto' | 'plain', pty: true }),
      UnsupportedOptionError,
    );
    assert.equal(seen.length, 1, 'nothing more was sent');
  });

  test('a call with a limit of its own tries the extension; answered without the hello, it sends the plain request, byte for byte', async () => {
    seen.length = 0;
    // This fake answers even the opening with an exit status: not the hello, so not spoken.
    const result = await run(['echo', 'hi'], { socket: path, timeout: 5000, stdin: 'x' });
    assert.equal(result.exitCode, 0);
    const [opening, plain] = seen.map((bytes) => bytes.toString('latin1'));
    assert.ok(opening!.startsWith('12:1;procsock/1,0:,3:arg,4:echo,'), opening);
    assert.equal(plain, '1:2,4:echo,2:hi,1:x,0:,');
    assert.equal(seen.length, 2);
    // Known now: the next such call goes plain at once.
    await run(['echo', 'hi'], { socket: path, timeout: 5000 });
    assert.deepEqual(
      seen.slice(2).map((bytes) => bytes.toString('latin1')),
      ['1:2,4:echo,2:hi,0:,'],
    );
  });
});

test('contain and exitGrace through a daemon are carried out as locally', {
  skip: !reaperAvailable() && 'procsock_reaper is not built',
}, async () => {
  const loose = await startDaemon({ contain: false, killTimeout: 2000 });
  try {
    const argv = ['sh', '-c', 'sleep 300 & exit 0'];
    const options = { contain: true, exitGrace: 0 };
    const remote = await run(argv, { socket: loose.path, ...options });
    const local = await run(argv, options);
    assert.equal(remote.descendantsStopped, 1);
    assert.equal(local.descendantsStopped, 1);
    assert.deepEqual(withoutUsage(remote), withoutUsage(local));
  } finally {
    await loose.close();
  }
});

test("what the daemon's policy will not do is refused, nothing run: contain false, a long exitGrace", async () => {
  const marker = files.path('refused-must-not-exist');
  const refusals: [Record<string, unknown>, string, RegExp][] = [
    [{ exitGrace: 2001 }, 'exitGrace', /kill timeout \(2000 ms\)/],
  ];
  if (reaperAvailable()) {
    refusals.push([{ contain: false }, 'contain', /clients may not opt out/]);
  }
  for (const [options, option, message] of refusals) {
    await assert.rejects(run(['touch', marker], { socket: daemon.path, ...options }), {
      code: 'PROCSOCK_UNSUPPORTED',
      option,
      message,
    });
  }
  assert.equal(existsSync(marker), false, 'nothing ran');
});

test('detached through a daemon is refused with why and what to do; nothing runs', async () => {
  const marker = files.path('detached-must-not-exist');
  for (const call of [
    () => run(['touch', marker], { socket: daemon.path, detached: true }),
    () => connect(daemon.path, { detached: true }),
  ]) {
    await assert.rejects(call(), {
      code: 'PROCSOCK_UNSUPPORTED',
      option: 'detached',
      message: /must not leave processes behind.*run the program locally with detached: true/s,
    });
  }
  assert.equal(existsSync(marker), false, 'nothing ran');
});

test("an extended call's timeout is the daemon's too: error.result has the status, reason and usage", async () => {
  const [error, result] = await run(['sh', '-c', 'echo started; exec sleep 30'], {
    socket: daemon.path,
    cwd: '/',
    timeout: 300,
  }).then(
    () => assert.fail('the call should time out'),
    (error: ProcsockError) => [error, error.result as ExecResult] as const,
  );
  assert.equal(error.code, 'PROCSOCK_TIMEOUT');
  assert.match(error.message, /did not finish within 300 ms \(timeout\)/);
  assert.deepEqual(
    [result.stdout, result.exitCode, result.termSignal, result.reason],
    ['started\n', null, 'TERM', 'timeout'],
  );
  assert.equal(typeof result.usage?.wallTime, 'number');
  // A timeout the daemon cannot give (longer than its -t) is refused, never cut short.
  const short = await startDaemon({ timeout: 1000 });
  try {
    await assert.rejects(run(['true'], { socket: short.path, cwd: '/', timeout: 1001 }), {
      code: 'PROCSOCK_UNSUPPORTED',
      option: 'timeout',
      message: /longer than this daemon's deadline \(1000 ms\)/,
    });
    // A plain call is not extended for its timeout: the daemon's deadline is not asked about.
    assert.equal((await run(['true'], { socket: short.path, timeout: 1001 })).exitCode, 0);
  } finally {
    await short.close();
  }
});

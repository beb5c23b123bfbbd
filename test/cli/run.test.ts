/**
 * `procsock run`, the built CLI as a separate process: locally and through a real daemon.
 * Exit statuses (the program's, 128+n, 100/111/124), stdin from a pipe and from a file,
 * live streaming (the program waits for input that the test only sends after it has seen
 * the first line), and what happens when procsock itself is signalled or its stdout closes.
 */
import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { reaperAvailable } from '../../src/channel/contain.js';
import { spawnBackendInUse } from '../../src/channel/local.js';
import { parseRunArgs } from '../../src/cli/run.js';
import { finished, runCli, spawnCli, stdoutUntil, testChildren } from '../helpers/cli.js';
import { startDaemon, startDaemonProcess, type TestDaemon } from '../helpers/daemon.js';
import { isAlive, tempDir, waitUntil } from '../helpers/process.js';

const oneLine = (text: string) => assert.match(text, /^procsock run: [^\n]+\n$/);
const native = spawnBackendInUse() === 'native';

describe('procsock run: arguments', () => {
  test('--help prints the usage with examples, exit 0', async () => {
    const { status, stdout } = await runCli(['run', '--help']);
    assert.equal(status, 0);
    assert.match(stdout, /^usage: procsock run /);
    assert.match(stdout, /Examples:\n {2}procsock run -- uname -a/);
    assert.match(stdout, /Exit status:/);
  });

  test('no time limit unless asked: --timeout and --idle-timeout default to 0 (none)', () => {
    // 0 overrides the client's own 60 s idleTimeout default: a command line waits as long as it takes.
    assert.deepEqual(parseRunArgs(['--', 'sleep', '120']), {
      argv: ['sleep', '120'],
      socket: process.env.PROCSOCK_SOCKET || undefined,
      timeout: 0,
      idleTimeout: 0,
      stdinFile: undefined,
      pty: null,
      contain: true,
    });
    const both = parseRunArgs(['--idle-timeout', '5', '-t', '7', 'x']);
    assert.ok(both !== 'help' && both.idleTimeout === 5 && both.timeout === 7);
  });

  for (const [args, reason] of [
    [['--bogus', '--', 'true'], /Unknown option '--bogus'/],
    [[], /missing PROG/],
    [['--'], /missing PROG/],
    [['--timeout', 'soon', '--', 'true'], /--timeout: expected whole milliseconds/],
    [['--timeout'], /argument missing/],
    [['--idle-timeout', 'soon', '--', 'true'], /--idle-timeout: expected whole milliseconds/],
    [['--socket', '', '--', 'true'], /--socket: the path must not be empty/],
    [['--columns', '100', '--', 'true'], /--columns: only with --pty/],
    [['--pty', '--rows', '0', '--', 'true'], /--rows: expected a whole number from 1 to 65535/],
    [['--pty', '--columns', '70000', '--', 'true'], /--columns: expected a whole number/],
  ] as const) {
    test(`usage error, exit 100: run ${args.join(' ')}`, async () => {
      const { status, stdout, stderr } = await runCli(['run', ...args]);
      assert.equal(status, 100);
      assert.equal(stdout, '');
      oneLine(stderr);
      assert.match(stderr, reason);
    });
  }

  test('options end at the program: its own flags stay its own', async () => {
    const { status, stdout } = await runCli(['run', 'ls', '-d', '/']);
    assert.equal(status, 0);
    assert.equal(stdout, '/\n');
  });

  test('no daemon at --socket: one line, exit 111', async () => {
    const dir = tempDir();
    const { status, stderr } = await runCli([
      'run',
      '--socket',
      dir.path('none.sock'),
      '--',
      'true',
    ]);
    dir.cleanup();
    assert.equal(status, 111);
    oneLine(stderr);
    assert.match(stderr, /no daemon socket at .*none\.sock/);
  });

  test('a directory as --stdin-file: one line, exit 125, nothing run', async () => {
    const { status, stdout, stderr } = await runCli(['run', '-i', '/tmp', '--', 'echo', 'ran']);
    assert.deepEqual([status, stdout], [125, '']);
    assert.equal(stderr, 'procsock run: --stdin-file: /tmp is a directory\n');
  });

  test('a missing --stdin-file: one line, exit 125, nothing run', async () => {
    const { status, stdout, stderr } = await runCli([
      'run',
      '-i',
      '/nonexistent/in',
      '--',
      'echo',
      'ran',
    ]);
    assert.equal(status, 125);
    assert.equal(stdout, '');
    oneLine(stderr);
    assert.match(stderr, /ENOENT/);
  });
});

for (const where of ['local', 'daemon'] as const) {
  describe(`procsock run (${where})`, () => {
    let daemon: TestDaemon | null = null;
    let target: string[];
    const dir = tempDir();
    let childrenBefore: number;

    before(async () => {
      childrenBefore = testChildren().length;
      if (where === 'daemon') daemon = await startDaemon({ killTimeout: 500 });
      target = daemon ? ['--socket', daemon.path] : [];
    });
    after(async () => {
      await daemon?.close();
      dir.cleanup();
      assert.equal(testChildren().length, childrenBefore, 'every CLI and program was reaped');
    });

    test('stdout and stderr pass through; the exit code is passed on', async () => {
      const result = await runCli([
        'run',
        ...target,
        '--',
        'sh',
        '-c',
        'echo out; echo err >&2; exit 7',
      ]);
      assert.deepEqual(result, { status: 7, stdout: 'out\n', stderr: 'err\n' });
    });

    test('--pty: a terminal on stdin and stdout, of the size given; stderr and status its own', async () => {
      const result = await runCli(
        [
          'run',
          ...target,
          '--pty',
          '--columns',
          '100',
          '--rows',
          '30',
          '--',
          'sh',
          '-c',
          'test -t 0 && test -t 1 && ! test -t 2 && stty size; read -r x; echo "x=$x"; echo err >&2; exit 3',
        ],
        { input: 'hello\n' },
      );
      if (!native) {
        // No terminal without the native backend (locally, or the daemon's): said, nothing run.
        // (A daemon's refusal comes first, as the run's stderr.)
        assert.equal(result.status, 125);
        assert.equal(result.stdout, '');
        assert.match(
          result.stderr,
          /\nprocsock run: pty [^\n]+\n$|^procsock run: [^\n]*pty[^\n]+\n$/,
        );
        return;
      }
      // The terminal's own conventions: input echoed (when it arrives: before or after the
      // size), \n written as \r\n.
      assert.deepEqual([result.status, result.stderr], [3, 'err\n']);
      assert.ok(result.stdout.startsWith('hello\r\n') || result.stdout.startsWith('30 100\r\n'));
      assert.equal(result.stdout.replace('hello\r\n', ''), '30 100\r\nx=hello\r\n');
    });

    test('killed by signal n: exit 128+n', async () => {
      const term = await runCli(['run', ...target, '--', 'sh', '-c', 'kill -TERM $$']);
      assert.equal(term.status, 143);
      const kill = await runCli(['run', ...target, '--', 'sh', '-c', 'kill -KILL $$']);
      assert.equal(kill.status, 137);
    });

    test('a program that cannot be found: 127 and the message on stderr', async () => {
      const { status, stderr } = await runCli(['run', ...target, '--', 'no-such-program-x']);
      assert.equal(status, 127);
      assert.match(stderr, /no-such-program-x: command not found/);
    });

    test('stdin from a pipe is forwarded, byte for byte', async () => {
      const input = Buffer.from('line one\nline two\n\u00e9\u20ac\n');
      const { status, stdout } = await runCli(['run', ...target, '--', 'cat'], { input });
      assert.equal(status, 0);
      assert.equal(stdout, input.toString());
    });

    test('--stdin-file feeds a file (our own stdin is then ignored)', async () => {
      const file = dir.path('input.txt');
      writeFileSync(file, 'from the file\n');
      const { stdout } = await runCli(['run', ...target, '--stdin-file', file, '--', 'cat'], {
        input: 'from the pipe\n',
      });
      assert.equal(stdout, 'from the file\n');
    });

    test('output streams live: the first line arrives while the program waits for more input', async () => {
      const child = spawnCli([
        'run',
        ...target,
        '--',
        'sh',
        '-c',
        'echo first; read x; echo "got $x"',
      ]);
      const result = finished(child);
      // The program cannot go on until the test writes, which it does only after seeing line 1.
      assert.equal(await stdoutUntil(child, '\n'), 'first\n');
      child.stdin!.end('go\n');
      assert.deepEqual(await result, { status: 0, stdout: 'first\ngot go\n', stderr: '' });
    });

    test('--idle-timeout: no output for that long stops the program, exit 124', async () => {
      const child = spawnCli([
        'run',
        ...target,
        '--idle-timeout',
        '300',
        '--',
        'sh',
        '-c',
        'echo $$; exec sleep 30',
      ]);
      const result = finished(child);
      const pid = Number((await stdoutUntil(child, '\n')).split('\n')[0]);
      const { status, stderr } = await result;
      assert.equal(status, 124);
      oneLine(stderr);
      assert.match(stderr, /sh sent no output for 300 ms and was stopped/);
      await waitUntil(() => !isAlive(pid), 'the program is gone');
    });

    test('--timeout is wall-clock, as timeout(1): a chatty program is stopped too, exit 124', async () => {
      const child = spawnCli([
        'run',
        ...target,
        '--timeout',
        '500',
        '--',
        'sh',
        '-c',
        'echo $$; while :; do echo tick; sleep 0.05; done',
      ]);
      const result = finished(child);
      const pid = Number((await stdoutUntil(child, '\n')).split('\n')[0]);
      const { status, stderr } = await result;
      assert.equal(status, 124);
      oneLine(stderr);
      assert.match(stderr, /sh did not finish within 500 ms and was stopped/);
      await waitUntil(() => !isAlive(pid), 'the program is gone');
    });

    test('SIGTERM to procsock stops the program; exit 143', async () => {
      const child = spawnCli(['run', ...target, '--', 'sh', '-c', 'echo $$; exec sleep 30']);
      const result = finished(child);
      const pid = Number((await stdoutUntil(child, '\n')).split('\n')[0]);
      assert.ok(isAlive(pid));
      child.kill('SIGTERM');
      assert.equal((await result).status, 143);
      await waitUntil(() => !isAlive(pid), 'the program is gone');
    });

    test('stdout closed by its reader (| head -1): the program is stopped, exit 141', async () => {
      const child = spawnCli(['run', ...target, '--', 'yes']);
      const result = finished(child);
      await stdoutUntil(child, 'y\n');
      child.stdout!.destroy();
      assert.equal((await result).status, 141);
    });
  });
}

test('procsock run locally: a stop takes what the program started too (contained), unless --no-contain', {
  skip: !reaperAvailable() && 'procsock_reaper is not built',
}, async () => {
  // The background job moves to a session of its own: only containment can find it.
  const script = "setsid sh -c 'echo $$; exec sleep 30' & wait";
  for (const contain of [true, false]) {
    const child = spawnCli([
      'run',
      '--timeout',
      '300',
      ...(contain ? [] : ['--no-contain']),
      '--',
      'sh',
      '-c',
      script,
    ]);
    const result = finished(child);
    const job = Number((await stdoutUntil(child, '\n')).split('\n')[0]);
    assert.equal((await result).status, 124);
    try {
      if (contain) await waitUntil(() => !isAlive(job), 'the background job is stopped too');
      else assert.ok(isAlive(job), '--no-contain: the background job outlives the stop');
    } finally {
      if (isAlive(job)) process.kill(job, 'SIGKILL');
    }
  }
});

test('procsock serve --no-client-pty: a run asking for a terminal is refused, others are served', async () => {
  const daemon = await startDaemonProcess(['--no-client-pty']);
  try {
    const refused = await runCli(['run', '--socket', daemon.path, '--pty', '--', 'true']);
    // The daemon's line (the run's stderr), then procsock run's own; nothing was run.
    assert.equal(refused.status, 125);
    assert.equal(refused.stdout, '');
    const [daemonLine, ownLine, ...rest] = refused.stderr.split('\n');
    assert.equal(
      daemonLine,
      'procsock: pty: clients may not have a terminal on this daemon (it was started with --no-client-pty)',
    );
    assert.match(ownLine!, /^procsock run: pty cannot be honoured .*nothing was run/);
    assert.deepEqual(rest, ['']);
    const plain = await runCli(['run', '--socket', daemon.path, '--', 'sh', '-c', 'echo ok']);
    assert.deepEqual(plain, { status: 0, stdout: 'ok\n', stderr: '' });
  } finally {
    await daemon.stop();
    daemon.cleanup();
  }
});

describe('procsock run --socket: the wire protocol of its connections', () => {
  /** A Unix socket in front of a daemon that records the first bytes of every connection. */
  async function recordingProxy(target: string) {
    const dir = tempDir('procsock-run-proxy-');
    const path = dir.path('proxy.sock');
    const openings: string[] = [];
    const sockets = new Set<Socket>();
    const server = createServer((client) => {
      const upstream = createConnection(target);
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on('error', () => {});
        socket.on('close', () => sockets.delete(socket));
      }
      const index = openings.push('') - 1;
      client.on('data', (chunk) => {
        if (openings[index]!.length < 64) openings[index] += chunk.toString('latin1');
      });
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    return {
      path,
      openings,
      async close() {
        for (const socket of sockets) socket.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        dir.cleanup();
      },
    };
  }

  const EXTENDED = /^12:1;procsock\//;

  test('against a daemon without the extension (as the C sockexec): one plain connection per run', async () => {
    const daemon = await startDaemon({ extension: false });
    const proxy = await recordingProxy(daemon.path);
    try {
      const result = await runCli(['run', '--socket', proxy.path, '--', 'sh', '-c', 'echo ok']);
      assert.deepEqual(result, { status: 0, stdout: 'ok\n', stderr: '' });
      assert.equal(proxy.openings.length, 1, JSON.stringify(proxy.openings));
      assert.match(proxy.openings[0]!, /^1:3,2:sh,/);
    } finally {
      await proxy.close();
      await daemon.close();
    }
  });

  test('against a procsock daemon: plain without a limit; --timeout uses the extension (the daemon enforces it)', async () => {
    const daemon = await startDaemon();
    const proxy = await recordingProxy(daemon.path);
    try {
      assert.equal((await runCli(['run', '--socket', proxy.path, '--', 'true'])).status, 0);
      const limited = await runCli(['run', '-s', proxy.path, '--timeout', '60000', '--', 'true']);
      assert.equal(limited.status, 0);
      assert.equal(proxy.openings.length, 2, JSON.stringify(proxy.openings));
      assert.doesNotMatch(proxy.openings[0]!, EXTENDED);
      assert.match(proxy.openings[1]!, EXTENDED);
    } finally {
      await proxy.close();
      await daemon.close();
    }
  });

  test('SIGINT on a plain run through a daemon: the program is stopped, exit 130', async () => {
    const daemon = await startDaemon({ killTimeout: 500 });
    try {
      const child = spawnCli([
        'run',
        '--socket',
        daemon.path,
        '--',
        'sh',
        '-c',
        'echo $$; exec sleep 300',
      ]);
      const result = finished(child);
      const pid = Number(await stdoutUntil(child, '\n'));
      child.kill('SIGINT');
      assert.equal((await result).status, 130);
      await waitUntil(() => !isAlive(pid), 'the program is gone');
    } finally {
      await daemon.close();
    }
  });
});

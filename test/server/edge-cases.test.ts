/**
 * Start-up and edge cases of the daemon: a signal while it binds, the descriptor limit, an
 * audit log path that is a symlink, and the request timeout (a client that never finishes
 * its request must not hold a slot, even with no deadline). The path over sun_path's limit
 * is in socket-directory.test.ts.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  chownSync,
  existsSync,
  readFileSync,
  symlinkSync,
  watch,
  writeFileSync,
} from 'node:fs';
import { after, describe, test } from 'node:test';
import { ArgumentError } from '../../src/errors.js';
import { runCli, startDaemon, startDaemonProcess } from '../helpers/daemon.js';
import { tempDir, waitUntil } from '../helpers/process.js';
import { ns, RawClient, request } from '../helpers/raw-client.js';

const files = tempDir('procsock-edge-');
after(() => files.cleanup());

test('SIGTERM just after the socket file appears: a clean exit 0, the socket removed', async () => {
  for (let round = 0; round < 8; round++) {
    const dir = tempDir('procsock-early-term-');
    const path = dir.path('daemon.sock');
    // The directory is watched before the daemon starts: the signal follows the bind at once.
    const watcher = watch(dir.dir);
    const daemon = runCli(['serve', '--allow-root', path]);
    let stderr = '';
    daemon.stderr!.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
    watcher.on('change', (_event, name) => {
      // Once: removing the socket at shutdown is an event too.
      if (name === 'daemon.sock' && !daemon.killed) daemon.kill('SIGTERM');
    });
    const [code, signal] = await once(daemon, 'exit');
    watcher.close();
    assert.deepEqual([code, signal], [0, null], `round ${round}: ${stderr}`);
    assert.equal(existsSync(path), false, 'the socket file is removed');
    dir.cleanup();
  }
});

test('at the descriptor limit the -d log says so, the daemon does not spin, and recovers', async () => {
  const daemon = await startDaemonProcess(['-d', '-k', '1'], { maxFiles: 64 });
  const clients: RawClient[] = [];
  try {
    // Programs that hold their pipes (and the client its socket) until told to finish.
    while (!/descriptor limit reached/.test(daemon.stderr())) {
      assert.ok(clients.length < 20, `no limit line after ${clients.length} clients`);
      const client = await RawClient.connect(daemon.path);
      client.send(request(['cat'], ['x'], false));
      clients.push(client);
      await client.waitForPairs(1); // cat's echo, or the reply of a program that could not start
    }
    assert.match(daemon.stderr(), /descriptor limit reached \(\d+ of 64 open/);
    // Clients now are refused (reset by the kernel, or told that their program cannot start),
    // and the daemon's CPU time does not run away while they knock.
    const cpuBefore = cpuSeconds(daemon.pid);
    const started = performance.now();
    for (let i = 0; i < 5; i++) {
      const reply = await RawClient.connect(daemon.path)
        .then((client) => {
          client.send(request(['echo', 'in']));
          return client.reply();
        })
        .catch(() => null);
      assert.notDeepEqual(reply?.pairs.at(-1), ['exitcode', '0']);
    }
    const seconds = (performance.now() - started) / 1000;
    assert.ok(cpuSeconds(daemon.pid) - cpuBefore <= seconds * 0.5 + 0.1, 'the daemon spins');
    for (const client of clients) client.send(ns(''));
    await Promise.all(clients.map((client) => client.reply()));
    await waitUntil(() => /below the descriptor limit again/.test(daemon.stderr()), 'recovery');
    const reply = await RawClient.exchange(daemon.path, request(['echo', 'back']));
    assert.deepEqual(reply.pairs, [
      ['stdout', 'back\n'],
      ['exitcode', '0'],
    ]);
  } finally {
    for (const client of clients) client.destroy();
    assert.equal(await daemon.stop(), 0, daemon.stderr());
    daemon.cleanup();
  }
});

test('the audit log is opened without following a symlink', async () => {
  const target = files.path('precious.txt');
  writeFileSync(target, 'keep\n');
  const link = files.path('audit.jsonl');
  symlinkSync(target, link);
  await assert.rejects(
    startDaemon({ policy: { audit: link } }),
    (error) =>
      error instanceof ArgumentError &&
      /audit\.jsonl is a symbolic link: not followed/.test(error.message),
  );
  assert.equal(readFileSync(target, 'utf8'), 'keep\n');
});

test('the audit log must be a regular file of root or the daemon, that nobody else may write', async () => {
  // A FIFO planted at the path: the open blocked the daemon's start for ever (SIGTERM too).
  const fifo = files.path('fifo.jsonl');
  execFileSync('mkfifo', [fifo]);
  await assert.rejects(
    startDaemon({ policy: { audit: fifo } }),
    /fifo\.jsonl is a FIFO, not a file/,
  );
  const open = files.path('open.jsonl');
  writeFileSync(open, '');
  chmodSync(open, 0o666);
  await assert.rejects(
    startDaemon({ policy: { audit: open } }),
    /open\.jsonl has mode 0666: others may write it and forge records; chmod go-w it/,
  );
  if (process.geteuid?.() === 0) {
    // Made first by someone else (a world-writable directory): they would read every record.
    const theirs = files.path('theirs.jsonl');
    writeFileSync(theirs, '');
    chownSync(theirs, 65_534, 65_534);
    await assert.rejects(
      startDaemon({ policy: { audit: theirs } }),
      /theirs\.jsonl is owned by uid 65534, not by root or the daemon's user/,
    );
    assert.equal(readFileSync(theirs, 'utf8'), '');
  }
});

describe('the request timeout', () => {
  test('with no deadline, a client that never finishes its request is closed and its slot freed', async () => {
    const daemon = await startDaemon({
      timeout: 0,
      requestTimeout: 300,
      maxConnections: 1,
      collectLog: true,
    });
    try {
      const stuck = await RawClient.connect(daemon.path);
      stuck.send('1:3,4:echo,'); // two arguments of three
      const next = await RawClient.connect(daemon.path);
      next.send(request(['echo', 'served']));
      assert.deepEqual((await stuck.reply()).pairs, []);
      assert.deepEqual((await next.reply()).pairs, [
        ['stdout', 'served\n'],
        ['exitcode', '0'],
      ]);
      assert.match(
        daemon.log.join('\n'),
        /request was not complete within the request timeout \(300 ms\)/,
      );
    } finally {
      await daemon.close();
    }
  });

  test('it counts the argv only: stdin may come later', async () => {
    const daemon = await startDaemon({ timeout: 0, requestTimeout: 300 });
    try {
      const slow = await RawClient.connect(daemon.path);
      slow.send(request(['cat'], [], false));
      await slow.waitForPairs(0);
      // Another client's request times out: the first one's timer, had it run on, would have too.
      const stuck = await RawClient.connect(daemon.path);
      stuck.send('1:2,');
      await stuck.closed;
      slow.send(Buffer.concat([ns('late'), ns('')]));
      assert.deepEqual((await slow.reply()).pairs, [
        ['stdout', 'late'],
        ['exitcode', '0'],
      ]);
    } finally {
      await daemon.close();
    }
  });

  test('--request-timeout is a flag in seconds; the default is 10 s', async () => {
    const { parseServeArgs } = await import('../../src/cli/serve.js');
    const parsed = parseServeArgs(['--request-timeout', '2.5', '/tmp/x.sock']);
    assert.equal(parsed.kind === 'serve' && parsed.options.requestTimeout, 2500);
    const daemon = await startDaemon();
    assert.equal(daemon.server.options.requestTimeout, 10_000);
    await daemon.close();
  });
});

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks
}

describe('arguments that are not UTF-8, where the daemon passes text (the JS path)', () => {
  /** printf's format `%s` and the bytes ff c3: as text they would become U+FFFD U+FFFD. */
  const bytes = Buffer.from([0x25, 0x73, 0xff, 0xc3]);
  async function jsDaemon(): Promise<Awaited<ReturnType<typeof startDaemon>>> {
    // A log keeps a daemon on the JS path (native/conn.c runs the bytes as they are).
    return startDaemon({ collectLog: true });
  }

  test('a plain request: refused with 126 and why, never run with its bytes altered', async () => {
    const d = await jsDaemon();
    try {
      const reply = await RawClient.exchange(
        d.path,
        Buffer.concat([ns('2'), ns('printf'), ns(bytes), ns('')]),
      );
      // Before: printf ran with U+FFFD U+FFFD in place of ff c3, and printed them.
      assert.deepEqual(reply.pairs, [
        [
          'stderr',
          'procsock: argument 1 is not valid UTF-8: this daemon would have to alter it to pass it on, and does not; send it as UTF-8\n',
        ],
        ['exitcode', '126'],
      ]);
    } finally {
      await d.close();
    }
  });

  test('an extended request: arg, env and cwd values alike', async () => {
    const d = await jsDaemon();
    try {
      for (const [field, value, what] of [
        ['arg', bytes, 'arg 1'],
        ['env', Buffer.concat([Buffer.from('X='), bytes]), 'env'],
        ['cwd', Buffer.concat([Buffer.from('/tmp/'), bytes]), 'cwd'],
      ] as const) {
        const reply = await RawClient.exchange(
          d.path,
          Buffer.concat([
            ns('1;procsock/1'),
            ns(''),
            ns('arg'),
            ns('printf'),
            ns(field),
            ns(value),
            ns(''),
            ns('stdin'),
            ns(''),
          ]),
        );
        assert.equal(
          reply.stderr,
          `procsock: ${what} is not valid UTF-8: this daemon would have to alter it to pass it on, and does not; send it as UTF-8\n`,
          field,
        );
        assert.deepEqual(reply.exit, ['exitcode', '126'], field);
        assert.ok(
          reply.pairs.some(([type, data]) => type === 'reason' && data === 'spawn-failure'),
        );
      }
    } finally {
      await d.close();
    }
  });
});

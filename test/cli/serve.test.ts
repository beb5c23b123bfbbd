/**
 * `procsock serve` as a process: flags, exit codes (100 usage, 111 fatal), the debug log,
 * and SPEC §2 point 8, clean shutdown on SIGTERM/SIGINT (and SIGHUP).
 */
import { strict as assert } from 'node:assert';
import {
  existsSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { after, describe, test } from 'node:test';
import { parseServeArgs, UsageError } from '../../src/cli/serve.js';
import { daemonChildren, listedFds, runCli, startDaemonProcess } from '../helpers/daemon.js';
import { isAlive, tempDir, waitUntil } from '../helpers/process.js';
import { RawClient, request } from '../helpers/raw-client.js';

const dir = tempDir('procsock-cli-');
after(() => dir.cleanup());
const version = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
).version;

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = runCli(args);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  return new Promise((resolve) => {
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('flags and exit codes', () => {
  test('-v and --version print the version and exit 0', async () => {
    const results = await Promise.all([
      cli(['serve', '-v']),
      cli(['--version']),
      cli(['serve', '--help']),
    ]);
    assert.deepEqual(results[0], { code: 0, stdout: `procsock ${version}\n`, stderr: '' });
    // The top-level --version also names the spawn backend (test/cli/doctor.test.ts).
    assert.equal(results[1].code, 0);
    assert.ok(results[1].stdout.startsWith(`procsock ${version}\nspawn backend: `));
    assert.equal(results[2].code, 0);
    for (const flag of ['-q', '-M', '-m', '-t', '-k', '-d', '--kill-group', '--max-args']) {
      assert.ok(results[2].stdout.includes(flag), `--help documents ${flag}`);
    }
  });

  test('usage errors exit 100 with one line; a fatal start-up error exits 111', async () => {
    const file = dir.path('not-a-socket');
    writeFileSync(file, 'keep me');
    const [missing, badQueue, unknown, badCommand, fatal] = await Promise.all([
      cli(['serve']),
      cli(['serve', '-q', 'many', dir.path('a.sock')]),
      cli(['serve', '-z', dir.path('a.sock')]),
      cli(['nosuchcommand']),
      cli(['serve', '--allow-root', file]),
    ]);
    for (const result of [missing, badQueue, unknown, badCommand]) {
      assert.equal(result.code, 100, result.stderr);
      assert.equal(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
    }
    assert.match(missing.stderr, /missing SOCKET_PATH/);
    assert.match(badQueue.stderr, /-q/);
    assert.equal(fatal.code, 111);
    assert.match(fatal.stderr, /not a socket/);
    assert.equal(readFileSync(file, 'utf8'), 'keep me');
  });

  test('sockexec flags parse to milliseconds and options', () => {
    const parsed = parseServeArgs([
      '-d',
      '-q',
      '5',
      '-M',
      '0600',
      '-m',
      '7',
      '-t',
      '30',
      '-k',
      '2',
      '--kill-group',
      '--max-args',
      '10',
      '--max-arg-length',
      '100',
      '--max-arg-bytes',
      '1000',
      '--max-data-length',
      '4096',
      '/tmp/x.sock',
    ]);
    assert.deepEqual(parsed, {
      kind: 'serve',
      debug: true,
      options: {
        path: '/tmp/x.sock',
        backlog: 5,
        mode: 0o600,
        maxConnections: 7,
        timeout: 30_000,
        killTimeout: 2000,
        processGroup: true,
        limits: { maxArgs: 10, maxArgLength: 100, maxArgBytes: 1000, maxDataLength: 4096 },
        policy: {},
      },
    });
    assert.deepEqual(parseServeArgs(['-t', '0', 's']), {
      kind: 'serve',
      debug: false,
      options: { path: 's', timeout: 0, limits: {}, processGroup: false, policy: {} },
    });
  });

  test('a duration past the longest timer names the range', () => {
    assert.throws(
      () => parseServeArgs(['-t', '2147484', 's']),
      /-t: expected seconds from 0 to 2147483 \(about 24 days: the longest timer\), got "2147484"/,
    );
  });

  test('bad flag values are usage errors', () => {
    for (const args of [
      [],
      ['a', 'b'],
      ['-k', '0', 's'],
      ['-k', '0.5', 's'],
      ['-t', '-1', 's'],
      ['-t', 'x', 's'],
      // Past the longest timer (2^31 - 1 ms): Node would fire it at once, every deadline at 1 ms.
      ['-t', '2147484', 's'],
      ['--request-timeout', '2147484', 's'],
      // Accepted before: the last one won, and an empty PATH found nothing.
      ['--contain', '--no-contain', 's'],
      ['--exec-path', '', 's'],
      ['-M', '888', 's'],
      ['-M', '1777', 's'],
      ['-m', '0', 's'],
      ['-q', '', 's'],
      ['--max-args', '0', 's'],
      ['-q'],
      ['--nope', 's'],
      [''],
    ]) {
      assert.throws(() => parseServeArgs(args), UsageError, JSON.stringify(args));
    }
  });
});

describe('a running daemon process', () => {
  test('-M sets the mode; -d logs accept, spawn with pid and argv, exit', async () => {
    const daemon = await startDaemonProcess(['-d', '-M', '0600']);
    try {
      assert.equal(statSync(daemon.path).mode & 0o777, 0o600);
      const reply = await RawClient.exchange(daemon.path, request(['echo', 'logged']));
      assert.deepEqual(reply.exit, ['exitcode', '0']);
      await waitUntil(() => /closed\n/.test(daemon.stderr()), 'the connection is logged closed');
      const log = daemon.stderr();
      assert.match(log, /listening on .*no policy: as sockexec\)/);
      assert.match(log, /connection 1: accepted/);
      assert.match(log, /connection 1: spawn pid \d+: \["echo","logged"\]/);
      assert.match(log, /connection 1: program \d+ exited with 0/);
    } finally {
      assert.equal(await daemon.stop(), 0);
      daemon.cleanup();
    }
  });

  test('descriptors the daemon inherited (not close-on-exec) are closed, not passed on', async () => {
    const daemon = await startDaemonProcess(['-d'], { inheritedFd: 40 });
    try {
      const reply = await RawClient.exchange(
        daemon.path,
        request(['sh', '-c', 'exec ls -l /proc/self/fd']),
      );
      const fds = listedFds(reply.stdout);
      // 0-2: the program's own pipes; 3: the directory ls reads. Nothing else.
      assert.deepEqual(
        fds.map((fd) => fd.split(' ')[0]).sort(),
        ['0', '1', '2', '3'],
        fds.join('\n'),
      );
      assert.match(daemon.stderr(), /closed inherited descriptors [0-9, ]*\b40\b/);
    } finally {
      await daemon.stop();
      daemon.cleanup();
    }
  });

  test('a second daemon on the same path exits 111 and leaves the first alone', async () => {
    const daemon = await startDaemonProcess();
    try {
      const second = await cli(['serve', '--allow-root', daemon.path]);
      assert.equal(second.code, 111);
      assert.match(second.stderr, /another daemon is already listening/);
      const reply = await RawClient.exchange(daemon.path, request(['echo', 'first']));
      assert.equal(reply.stdout, 'first\n');
    } finally {
      await daemon.stop();
      daemon.cleanup();
    }
  });

  test('SIGUSR1 and SIGUSR2: a status line; the daemon serves on, and no inspector opens', async () => {
    const daemon = await startDaemonProcess([]);
    try {
      const holder = await RawClient.connect(daemon.path);
      holder.send(request(['cat'], ['x'], false));
      await holder.waitForStdout('x');
      for (const signal of ['SIGUSR1', 'SIGUSR2'] as const) {
        process.kill(daemon.pid, signal);
        await waitUntil(
          () =>
            daemon
              .stderr()
              .includes(`procsock serve: ${signal}: 1 connections being served, 0 waiting\n`),
          `the status line for ${signal}`,
        );
      }
      // Before, USR2 killed the daemon and USR1 opened Node's inspector on 127.0.0.1:9229, which
      // any local user could attach to and run code as the daemon.
      assert.doesNotMatch(daemon.stderr(), /Debugger listening/);
      assert.deepEqual(listeningTcp(daemon.pid), [], 'the daemon listens on no TCP port');
      const reply = await RawClient.exchange(daemon.path, request(['echo', 'still']));
      assert.equal(reply.stdout, 'still\n');
      holder.destroy();
    } finally {
      await daemon.stop();
      daemon.cleanup();
    }
  });

  test('-d with its stderr gone (the reader of the pipe died): the daemon serves on, and stops cleanly', async () => {
    const path = dir.path('stderr-gone.sock');
    const child = runCli(['serve', '-d', '--allow-root', '--audit', '-', path]);
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code) => resolve(code)),
    );
    child.stdout!.resume();
    await new Promise<void>((resolve) => {
      let text = '';
      child.stderr!.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        if (text.includes('listening on')) resolve();
      });
    });
    child.stderr!.destroy(); // the daemon's next log line meets EPIPE
    try {
      for (let i = 0; i < 3; i++) {
        const reply = await RawClient.exchange(path, request(['echo', `${i}`]));
        assert.deepEqual(reply.pairs, [
          ['stdout', `${i}\n`],
          ['exitcode', '0'],
        ]);
      }
    } finally {
      child.kill('SIGTERM');
    }
    // Before, the first write after the reader went killed it: exit 1, the socket file left.
    assert.equal(await exited, 0);
    assert.equal(existsSync(path), false);
  });

  // SIGHUP too: the terminal a daemon was started from closing. Its default action killed the
  // daemon at once, leaving the socket file behind and an uncontained program running.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    test(`8. clean shutdown on ${signal}: programs TERMed then KILLed, reaped, socket removed, exit 0`, async () => {
      const daemon = await startDaemonProcess(['-t', '0', '-k', '1']);
      const record = dir.path(`shutdown-${signal}.log`);
      const fixture = new URL('../fixtures/ignore-term.sh', import.meta.url).pathname;
      try {
        const stubborn = await RawClient.connect(daemon.path);
        stubborn.send(request(['sh', fixture, record], [], false));
        const [[, pidLine]] = (await stubborn.waitForPairs(1)) as [[string, string]];
        const stubbornPid = Number(pidLine.trim());
        const polite = await RawClient.connect(daemon.path);
        polite.send(request(['sh', '-c', 'echo $$; exec sleep 30'], [], false));
        const [[, politeLine]] = (await polite.waitForPairs(1)) as [[string, string]];
        const politePid = Number(politeLine.trim());
        assert.deepEqual(
          daemonChildren(daemon.pid)
            .map((child) => child.pid)
            .sort(),
          [stubbornPid, politePid].sort(),
        );

        assert.equal(await daemon.stop(signal), 0);

        assert.equal(existsSync(daemon.path), false, 'socket file removed');
        assert.equal(isAlive(stubbornPid), false);
        assert.equal(isAlive(politePid), false);
        assert.match(readFileSync(record, 'utf8'), /TERM/, 'TERM came first');
        // Each client was told how its program ended.
        assert.deepEqual((await polite.reply()).exit, ['termsig', 'TERM']);
        assert.deepEqual((await stubborn.reply()).exit, ['termsig', 'KILL']);
      } finally {
        await daemon.stop();
        daemon.cleanup();
      }
    });
  }
});

/** The TCP ports process `pid` listens on (its socket inodes among /proc/net/tcp{,6}'s LISTEN lines). */
function listeningTcp(pid: number): string[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (inode) inodes.add(inode);
    } catch {
      // closed meanwhile
    }
  }
  return ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((table) =>
    readFileSync(table, 'utf8')
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((fields) => fields[3] === '0A' && inodes.has(fields[9] ?? ''))
      .map((fields) => fields[1]!),
  );
}

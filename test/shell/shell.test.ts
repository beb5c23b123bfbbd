/**
 * The shell driver against real shells, over both transports: a local child and a session
 * with a real daemon on a Unix socket. Tests 1–9 are the issue's must-pass list (the Go
 * package shexec fails the first five).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { spawnBackendInUse } from '../../src/channel/local.js';
import { DEFAULT_MAX_BUFFER } from '../../src/core/limits.js';
import {
  ArgumentError,
  LimitError,
  ShellCrashError,
  type ShellExitError,
  ShellTimeoutError,
  StateError,
} from '../../src/errors.js';
import {
  RecallCommander,
  Shell,
  type ShellOptions,
  type ShellResult,
} from '../../src/shell/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { isAlive, waitUntil } from '../helpers/process.js';
import { byteSplitTransport, markers, recordingTransport } from './transports.js';

const KILL_TIMEOUT = 300;

for (const kind of ['local', 'daemon'] as const) {
  describe(`shell over ${kind === 'local' ? 'a local child' : 'the daemon'}`, () => {
    let daemon: TestDaemon | undefined;
    before(async () => {
      if (kind === 'daemon') {
        daemon = await startDaemon({ timeout: 0, killTimeout: KILL_TIMEOUT, processGroup: true });
      }
    });
    after(async () => {
      await daemon?.close();
    });

    const socket = () => daemon?.path;
    const posix = (options: Partial<ShellOptions> = {}) => {
      const transport = recordingTransport(socket());
      const shell = Shell.posix({
        program: 'bash',
        transport: transport.transport,
        // The daemon keeps its own grace (-k); a killTimeout through it would be refused.
        ...(kind === 'local' ? { killTimeout: KILL_TIMEOUT } : {}),
        ...options,
      });
      return { shell, written: transport.written };
    };
    /** The shell's pid, asked of the shell itself (the daemon does not tell it). */
    const pidOf = async (shell: Shell) => Number((await shell.run('echo $$')).stdout);

    test('1. `false` then `echo $?` prints 1; each result carries its exit status', async () => {
      const { shell } = posix();
      await shell.start(5000);
      assert.equal((await shell.run('false')).exitCode, 1);
      assert.deepEqual(await shell.run('echo $?'), {
        command: 'echo $?',
        exitCode: 0,
        stdout: '1\n',
        stderr: '',
      });
      assert.equal((await shell.run('(exit 7)')).exitCode, 7);
      assert.equal((await shell.run('echo $?')).stdout, '7\n');
      assert.equal((await shell.run('ls /nonexistent-procsock')).exitCode, 2);
      assert.equal((await shell.run('true')).exitCode, 0);
      await shell.stop(5000);
    });

    test('2. output holding the sentinel or a marker neither ends a run early nor leaks', async () => {
      const { shell, written } = posix();
      await shell.start(5000);
      await shell.run('echo one');
      const [, old] = markers(written);
      assert.ok(old, 'a marker was written');
      // A previous run's marker, printed exactly as the end of a run prints it, on both
      // streams, and the status function the driver uses called by the command.
      const tricky = await shell.run(
        `printf '%s 0\\n' ${old}; printf '%s\\n' ${old} >&2; echo ${old} $?; __procsock_status 0; echo after`,
      );
      assert.equal(tricky.stdout, `${old} 0\n${old} 0\nafter\n`);
      assert.equal(tricky.stderr, `${old}\n`);
      assert.equal(tricky.exitCode, 0);
      assert.deepEqual(
        { ...(await shell.run('echo three')) },
        { command: 'echo three', exitCode: 0, stdout: 'three\n', stderr: '' },
      );
      const all = markers(written);
      assert.equal(new Set(all).size, all.length, 'every run has a fresh marker');
      await shell.stop(5000);
    });

    test('3. a 70,000-character line and a single 10 MB line come through intact', async () => {
      const { shell } = posix();
      await shell.start(5000);
      const long = await shell.run("head -c 70000 /dev/zero | tr '\\0' x; echo");
      assert.equal(long.stdout, `${'x'.repeat(70_000)}\n`);
      // No newline at all: the 10 MB share their line with the sentinel.
      const huge = await shell.run("head -c 10000000 /dev/zero | tr '\\0' y", 30_000);
      assert.equal(huge.stdout.length, 10_000_000);
      assert.ok(/^y+$/.test(huge.stdout));
      const recall = new RecallCommander("head -c 10000000 /dev/zero | tr '\\0' z; echo; echo end");
      await shell.run(recall, 30_000);
      assert.equal(recall.stdoutLines.length, 2);
      assert.equal(recall.stdoutLines[0]!.length, 10_000_000);
      assert.equal(recall.stdoutLines[1], 'end');
      await shell.stop(5000);
    });

    test('4. `read x` and `cat` get end-of-file at once and do not swallow the sentinel', async () => {
      const { shell } = posix();
      await shell.start(5000);
      const result = await shell.run('read x; echo "read=$? x=[$x]"; cat; echo "cat=$?"', 5000);
      assert.equal(result.stdout, 'read=1 x=[]\ncat=0\n');
      // A here-document is how a command gets input; the next run is untouched.
      assert.equal((await shell.run('cat <<EOF\nfed\nEOF')).stdout, 'fed\n');
      assert.equal((await shell.run('echo next')).stdout, 'next\n');
      assert.equal((await shell.run('readlink /proc/self/fd/0')).stdout, '/dev/null\n');
      if (spawnBackendInUse() === 'native') {
        // Given a pipe, the shell reads it on a descriptor commands do not inherit. (On
        // child_process's socket bash reads stdin, and lends commands a copy of it as fd 251
        // while it redirects their stdin.)
        const fds = await shell.run('ls /proc/self/fd');
        assert.deepEqual(fds.stdout.trim().split('\n').sort(), ['0', '1', '2', '3']); // 3: ls's
      }
      await shell.stop(5000);
    });

    test('5. after a timeout the shell and its children are gone, and start works again', async () => {
      const { shell } = posix();
      await shell.start(5000);
      const shellPid = await pidOf(shell);
      const childPid = Number((await shell.run('sleep 30 >/dev/null 2>&1 & echo $!')).stdout);
      assert.ok(isAlive(shellPid) && isAlive(childPid));
      const hanging = shell.run('sleep 30; echo late', 200);
      const queued = shell.run('echo never sent');
      await assert.rejects(hanging, (error: ShellTimeoutError) => {
        assert.ok(error instanceof ShellTimeoutError);
        // Locally the group is killed; a daemon is only told, and kills the group only with
        // --kill-group (this one has it, but the client cannot know).
        if (kind === 'local') assert.match(error.message, /was killed with its process group/);
        else assert.match(error.message, /stopped too only if the daemon runs with --kill-group/);
        return true;
      });
      await assert.rejects(queued, StateError);
      assert.equal(shell.state, 'off');
      // Locally the run settles once the shell is reaped; the daemon kills on hang-up.
      await waitUntil(() => !isAlive(shellPid) && !isAlive(childPid), 'shell and child are gone');
      await shell.start(5000);
      assert.equal((await shell.run('echo again')).stdout, 'again\n');
      await shell.stop(5000);
    });

    test('5a. a run that times out: its error carries what the command printed before it hung', async () => {
      const { shell } = posix();
      await shell.start(5000);
      // Printed at once, then silence: the 3 s give the output ample time to arrive first.
      const hanging = shell.run('echo started; echo warned >&2; exec sleep 30', 3000);
      await assert.rejects(hanging, (error: ShellTimeoutError) => {
        assert.ok(error instanceof ShellTimeoutError);
        assert.deepEqual([error.stdout, error.stderr], ['started\n', 'warned\n']);
        return true;
      });
      // A start() that times out has no command output to tell.
      const silent = new Shell({ program: 'sh', sentinel: { command: 'true', value: 'never' } });
      await assert.rejects(silent.start(200), (error: ShellTimeoutError) => {
        assert.deepEqual([error.stdout, error.stderr], [null, null]);
        return true;
      });
    });

    test("5b. each run's timeout counts from its own start, whatever the runs before it had", async () => {
      // The Shell keeps one clock and restarts it per run: an earlier run's shorter timeout
      // must not cut a later one short, nor a run without one, and the clock still fires.
      const { shell } = posix();
      await shell.start(5000);
      for (let i = 0; i < 3; i++) assert.equal((await shell.run('true', 300)).exitCode, 0);
      assert.equal((await shell.run('sleep 0.6; echo slow', 60_000)).stdout, 'slow\n');
      assert.equal((await shell.run('true', 300)).exitCode, 0);
      assert.equal((await shell.run('sleep 0.6; echo none', 0)).stdout, 'none\n');
      for (let i = 0; i < 3; i++) assert.equal((await shell.run('true', 60_000)).exitCode, 0);
      await assert.rejects(shell.run('sleep 30', 300), ShellTimeoutError);
      assert.equal(shell.state, 'off');
    });

    test('6. concurrent runs queue in order and never interleave', async () => {
      const { shell } = posix();
      await shell.start(5000);
      const finished: number[] = [];
      const runs = Array.from({ length: 8 }, (_, i) =>
        shell
          .run(
            `echo ${i}-a; echo e${i} >&2; sleep 0.01; echo ${i}-b; exit_status_${i}() { return ${i}; }; exit_status_${i}`,
          )
          .then((result) => {
            finished.push(i);
            return result;
          }),
      );
      assert.equal(shell.state, 'running');
      assert.equal(shell.queued, 7);
      const results = await Promise.all(runs);
      assert.deepEqual(finished, [0, 1, 2, 3, 4, 5, 6, 7]);
      results.forEach((result, i) => {
        assert.equal(result.stdout, `${i}-a\n${i}-b\n`);
        assert.equal(result.stderr, `e${i}\n`);
        assert.equal(result.exitCode, i);
      });
      await shell.stop(5000);
    });

    test('7. multi-byte UTF-8 split across chunks is intact', async () => {
      const { shell } = posix();
      await shell.start(5000);
      // Halves of € written apart, so they arrive in separate reads.
      const split = await shell.run("printf '\\342\\202'; sleep 0.05; printf '\\254\\n'");
      assert.equal(split.stdout, '€\n');
      await shell.stop(5000);

      // Every byte its own chunk: inside characters and inside the markers.
      const text = 'ünïcødé 日本語 🎉 €';
      const bytewise = Shell.posix({ program: 'bash', transport: byteSplitTransport(socket()) });
      await bytewise.start(5000);
      const result = await bytewise.run(
        `printf '%s' '${text}'; printf '%s\\n' '${text}' >&2; false`,
      );
      assert.deepEqual([result.stdout, result.stderr, result.exitCode], [text, `${text}\n`, 1]);
      assert.equal((await bytewise.run('echo $?')).stdout, '1\n');
      await bytewise.stop(5000);
    });

    test('8. a multi-line block (a fenced block from a markdown file) runs as one unit', async () => {
      const markdown = [
        '# Setup',
        '',
        '```sh',
        'greet() {',
        '  echo "hello $1"',
        '}',
        'for name in ada "grace hopper"; do',
        '  greet "$name"',
        'done',
        "cat <<'EOF'",
        'it\'s a "here" document, $HOME untouched',
        'EOF',
        'false',
        '```',
      ].join('\n');
      const block = /```sh\n([\s\S]*?)\n```/.exec(markdown)![1]!;
      const { shell } = posix();
      await shell.start(5000);
      const result = await shell.run(block);
      assert.equal(
        result.stdout,
        'hello ada\nhello grace hopper\nit\'s a "here" document, $HOME untouched\n',
      );
      assert.equal(result.exitCode, 1);
      // The block ran in the shell itself: its function is still defined.
      assert.equal((await shell.run('greet again')).stdout, 'hello again\n');
      // An unclosed quote is a syntax error of that run, not a hang.
      const broken = await shell.run('echo "unclosed');
      assert.equal(broken.exitCode, 2);
      assert.match(broken.stderr, /unexpected EOF/);
      assert.equal((await shell.run('echo fine')).stdout, 'fine\n');
      await shell.stop(5000);
    });

    test('crash, unexpected exit and signals: typed errors, shell off and restartable', async () => {
      const { shell } = posix();
      await shell.start(5000);
      await assert.rejects(shell.run('echo bye; exit 3'), (error: ShellCrashError) => {
        assert.equal(error.code, 'PROCSOCK_SHELL_CRASH');
        assert.match(error.message, /exited with code 3 while running "echo bye; exit 3"/);
        assert.equal(error.exitCode, 3);
        assert.equal(error.termSignal, null);
        return true;
      });
      assert.equal(shell.state, 'off');
      await shell.start(5000);
      await assert.rejects(shell.run('exit 0'), (error: ShellExitError) => {
        assert.equal(error.code, 'PROCSOCK_SHELL_EXIT');
        return true;
      });
      assert.equal(shell.state, 'off');
      await shell.start(5000);
      await assert.rejects(shell.run('kill -KILL $$'), (error: ShellCrashError) => {
        assert.match(error.message, /killed by SIGKILL/);
        assert.deepEqual([error.exitCode, error.termSignal], [null, 'KILL']);
        return true;
      });
      assert.equal(shell.state, 'off');
      await shell.start(5000);
      // Dying while idle: noticed, and the next call says why.
      await shell.run('(sleep 0.1; kill -KILL $$) >/dev/null 2>&1 &');
      await waitUntil(() => shell.state === 'off', 'the shell is seen to die while idle', 5000);
      await assert.rejects(shell.run('echo hi'), (error: StateError) => {
        assert.ok(error instanceof StateError);
        assert.ok(error.cause instanceof ShellCrashError);
        return true;
      });
      await shell.start(5000);
      assert.equal((await shell.run('echo alive')).stdout, 'alive\n');
      await shell.stop(5000);
    });

    test('a program that cannot start: ShellCrashError saying why', async () => {
      const { shell } = posix({ program: 'procsock-no-such-shell' });
      await assert.rejects(shell.start(5000), (error: ShellCrashError) => {
        assert.ok(error instanceof ShellCrashError);
        assert.match(error.message, /exited with code 127 .*command not found/);
        return true;
      });
      assert.equal(shell.state, 'off');
      // Refused as the program is made (a NUL byte): reported the same way, never a hang.
      const nul = posix({ program: 'ba\0sh' }).shell;
      await assert.rejects(nul.start(5000), /exited with code 126/);
      assert.equal(nul.state, 'off');
    });

    test('stop: EOF, a final command, a failing one, one that hangs', async () => {
      const { shell } = posix();
      await shell.start(5000);
      await shell.stop(5000);
      assert.equal(shell.state, 'off');
      await shell.start(5000);
      await shell.stop(5000, 'exit 0');
      await shell.start(5000);
      await assert.rejects(shell.stop(5000, 'exit 4'), /exited with code 4 after stop/);
      await shell.start(5000);
      const pid = await pidOf(shell);
      await assert.rejects(shell.stop(200, 'sleep 30'), ShellTimeoutError);
      assert.equal(shell.state, 'off');
      await waitUntil(() => !isAlive(pid), 'the stopped shell is gone');
    });

    test('wrong-state calls reject with StateError and change nothing', async () => {
      const { shell } = posix();
      await assert.rejects(shell.run('echo hi'), StateError);
      await assert.rejects(shell.stop(1000), StateError);
      assert.equal(shell.state, 'off');
      const starting = shell.start(5000);
      assert.equal(shell.state, 'starting');
      await assert.rejects(shell.start(5000), StateError);
      await assert.rejects(shell.run('echo hi'), StateError);
      await starting;
      assert.equal(shell.state, 'idle');
      await assert.rejects(shell.start(5000), /needs the shell off, but it is idle/);
      const running = shell.run('sleep 0.05; echo done');
      await assert.rejects(shell.stop(1000), /needs the shell idle, but it is running/);
      assert.equal((await running).stdout, 'done\n');
      const stopping = shell.stop(5000);
      await assert.rejects(shell.run('echo hi'), /it is stopping/);
      await stopping;
      await shell.close();
      await shell.close();
    });

    test('close() kills a running shell; pending and queued calls reject', async () => {
      const { shell } = posix();
      await shell.start(5000);
      const pid = await pidOf(shell);
      const running = shell.run('sleep 30');
      const queued = shell.run('echo never');
      await Promise.all([
        assert.rejects(running, StateError),
        assert.rejects(queued, StateError),
        shell.close(),
      ]);
      assert.equal(shell.state, 'off');
      await waitUntil(() => !isAlive(pid), 'the closed shell is gone');
    });

    if (kind === 'daemon') {
      test('no shell is left behind: every daemon session ended', async () => {
        await waitUntil(
          () => daemon!.server.connections === 0,
          'the daemon has no connection left',
        );
      });
    }
  });
}

describe('the POSIX preset on every POSIX shell installed', () => {
  for (const program of ['sh', 'bash', 'dash', 'zsh']) {
    const installed = spawnSync(program, ['-c', 'true']).status === 0;
    test(program, { skip: installed ? false : `${program} is not installed` }, async () => {
      const shell = Shell.posix({ program, killTimeout: KILL_TIMEOUT });
      await shell.start(5000);
      assert.equal((await shell.run('false')).exitCode, 1);
      assert.equal((await shell.run('echo $?')).stdout, '1\n');
      const result = await shell.run("printf out; printf err >&2; read x; cat; x=1\ny='it''s'");
      assert.deepEqual([result.stdout, result.stderr, result.exitCode], ['out', 'err', 0]);
      assert.equal((await shell.run('echo "$x $y"')).stdout, '1 its\n');
      const block = await shell.run('for i in 1 2; do\n  echo "$i"\ndone\ncat <<EOF\nhere\nEOF');
      assert.equal(block.stdout, '1\n2\nhere\n');
      await shell.run('false');
      await shell.stop(5000); // exits 0 although the last command failed
    });
  }
});

describe('options, parsers and timeouts', () => {
  test('bad options are ArgumentErrors at construction', () => {
    const sentinel = { command: 'echo x', value: 'x' };
    assert.throws(() => new Shell({ program: '', sentinel }), ArgumentError);
    assert.throws(() => new Shell({ program: 'sh' } as ShellOptions), /stdout sentinel/);
    assert.throws(
      () => new Shell({ program: 'sh', sentinel: { command: 'x', value: '' } }),
      ArgumentError,
    );
    assert.throws(
      () => new Shell({ program: 'sh', sentinel: 'posix', terminator: ';' }),
      /makes its own sentinels/,
    );
  });

  test('an option a Shell does not have is refused, never ignored; a preset refuses a sentinel', () => {
    const sentinel = { command: 'echo x', value: 'x' };
    for (const [key, reason] of [
      ['timeout', /unknown Shell option "timeout": give each call its own/],
      ['signal', /takes no AbortSignal/],
      ['maxbuffer', /unknown Shell option "maxbuffer"$/],
    ] as const) {
      const options = { program: 'sh', sentinel, [key]: 1 } as unknown as ShellOptions;
      assert.throws(() => new Shell(options), reason);
      assert.throws(() => Shell.posix({ [key]: 1 } as never), reason);
      assert.throws(() => Shell.python({ [key]: 1 } as never), reason);
    }
    // An option set to undefined is not set, as everywhere else.
    assert.ok(new Shell({ program: 'sh', sentinel, timeout: undefined } as ShellOptions));
    for (const preset of ['posix', 'python', 'node', 'sqlite'] as const) {
      assert.throws(() => Shell[preset]({ sentinel } as never), /makes its own sentinel/);
    }
  });

  test('bad arguments of start/run/stop reject (a promise-returning call never throws)', async () => {
    const shell = Shell.posix();
    await assert.rejects(shell.run(42 as unknown as string), ArgumentError);
    await assert.rejects(shell.start(-1), ArgumentError);
    await assert.rejects(shell.run('true', Number.NaN), ArgumentError);
    await assert.rejects(shell.stop('soon' as unknown as number), ArgumentError);
    assert.equal(shell.state, 'off');
  });

  test('cwd and env reach a local shell', async () => {
    const shell = Shell.posix({ cwd: '/usr', env: { PATH: process.env.PATH, GREETING: 'hej' } });
    await shell.start(5000);
    assert.equal((await shell.run('pwd; echo "$GREETING"')).stdout, '/usr\nhej\n');
    await shell.stop(5000);
  });

  test('POSIX capture in a local shell (stderr read at the stdout marker): each run gets exactly its own stderr', async () => {
    for (const program of ['bash', 'sh']) {
      const shell = Shell.posix({ program });
      await shell.start(5000);
      for (let i = 0; i < 30; i++) {
        // Unterminated, and written just before the command ends.
        const result = await shell.run(`echo o${i}; printf e${i} >&2`);
        assert.deepEqual([result.stdout, result.stderr, result.exitCode], [`o${i}\n`, `e${i}`, 0]);
      }
      // More than a pipe holds: read while the command runs, the rest at the marker.
      const big = await shell.run("head -c 300000 /dev/zero | tr '\\0' x >&2; echo done; false");
      assert.deepEqual([big.stdout, big.stderr.length, big.exitCode], ['done\n', 300000, 1]);
      assert.ok(/^x+$/.test(big.stderr));
      assert.deepEqual((await shell.run('echo next >&2')).stderr, 'next\n');
      await shell.stop(5000);
    }
  });

  test("POSIX stderr 'merge' keeps the written order in stdout; 'drain' drops it", async () => {
    const merge = Shell.posix({ program: 'bash', stderr: 'merge' });
    await merge.start(5000);
    const merged = await merge.run('echo 1; echo 2 >&2; echo 3; false');
    assert.deepEqual([merged.stdout, merged.stderr, merged.exitCode], ['1\n2\n3\n', '', 1]);
    assert.equal((await merge.run('echo $?')).stdout, '1\n');
    await merge.stop(5000);
    const drain = Shell.posix({ program: 'sh', stderr: 'drain' });
    await drain.start(5000);
    const drained = await drain.run('head -c 200000 /dev/zero >&2; echo out');
    assert.deepEqual([drained.stdout, drained.stderr, drained.exitCode], ['out\n', '', 0]);
    await drain.stop(5000);
    assert.throws(() => Shell.posix({ stderr: 'keep' as 'drain' }), ArgumentError);
    assert.throws(
      () =>
        new Shell({ program: 'sh', sentinel: { command: 'echo x', value: 'x' }, stderr: 'drain' }),
      /for the POSIX preset/,
    );
  });

  test('a slow Writable as a parser holds the program back; the run ends once it has everything', async () => {
    const shell = Shell.posix({ program: 'sh' });
    await shell.start(5000);
    let written = 0;
    let queuedMost = 0;
    const slow = new Writable({
      highWaterMark: 65536,
      write(chunk: Buffer, _encoding, callback) {
        written += chunk.length;
        queuedMost = Math.max(queuedMost, slow.writableLength);
        setTimeout(callback, 1);
      },
    });
    const size = 8 * 1024 * 1024;
    await shell.run({ command: `head -c ${size} /dev/zero`, stdout: slow }, 60_000);
    // The run ended when its output had been handed over, not while it sat in the Writable.
    assert.ok(
      slow.writableLength <= 65536 + 1024 * 1024,
      `${slow.writableLength} bytes still queued`,
    );
    await new Promise<void>((resolve) => slow.end(resolve));
    assert.equal(written, size);
    // Bounded by the Writable's own mark (plus one pipe read), not by the output's size.
    assert.ok(queuedMost <= 65536 + 1024 * 1024, `${queuedMost} bytes were queued in the Writable`);
    await shell.stop(5000);
  });

  test('a parser that throws fails its run only; the shell stays usable', async () => {
    const shell = Shell.posix({ program: 'sh' });
    await shell.start(5000);
    const broken = {
      command: 'echo a; echo b',
      stdout: {
        write() {
          throw new Error('parser bug');
        },
      },
    };
    await assert.rejects(shell.run(broken), /parser bug/);
    assert.equal(shell.state, 'idle');
    // One that throws nothing (or 0) fails its run too, in write() and in end(): it used to succeed.
    for (const thrown of [undefined, 0]) {
      const throwing = () => {
        throw thrown;
      };
      await assert.rejects(
        shell.run({ command: 'echo a', stdout: { write: throwing } }),
        /parser's write\(\) threw/,
      );
      await assert.rejects(
        shell.run({ command: 'echo a', stdout: { write() {}, end: throwing } }),
        /parser's end\(\) threw/,
      );
    }
    assert.equal((await shell.run('echo ok')).stdout, 'ok\n');
    await shell.stop(5000);
  });

  test('timeouts: 0 and Infinity mean none; a negative one is an ArgumentError', async () => {
    const shell = Shell.posix({ program: 'sh' });
    await shell.start(Number.POSITIVE_INFINITY);
    assert.equal((await shell.run('sleep 0.05; echo slow', 0)).stdout, 'slow\n');
    assert.equal((await shell.run('echo inf', Number.POSITIVE_INFINITY)).stdout, 'inf\n');
    await assert.rejects(shell.run('echo', -1), /milliseconds/);
    await shell.stop(0);
  });
});

describe('maxBuffer: collected output is capped with a typed error; the queue advances', () => {
  for (const program of ['bash', 'dash', 'zsh']) {
    const installed = spawnSync(program, ['-c', 'true']).status === 0;
    test(program, { skip: installed ? false : `${program} is not installed` }, async () => {
      const shell = Shell.posix({ program, maxBuffer: 100_000, killTimeout: KILL_TIMEOUT });
      await shell.start(5000);
      const [big, bigErr, next] = await Promise.allSettled([
        shell.run('head -c 3000000 /dev/zero; echo done'),
        shell.run('head -c 200000 /dev/zero >&2; false'),
        shell.run('echo next; (exit 5)'),
      ]);
      for (const [settled, stream] of [
        [big, 'stdout'],
        [bigErr, 'stderr'],
      ] as const) {
        assert.equal(settled.status, 'rejected');
        const error = (settled as PromiseRejectedResult).reason as LimitError;
        assert.ok(error instanceof LimitError);
        assert.equal(error.limit, 'maxBuffer');
        assert.match(error.message, new RegExp(`${stream} passed maxBuffer \\(100000 bytes\\)`));
      }
      assert.equal(next.status, 'fulfilled');
      const result = (next as PromiseFulfilledResult<ShellResult>).value;
      assert.deepEqual([result.stdout, result.exitCode], ['next\n', 5]);
      assert.equal(shell.state, 'idle');
      // Exactly the cap is fine; the default is run()'s.
      assert.equal(
        (await shell.run("head -c 100000 /dev/zero | tr '\\0' x")).stdout.length,
        100_000,
      );
      await shell.stop(5000);
    });
  }

  test('the default is 64 MiB, as run()’s; a bad value is an ArgumentError', () => {
    assert.equal(DEFAULT_MAX_BUFFER, 64 * 1024 * 1024);
    assert.throws(() => Shell.posix({ maxBuffer: 0 }), ArgumentError);
    assert.throws(() => Shell.posix({ maxBuffer: 1.5 }), /whole number of bytes/);
  });
});

describe("the daemon's deadline (-t) ending a shell", () => {
  test('says so, and what to change', async () => {
    const daemon = await startDaemon({ timeout: 1000, killTimeout: KILL_TIMEOUT });
    try {
      const shell = Shell.posix({ program: 'sh', transport: { socket: daemon.path } });
      await shell.start(5000);
      await assert.rejects(shell.run('sleep 30', 20_000), (error: ShellCrashError) => {
        assert.ok(error instanceof ShellCrashError);
        assert.equal(error.termSignal, 'TERM');
        assert.match(error.message, /killed by SIGTERM \(\d+\.\d s after start\(\): if nothing/);
        assert.match(error.message, /the daemon's deadline, -t.*procsock serve -t 0/);
        return true;
      });
    } finally {
      await daemon.close();
    }
  });
});

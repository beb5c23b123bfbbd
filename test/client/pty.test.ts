/**
 * PTY mode through the client, locally and through a procsock daemon, with real programs:
 * the program has a terminal on stdin and stdout, its stderr on a pipe (or the terminal when
 * asked), the window size given and changed (SIGWINCH), its real exit status, every byte
 * of its output, and nothing left behind. On the child_process backend (which cannot give a
 * terminal) every way in refuses `pty` with a typed error, nothing run.
 */
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { spawnBackendInUse } from '../../src/channel/local.js';
import { run } from '../../src/client/exec.js';
import { connect, type Session } from '../../src/client/session.js';
import { UnsupportedOptionError } from '../../src/errors.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { childrenOf, isAlive, openFdCount, tempDir, waitUntil } from '../helpers/process.js';

const native = spawnBackendInUse() === 'native';
const files = tempDir('procsock-pty-');
let daemon: TestDaemon;
before(async () => {
  daemon = await startDaemon({ timeout: 60_000, killTimeout: 1000 });
});
after(async () => {
  await daemon.close();
  files.cleanup();
});

/** This process's children but tsx's esbuild: the programs (and the daemon's). */
function programs() {
  return childrenOf().filter((child) => child.command !== 'esbuild');
}

/** Reads a session's output until `stdout` matches, and returns it. */
async function until(session: Session, pattern: RegExp): Promise<string> {
  let stdout = '';
  while (!pattern.test(stdout)) {
    const item = await session.receive({ timeout: 20_000 });
    assert.equal(item.type, 'stdout', `waiting for ${pattern} in ${JSON.stringify(stdout)}`);
    if (item.type === 'stdout') stdout += item.data.toString();
  }
  return stdout;
}

for (const where of ['local', 'daemon'] as const) {
  const target = () => (where === 'local' ? {} : { socket: daemon.path });
  const connectTo = (options: Parameters<typeof connect>[1]) =>
    connect(where === 'local' ? 'local' : daemon.path, options);

  describe(`PTY mode, ${where === 'local' ? 'a local child' : 'through the daemon'}`, {
    skip: !native && 'the native backend only: runs in the native pass',
  }, () => {
    test('tty prints a /dev/pts path; stdin and stdout are the terminal, stderr is not', async () => {
      const script =
        'tty; test -t 0 && test -t 1 && echo in-out; test -t 2 && echo err-tty || echo err-pipe >&2';
      const result = await run(['sh', '-c', script], { ...target(), pty: true });
      assert.match(result.stdout, /^\/dev\/pts\/\d+\r\nin-out\r\n$/);
      assert.equal(result.stderr, 'err-pipe\n');
      assert.equal(result.exitCode, 0);
    });

    test("stderr: 'pty' puts stderr on the terminal too (mixed into stdout, as on a screen)", async () => {
      const script = 'test -t 2 && echo err-tty >&2; echo out';
      const result = await run(['sh', '-c', script], { ...target(), pty: { stderr: 'pty' } });
      assert.equal(result.stdout, 'err-tty\r\nout\r\n');
      assert.equal(result.stderr, '');
    });

    test('stty size reports the size given, and the new one after resize, with SIGWINCH', async () => {
      const session = await connectTo({ pty: { columns: 100, rows: 30 } });
      session.sendArgs([
        'sh',
        '-c',
        // (A signal interrupts dash's read: read again.)
        'trap \'echo "winch $(stty size)"\' WINCH; echo "start $(stty size)"; until read -r x; do :; done; echo "bye $x"',
      ]);
      assert.match(await until(session, /start 30 100\r\n/), /^start 30 100\r\n$/);
      session.resize(132, 43);
      assert.match(await until(session, /winch 43 132\r\n/), /^winch 43 132\r\n$/);
      await session.send('end\n');
      const rest = await until(session, /bye end\r\n/);
      assert.equal(rest, 'end\r\nbye end\r\n', 'the input echoed, then the output');
      const exit = await session.wait();
      assert.ok(exit, 'the program exited');
      assert.deepEqual([exit.exitCode, exit.termSignal, exit.reason], [0, null, 'exit']);
      assert.ok(exit.usage !== null && exit.usage.wallTime >= 0, 'accounted as on pipes');
      assert.throws(() => session.resize(0, 10), { code: 'PROCSOCK_ARGUMENT' });
      await session.close();
    });

    test('raw: bytes pass unchanged both ways (no echo, no \\r\\n), set before the program runs', async () => {
      const result = await run(['sh', '-c', 'read -r x; printf "got %s\\nb\\r" "$x"; stty -a'], {
        ...target(),
        pty: { raw: true },
        stdin: 'hi\n',
      });
      assert.match(result.stdout, /^got hi\nb\r/, 'no echo of the input, no \\n to \\r\\n');
      assert.match(result.stdout, /-icanon/);
      assert.match(result.stdout, / -echo /);
      assert.match(result.stdout, /-isig/);
      assert.equal(result.exitCode, 0);
    });

    test('the real python3 -i REPL, driven as a person would: prompts, echo, a traceback on stderr, end of input at the prompt', async () => {
      // TERM=dumb: readline without escape sequences, so the prompts and echo are plain text.
      const session = await connectTo({ pty: true, env: { ...process.env, TERM: 'dumb' } });
      const seen = { stdout: '', stderr: '' };
      /** Reads both streams until stdout matches; returns the stdout read meanwhile. */
      const prompt = async (pattern: RegExp) => {
        const from = seen.stdout.length;
        while (!pattern.test(seen.stdout.slice(from))) {
          const item = await session.receive({ timeout: 20_000 });
          assert.ok(item.type === 'stdout' || item.type === 'stderr', JSON.stringify(seen));
          seen[item.type] += item.data.toString();
        }
        return seen.stdout.slice(from);
      };
      try {
        session.sendArgs(['python3', '-q', '-i']);
        await prompt(/>>> $/);
        await session.send('def twice(x):\n    return 2 * x\n\n');
        await prompt(/\.\.\. \r\n>>> $/);
        await session.send('twice(21)\n');
        assert.match(await prompt(/42\r\n>>> $/), /twice\(21\)\r\n42\r\n>>> $/);
        await session.send('1/0\n');
        await prompt(/>>> $/);
        // End of input typed at the prompt (readline, in raw mode, takes ^D on an empty line).
        await session.sendClose();
        for (;;) {
          const item = await session.receive({ timeout: 20_000 });
          if (item.type === 'stdout' || item.type === 'stderr')
            seen[item.type] += item.data.toString();
          else {
            assert.equal(item.type, 'exit');
            if (item.type === 'exit') assert.deepEqual([item.exitCode, item.termSignal], [0, null]);
            break;
          }
        }
        assert.match(seen.stderr, /ZeroDivisionError: division by zero/);
      } finally {
        await session.close();
      }
    });

    test('python3 sees a terminal on stdout', async () => {
      const result = await run(['python3', '-c', 'import sys; print(sys.stdout.isatty())'], {
        ...target(),
        pty: true,
      });
      assert.equal(result.stdout, 'True\r\n');
    });

    test('10 MB written just before exit all arrive (EIO at the last close is the end), status exact', async () => {
      const script = "head -c 10000000 /dev/zero | tr '\\0' x; printf end; exit 7";
      const result = await run(['sh', '-c', script], {
        ...target(),
        pty: true,
        encoding: 'buffer',
      });
      assert.equal(result.stdout.length, 10_000_003);
      assert.equal(result.stdout.subarray(-3).toString(), 'end');
      assert.equal(result.stdout.indexOf('end'), 10_000_000, 'nothing but x before it');
      assert.deepEqual([result.exitCode, result.termSignal, result.reason], [7, null, 'exit']);
    });

    test('a signal ends it with that signal; ^C typed on the terminal is SIGINT', async () => {
      const killed = await run(['sh', '-c', 'kill -TERM $$'], { ...target(), pty: true });
      assert.deepEqual([killed.exitCode, killed.termSignal], [null, 'TERM']);
      const interrupted = await run(['sleep', '30'], { ...target(), pty: true, stdin: '\x03' });
      assert.deepEqual([interrupted.exitCode, interrupted.termSignal], [null, 'INT']);
    });

    test('stdin end types the end-of-file character: after a line, and after a partial line', async () => {
      const line = await run(['cat'], { ...target(), pty: true, stdin: 'hello\n' });
      assert.equal(line.stdout, 'hello\r\nhello\r\n', 'the echo, then cat');
      const partial = await run(['cat'], { ...target(), pty: true, stdin: 'abc' });
      assert.equal(partial.stdout, 'abcabc', 'the echo, then the partial line, then end of file');
      const none = await run(['cat'], { ...target(), pty: true });
      assert.deepEqual([none.stdout, none.exitCode], ['', 0]);
    });

    test('limits as on pipes: past maxBuffer the program is stopped and the call rejects', async () => {
      await assert.rejects(run(['yes'], { ...target(), pty: true, maxBuffer: 1 << 20 }), {
        code: 'PROCSOCK_LIMIT',
      });
      await waitUntil(() => programs().length === 0, 'yes is gone', 10_000);
    });

    test('a program that cannot be started: 127 and the usual line, on the stderr pipe', async () => {
      const result = await run(['procsock-no-such-program'], { ...target(), pty: true });
      assert.equal(result.exitCode, 127);
      assert.equal(result.stderr, 'procsock: procsock-no-such-program: command not found\n');
    });

    test('a pty run that times out leaves no process and no descriptor', async () => {
      const fdsBefore = openFdCount();
      const pidFile = files.path(`${where}-timeout.pid`);
      await assert.rejects(
        run(['sh', '-c', `sleep 30 & echo $! > ${pidFile}; wait`], {
          ...target(),
          pty: true,
          timeout: 500,
          killTimeout: 200,
          processGroup: true,
        }),
        { code: 'PROCSOCK_TIMEOUT' },
      );
      await waitUntil(() => programs().length === 0, 'no child (nor zombie) is left', 10_000);
      await waitUntil(() => openFdCount() <= fdsBefore, 'descriptors are back', 10_000);
      const sleep = Number(readFileSync(pidFile, 'utf8'));
      await waitUntil(() => !isAlive(sleep), 'the sleep it started is gone too', 10_000);
    });

    test('many pty runs leak no descriptor, child or zombie', async () => {
      const fdsBefore = openFdCount();
      for (let i = 0; i < 20; i++) {
        const result = await run(['sh', '-c', 'tty >/dev/null; echo $0 >&2'], {
          ...target(),
          pty: true,
        });
        assert.equal(result.exitCode, 0);
      }
      await waitUntil(() => programs().length === 0, 'no child is left', 10_000);
      await waitUntil(() => openFdCount() <= fdsBefore, 'descriptors are back', 10_000);
    });
  });
}

describe('PTY mode on the child_process backend', {
  skip: native && "the child_process backend's case: runs in the child_process pass",
}, () => {
  test('run() and connect() refuse pty with a typed error saying how; nothing runs', async () => {
    const marker = files.path('cp-ran');
    const check = (error: unknown) => {
      assert.ok(error instanceof UnsupportedOptionError, String(error));
      assert.equal(error.option, 'pty');
      assert.match(error.message, /native spawn backend/);
      return true;
    };
    await assert.rejects(run(['touch', marker], { pty: true }), check);
    await assert.rejects(connect('local', { pty: { columns: 10, rows: 10 } }), check);
    // The daemon runs on the same backend here: it refuses as unsupported, and says why.
    await assert.rejects(run(['touch', marker], { socket: daemon.path, pty: true }), (error) => {
      check(error);
      assert.match((error as Error).message, /native spawn backend/);
      return true;
    });
    assert.deepEqual(programs(), []);
    assert.equal(existsSync(marker), false, 'nothing ran');
  });

  test('pty: false asks for nothing, and runs as usual', async () => {
    const result = await run(['sh', '-c', 'test -t 1 || echo pipe'], { pty: false });
    assert.equal(result.stdout, 'pipe\n');
  });
});

test('bad pty options are ArgumentErrors, on any backend', async () => {
  for (const pty of [
    { columns: 0 },
    { rows: 70_000 },
    { stderr: 'both' },
    { colums: 80 },
    { raw: 'yes' },
    'yes',
  ]) {
    await assert.rejects(run(['true'], { pty: pty as never }), { code: 'PROCSOCK_ARGUMENT' });
  }
});

test('resize() without a terminal says how to get one', async () => {
  const session = await connect('local');
  session.sendArgs(['cat']);
  assert.throws(
    () => session.resize(80, 24),
    (error: UnsupportedOptionError) => {
      assert.ok(error instanceof UnsupportedOptionError);
      assert.match(error.message, /pty: true/);
      return true;
    },
  );
  session.sendClose();
  await session.wait();
  await session.close();
});

/**
 * `Shell` on a terminal (ShellOptions.pty), locally and through the daemon: bash, sh and
 * python write to a real terminal (isatty, the window size through /dev/tty) while each run
 * keeps its own stdout, stderr and status, and stop() ends the program although a raw
 * terminal has no end of file. Where there can be no terminal (child_process), start()
 * rejects with a typed error; presets that cannot run on one are refused at once.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { spawnBackendInUse } from '../../src/channel/local.js';
import { ArgumentError, StateError, UnsupportedOptionError } from '../../src/errors.js';
import { Shell } from '../../src/shell/shell.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';

const native = spawnBackendInUse() === 'native';
let daemon: TestDaemon;
before(async () => {
  daemon = await startDaemon({ timeout: 60_000, killTimeout: 1000 });
});
after(() => daemon.close());

for (const where of ['local', 'daemon'] as const) {
  const transport = () => (where === 'local' ? ('local' as const) : { socket: daemon.path });

  describe(`Shell on a terminal, ${where}`, {
    skip: !native && 'the native backend only: runs in the native pass',
  }, () => {
    for (const program of ['bash', 'sh']) {
      test(`${program}: a terminal for every run, with each run's stdout, stderr and status`, async () => {
        const shell = Shell.posix({
          program,
          transport: transport(),
          pty: { columns: 100, rows: 30 },
        });
        await shell.start(10_000);
        try {
          const terminal = await shell.run(
            'test -t 1 && echo out-tty; stty size </dev/tty; readlink /proc/self/fd/1',
            10_000,
          );
          assert.match(
            terminal.stdout,
            /^out-tty\n30 100\n\/dev\/pts\/\d+\n$/,
            'raw: no \\r added',
          );
          assert.deepEqual(await shell.run('false', 10_000), {
            command: 'false',
            exitCode: 1,
            stdout: '',
            stderr: '',
          });
          const next = await shell.run('echo $?; echo err >&2; (exit 3)', 10_000);
          assert.deepEqual([next.stdout, next.stderr, next.exitCode], ['1\n', 'err\n', 3]);
          const python = await shell.run(
            'python3 -c "import sys; print(sys.stdout.isatty(), sys.stdin.isatty())"',
            10_000,
          );
          assert.equal(python.stdout, 'True False\n', "a command's stdin stays /dev/null");
          await shell.stop(10_000);
          assert.equal(shell.state, 'off');
        } finally {
          await shell.close();
        }
      });
    }

    test('resize(): a new window size, idle and while a run waits for it (SIGWINCH)', async () => {
      const shell = Shell.posix({
        program: 'bash',
        transport: transport(),
        pty: { columns: 100, rows: 30 },
      });
      await shell.start(10_000);
      try {
        shell.resize(120, 40);
        assert.equal((await shell.run('stty size </dev/tty', 10_000)).stdout, '40 120\n');
        // A run that waits for its SIGWINCH, says on stderr when its trap is set, then prints
        // the size it sees: resized at that word.
        let stdout = '';
        await shell.run(
          {
            command:
              "(trap 'stty size </dev/tty; exit' WINCH; echo ready >&2; while :; do sleep 0.05; done)",
            stdout: {
              write(chunk: Buffer) {
                stdout += chunk;
              },
            },
            stderr: { write: (chunk: Buffer) => chunk.includes('ready') && shell.resize(90, 20) },
          },
          10_000,
        );
        assert.equal(stdout, '20 90\n');
        assert.throws(() => shell.resize(0, 10), ArgumentError);
      } finally {
        await shell.close();
      }
      assert.throws(() => shell.resize(80, 24), StateError);
    });

    test('python: the driver writes to a terminal; statuses per run; stop() ends it', async () => {
      const shell = Shell.python({ transport: transport(), pty: true });
      await shell.start(10_000);
      try {
        const first = await shell.run('import sys, os\nprint(sys.stdout.isatty())\n6*7', 10_000);
        assert.deepEqual([first.stdout, first.exitCode], ['True\n42\n', 0]);
        const size = await shell.run('os.get_terminal_size()', 10_000);
        assert.equal(size.stdout, 'os.terminal_size(columns=80, lines=24)\n');
        const failed = await shell.run('1/0', 10_000);
        assert.equal(failed.exitCode, 1);
        assert.match(failed.stderr, /ZeroDivisionError: division by zero\n$/);
        await shell.stop(10_000);
      } finally {
        await shell.close();
      }
    });

    test('interactive bash: commands read the terminal, write() answers them, unread input is dropped', async () => {
      const shell = Shell.posix({
        program: 'bash',
        transport: transport(),
        pty: { interactive: true },
      });
      await shell.start(10_000);
      try {
        assert.throws(() => shell.write('early\n'), StateError, 'no run is out');
        const asked = shell.run(
          'test -t 0 && test -t 1 && echo both-tty; read -r x; echo "got $x"',
          10_000,
        );
        shell.write('hello world\n');
        assert.deepEqual(await asked, {
          command: 'test -t 0 && test -t 1 && echo both-tty; read -r x; echo "got $x"',
          exitCode: 0,
          stdout: 'both-tty\ngot hello world\n',
          stderr: '',
        });
        // What a run leaves unread is neither run as a command nor taken for the next run.
        const first = shell.run('read -r a; echo "a=$a"', 10_000);
        shell.write('one\necho INJECTED; exit 9\n');
        assert.equal((await first).stdout, 'a=one\n');
        const next = await shell.run('echo next', 10_000);
        assert.deepEqual([next.stdout, next.stderr, next.exitCode], ['next\n', '', 0]);
        // A program that changes the terminal's modes: they are put back after its run, so
        // the next run is neither echoed nor cut into lines.
        assert.equal((await shell.run('stty echo icanon; false', 10_000)).exitCode, 1);
        const modes = await shell.run('echo "$?"; stty -a', 10_000);
        assert.match(modes.stdout, /^1\n/);
        assert.match(modes.stdout, / -icanon /);
        assert.match(modes.stdout, / -echo /);
        // A program reading its terminal, with its own stderr and status.
        const python = shell.run(
          `python3 -c "import sys; print(input('name? '), sys.stdin.isatty()); sys.exit(4)"`,
          10_000,
        );
        shell.write('bob\n');
        const answered = await python;
        assert.deepEqual([answered.stdout, answered.exitCode], ['bob True\n', 4]);
        assert.throws(() => shell.write('a\0b'), ArgumentError);
        await shell.stop(10_000);
        assert.equal(shell.state, 'off');
      } finally {
        await shell.close();
      }
    });

    test('interactive python: input() reads the terminal; each run keeps its status', async () => {
      const shell = Shell.python({ transport: transport(), pty: { interactive: true } });
      await shell.start(10_000);
      try {
        const asked = shell.run(
          'import sys\nname = input()\nprint(name, sys.stdin.isatty())',
          10_000,
        );
        shell.write('ada\nleft over\n');
        assert.deepEqual([(await asked).stdout, (await asked).exitCode], ['ada True\n', 0]);
        const failed = await shell.run('1/0', 10_000);
        assert.equal(failed.exitCode, 1);
        assert.match(failed.stderr, /ZeroDivisionError/);
        // A run that turns echo on: the driver's next request is not echoed.
        await shell.run(
          'import termios\nm = termios.tcgetattr(0)\nm[3] |= termios.ECHO | termios.ICANON\ntermios.tcsetattr(0, termios.TCSANOW, m)',
          10_000,
        );
        const after = await shell.run('print(6*7)', 10_000);
        assert.deepEqual([after.stdout, after.exitCode], ['42\n', 0]);
        await shell.stop(10_000);
      } finally {
        await shell.close();
      }
    });

    test("stop(command) runs it, and the shell ends with that command's status", async () => {
      const shell = Shell.posix({ program: 'bash', transport: transport(), pty: true });
      await shell.start(10_000);
      await assert.rejects(shell.stop(10_000, 'exit 4'), { code: 'PROCSOCK_SHELL_CRASH' });
      assert.equal(shell.state, 'off');
      await shell.close();
    });
  });
}

describe('Shell on a terminal where there is none', {
  skip: native && "the child_process backend's case: runs in the child_process pass",
}, () => {
  test('start() rejects with UnsupportedOptionError (child_process cannot give one)', async () => {
    const shell = Shell.posix({ program: 'bash', pty: true });
    await assert.rejects(shell.start(10_000), (error) => {
      assert.ok(error instanceof UnsupportedOptionError, String(error));
      assert.equal(error.option, 'pty');
      return true;
    });
    assert.equal(shell.state, 'off');
    await shell.close();
  });
});

test('an interactive terminal needs bash or python; write() needs one', {
  skip: !native && 'the native backend only: runs in the native pass',
}, async () => {
  assert.throws(() => Shell.node({ pty: { interactive: true } }), /reads its requests ahead/);
  assert.throws(() => Shell.posix({ pty: { interactive: 1 as never } }), {
    code: 'PROCSOCK_ARGUMENT',
  });
  const plain = Shell.posix({ program: 'bash', pty: true });
  assert.throws(() => plain.write('x\n'), /interactive: true/);
  if (spawnSync('dash', ['-c', 'true']).status === 0) {
    // dash would read the input typed for a command ahead, as its script: refused once known.
    const dash = Shell.posix({ program: 'dash', pty: { interactive: true } });
    await assert.rejects(dash.start(10_000), { code: 'PROCSOCK_ARGUMENT', message: /bash only/ });
    assert.equal(dash.state, 'off');
    await dash.close();
  }
});

test('resize() without a terminal is an ArgumentError saying how to get one', () => {
  assert.throws(() => Shell.posix({ program: 'sh' }).resize(80, 24), /pty: true/);
});

test('presets that cannot run on a terminal, and terminal options a Shell decides, are refused at once', () => {
  assert.throws(() => Shell.sqlite({ pty: true }), { code: 'PROCSOCK_ARGUMENT' });
  assert.throws(() => Shell.posix({ pty: { stderr: 'pty' } as never }), /stderr on its own pipe/);
  assert.throws(() => Shell.posix({ pty: { raw: false } as never }), /always raw/);
  assert.throws(() => Shell.posix({ pty: { columns: 0 } }), { code: 'PROCSOCK_ARGUMENT' });
});

/**
 * `Shell` on a terminal (ShellOptions.pty), locally and through the daemon: bash, sh and
 * python write to a real terminal (isatty, the window size through /dev/tty) while each run
 * keeps its own stdout, stderr and status, and stop() ends the program although a raw
 * terminal has no end of file. Where there can be no terminal (child_process), start()
 * rejects with a typed error; presets that cannot run on one are refused at once.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import { spawnBackendInUse } from '../../src/channel/local.js';
import { UnsupportedOptionError } from '../../src/errors.js';
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

  describe(`Shell on a terminal, ${where}`, { skip: !native }, () => {
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

    test("stop(command) runs it, and the shell ends with that command's status", async () => {
      const shell = Shell.posix({ program: 'bash', transport: transport(), pty: true });
      await shell.start(10_000);
      await assert.rejects(shell.stop(10_000, 'exit 4'), { code: 'PROCSOCK_SHELL_CRASH' });
      assert.equal(shell.state, 'off');
      await shell.close();
    });
  });
}

describe('Shell on a terminal where there is none', { skip: native }, () => {
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

test('presets that cannot run on a terminal, and terminal options a Shell decides, are refused at once', () => {
  assert.throws(() => Shell.sqlite({ pty: true }), { code: 'PROCSOCK_ARGUMENT' });
  assert.throws(() => Shell.posix({ pty: { stderr: 'pty' } as never }), /stderr on its own pipe/);
  assert.throws(() => Shell.posix({ pty: { raw: false } as never }), /always raw/);
  assert.throws(() => Shell.posix({ pty: { columns: 0 } }), { code: 'PROCSOCK_ARGUMENT' });
});

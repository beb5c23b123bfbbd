/**
 * `procsock shell`, the built CLI as a separate process fed a script on a pipe: locally and
 * through a real daemon. Each command's output then `[exit N]`; state kept between lines;
 * `exit N`; the exit status at end of input; a non-POSIX program with its own sentinel;
 * usage errors, timeout, no daemon.
 */
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { finished, runCli, spawnCli, stdoutUntil, testChildren } from '../helpers/cli.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { isAlive, tempDir, waitUntil } from '../helpers/process.js';

const FAKEDB = fileURLToPath(new URL('../fixtures/fakedb.mjs', import.meta.url));
const oneLine = (text: string) => assert.match(text, /^procsock shell: [^\n]+\n$/);

describe('procsock shell: arguments', () => {
  test('--help prints the usage with examples, exit 0', async () => {
    const { status, stdout } = await runCli(['shell', '--help']);
    assert.equal(status, 0);
    assert.match(stdout, /^usage: procsock shell /);
    assert.match(stdout, /Examples:\n {2}procsock shell -- bash/);
  });

  for (const [args, reason] of [
    [['--bogus', '--', 'sh'], /Unknown option '--bogus'/],
    [[], /missing PROG/],
    [['--timeout=-1', '--', 'sh'], /--timeout: expected whole milliseconds/],
    [
      ['--', 'awk'],
      /awk is not sh, bash, dash, zsh, python3, node or sqlite3: give --sentinel-command/,
    ],
    [['--sentinel-command', 'version;', '--', 'x'], /go together/],
    [['--terminator', ';', '--', 'sh'], /--terminator needs --sentinel-command/],
  ] as const) {
    test(`usage error, exit 100: shell ${args.join(' ')}`, async () => {
      const { status, stdout, stderr } = await runCli(['shell', ...args], { input: 'echo x\n' });
      assert.equal(status, 100);
      assert.equal(stdout, '');
      oneLine(stderr);
      assert.match(stderr, reason);
    });
  }

  test('no daemon at --socket: one line, exit 111', async () => {
    const dir = tempDir();
    const { status, stdout, stderr } = await runCli(
      ['shell', '--socket', dir.path('none.sock'), '--', 'sh'],
      { input: 'echo never\n' },
    );
    dir.cleanup();
    assert.equal(status, 111);
    assert.equal(stdout, '');
    oneLine(stderr);
  });
});

for (const where of ['local', 'daemon'] as const) {
  describe(`procsock shell (${where})`, () => {
    let daemon: TestDaemon | null = null;
    let target: string[];
    let childrenBefore: number;

    before(async () => {
      childrenBefore = testChildren().length;
      if (where === 'daemon') daemon = await startDaemon({ killTimeout: 500 });
      target = daemon ? ['--socket', daemon.path] : [];
    });
    after(async () => {
      await daemon?.close();
      assert.equal(testChildren().length, childrenBefore, 'every CLI and shell was reaped');
    });

    test('each line runs in the same shell; its output, then [exit N]', async () => {
      const script = [
        'cd /',
        'greeting=hello; pwd',
        'echo "$greeting"',
        'false',
        'echo "previous: $?"',
        'printf no-newline',
        '',
        'echo one \\',
        '  two',
        'echo to-stderr >&2',
      ].join('\n');
      const { status, stdout, stderr } = await runCli(['shell', ...target, '--', 'sh'], {
        input: `${script}\n`,
      });
      assert.equal(
        stdout,
        [
          '[exit 0]',
          '/',
          '[exit 0]',
          'hello',
          '[exit 0]',
          '[exit 1]',
          'previous: 1',
          '[exit 0]',
          'no-newline',
          '[exit 0]',
          'one two',
          '[exit 0]',
          '[exit 0]',
          '',
        ].join('\n'),
      );
      assert.equal(stderr, 'to-stderr\n');
      assert.equal(status, 0);
    });

    test('at end of input, the exit status is the last command’s', async () => {
      const { status, stdout } = await runCli(['shell', ...target, '--', 'bash'], {
        input: 'echo a\n(exit 3)\n',
      });
      assert.equal(stdout, 'a\n[exit 0]\n[exit 3]\n');
      assert.equal(status, 3);
    });

    test('"exit N" ends the shell with N; later lines are not run', async () => {
      const { status, stdout } = await runCli(['shell', ...target, '--', 'sh'], {
        input: 'echo before\nexit 4\necho after\n',
      });
      assert.equal(stdout, 'before\n[exit 0]\n');
      assert.equal(status, 4);
    });

    test('whole commands: a loop over lines, a function, a here-document body never run', async () => {
      const dir = tempDir();
      const canary = dir.path('CANARY');
      const script = [
        'for i in 1 2; do',
        '  echo "i=$i"',
        'done',
        'greet() {',
        '  echo "hello $1"',
        '}',
        'greet you',
        'cat <<EOF',
        `touch ${canary}`,
        'EOF',
        "echo 'two",
        "lines'",
        'false',
      ].join('\n');
      // Every shell locally; through the daemon (the same code path) bash only, for time.
      for (const shell of where === 'local' ? ['bash', 'dash', 'zsh'] : ['bash']) {
        const { status, stdout, stderr } = await runCli(['shell', ...target, '--', shell], {
          input: `${script}\n`,
        });
        assert.equal(
          stdout,
          `i=1\ni=2\n[exit 0]\n[exit 0]\nhello you\n[exit 0]\ntouch ${canary}\n[exit 0]\ntwo\nlines\n[exit 0]\n[exit 1]\n`,
          `${shell}: ${stderr}`,
        );
        assert.equal(stderr, '');
        assert.equal(status, 1);
        assert.ok(!existsSync(canary), 'the here-document body did not run');
      }
      dir.cleanup();
    });

    test('the shell ending itself: its own status, not 125', async () => {
      for (const [script, expected] of [
        ['echo a\nfalse || exit 4\necho never\n', 4],
        ['set -e\nfalse\necho never\n', 1],
      ] as const) {
        const { status, stdout } = await runCli(['shell', ...target, '--', 'bash'], {
          input: script,
        });
        assert.equal(status, expected);
        assert.ok(!stdout.includes('never'));
      }
    });

    test('python3 and node get whole statements: a block, a function, an open bracket, a chain', async () => {
      const python = [
        'for i in range(2):',
        '    print(i)',
        '',
        '    print("in")',
        'class A:',
        '    def f(self):',
        '        return 2',
        '',
        '    def g(self):',
        '        return 3',
        'A().g()',
        'def h(',
        '    a):',
        '    return a + 1',
        'if h(1) > 5:',
        '    print("big")',
        'else:',
        '    print("small")',
        's = """a',
        'b"""',
        'raise ValueError("bad")',
        'print(len(s))',
      ].join('\n');
      const node = [
        'const x = 1',
        'function f(a) {',
        '  return a + 1',
        '}',
        'Promise.resolve(f(x))',
        '  .then((v) => v * 2)',
        'if (x > 5) {',
        "  console.log('big')",
        '}',
        'else {',
        "  console.log('small')",
        '}',
        'const s = `a',
        'b`',
        "throw new Error('bad')",
        's.length',
      ].join('\n');
      for (const [program, script, expected, error] of [
        [
          'python3',
          python,
          '0\nin\n1\nin\n[exit 0]\n[exit 0]\n3\n[exit 0]\n[exit 0]\nsmall\n[exit 0]\n[exit 0]\n[exit 1]\n3\n[exit 0]\n',
          /^Traceback \(most recent call last\):\n {2}File "<procsock>", line 1, in <module>\nValueError: bad\n$/,
        ],
        [
          'node',
          node,
          '[exit 0]\n[exit 0]\n4\n[exit 0]\nsmall\n[exit 0]\n[exit 0]\n[exit 1]\n3\n[exit 0]\n',
          /^<procsock>:1\nthrow new Error\('bad'\)\n\^\n\nError: bad\n/,
        ],
      ] as const) {
        const { status, stdout, stderr } = await runCli(['shell', ...target, '--', program], {
          input: `${script}\n`,
        });
        assert.equal(stdout, expected, `${program}: ${stderr}`);
        assert.match(stderr, error);
        assert.equal(status, 0);
      }
    });

    test('sqlite3 gets its preset: statements, dot-commands, errors on stderr', async () => {
      const { status, stdout, stderr } = await runCli(['shell', ...target, '--', 'sqlite3'], {
        input:
          'create table t(a);\ninsert into t values (7) -- comment\nselect a from t\n.print hi\nselec;\n',
      });
      assert.equal(stdout, '[done]\n[done]\n7\n[done]\nhi\n[done]\n[done]\n');
      assert.match(stderr, /syntax error/);
      assert.equal(status, 0);
    });

    test('a command reading stdin gets end of file, not the next lines', async () => {
      const { stdout } = await runCli(['shell', ...target, '--', 'sh'], {
        input: 'cat\nread x; echo "read: $? [$x]"\necho next\n',
      });
      assert.equal(stdout, '[exit 0]\nread: 1 []\n[exit 0]\nnext\n[exit 0]\n');
    });

    test('another program, with its own sentinel: fresh {marker} per command, [done]', async () => {
      const { status, stdout } = await runCli(
        [
          'shell',
          ...target,
          '--sentinel-command',
          'echo {marker}',
          '--sentinel-value',
          '{marker}',
          '--terminator',
          ';',
          '--',
          process.execPath,
          FAKEDB,
        ],
        { input: 'insert ada\ninsert bob;\nselect\n' },
      );
      assert.equal(
        stdout,
        'inserted ada (row 1)\n[done]\ninserted bob (row 2)\n[done]\n1|ada\n2|bob\n[done]\n',
      );
      assert.equal(status, 0);
    });

    test('--timeout: a command running too long kills the shell; exit 124', async () => {
      const child = spawnCli(['shell', ...target, '--timeout', '300', '--', 'sh']);
      const result = finished(child);
      child.stdin!.end('echo $$\nsleep 30\necho never\n');
      const pid = Number((await stdoutUntil(child, '\n')).split('\n')[0]);
      const { status, stdout, stderr } = await result;
      assert.equal(status, 124);
      assert.equal(stdout, `${pid}\n[exit 0]\n`);
      oneLine(stderr);
      assert.match(stderr, /did not finish within 300 ms/);
      await waitUntil(() => !isAlive(pid), 'the shell is gone');
    });

    test('SIGTERM to procsock kills the shell; exit 143', async () => {
      const child = spawnCli(['shell', ...target, '--', 'sh']);
      const result = finished(child);
      child.stdin!.write('echo $$\n'); // stdin stays open: procsock waits for more lines
      const pid = Number((await stdoutUntil(child, '[exit 0]\n')).split('\n')[0]);
      child.kill('SIGTERM');
      assert.equal((await result).status, 143);
      await waitUntil(() => !isAlive(pid), 'the shell is gone');
    });
  });
}

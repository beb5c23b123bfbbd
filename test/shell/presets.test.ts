/**
 * The REPL presets (issue 14): Python, Node and SQLite, locally and through a daemon, with
 * the POSIX preset's guarantees — marker per run, stderr per run, a status where the
 * program has one, multi-line input, a clear error on a syntax error, no hang.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { ArgumentError, ShellCrashError } from '../../src/errors.js';
import { SentinelFraming } from '../../src/shell/framing.js';
import { Shell, type ShellOptions } from '../../src/shell/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';

const has = (program: string) => spawnSync(program, ['--version']).status === 0;
const skip = (program: string) => (has(program) ? false : `${program} is not installed`);

for (const kind of ['local', 'daemon'] as const) {
  describe(`REPL presets over ${kind === 'local' ? 'a local child' : 'the daemon'}`, () => {
    let daemon: TestDaemon | undefined;
    before(async () => {
      if (kind === 'daemon') daemon = await startDaemon({ timeout: 0, killTimeout: 300 });
    });
    after(async () => {
      await daemon?.close();
    });
    // The daemon keeps its own grace (-k); a killTimeout through it would be refused.
    const options = (): Partial<ShellOptions> =>
      daemon ? { transport: { socket: daemon.path } } : { killTimeout: 300 };

    test('python: blocks without a closing blank line, state, exceptions, syntax errors', {
      skip: skip('python3'),
    }, async () => {
      const py = Shell.python(options());
      await py.start(10_000);
      const block = await py.run('total = 0\nfor i in range(3):\n    total += i\n    print(i)');
      assert.deepEqual([block.stdout, block.stderr, block.exitCode], ['0\n1\n2\n', '', 0]);
      assert.deepEqual(
        [(await py.run('total')).stdout, (await py.run('total')).exitCode],
        ['3\n', 0],
      );
      const error = await py.run('print("before")\n1/0');
      assert.equal(error.stdout, 'before\n');
      assert.equal(error.exitCode, 1);
      assert.match(
        error.stderr,
        /^Traceback[\s\S]*File "<procsock>", line 2[\s\S]*ZeroDivisionError/,
      );
      assert.ok(!error.stderr.includes('main'), 'the driver is not in the traceback');
      const syntax = await py.run('def f(:\n  pass');
      assert.deepEqual([syntax.stdout, syntax.exitCode], ['', 1]);
      assert.match(syntax.stderr, /SyntaxError/);
      // stdin is empty; output printed by the code, even a marker-looking line, is just output.
      assert.match((await py.run('input()')).stderr, /EOFError/);
      const tricky = await py.run('import sys; print("x", end=""); print("e", file=sys.stderr)');
      assert.deepEqual([tricky.stdout, tricky.stderr, tricky.exitCode], ['x', 'e\n', 0]);
      await assert.rejects(py.run('raise SystemExit(4)'), (e: ShellCrashError) => e.exitCode === 4);
      await py.start(10_000);
      await py.stop(5000);
    });

    test('node: state in one global scope, values shown, exceptions and syntax errors', {
      skip: skip('node'),
    }, async () => {
      const js = Shell.node(options());
      await js.start(10_000);
      await js.run('let n = 2;\nfunction twice(x) {\n  return 2 * x;\n}');
      assert.deepEqual(
        [(await js.run('twice(n)')).stdout, (await js.run('n')).exitCode],
        ['4\n', 0],
      );
      assert.equal((await js.run('Promise.resolve("done")')).stdout, "'done'\n");
      const error = await js.run('console.log("before"); throw new Error("boom")');
      assert.deepEqual([error.stdout, error.exitCode], ['before\n', 1]);
      assert.match(error.stderr, /Error: boom\n\s+at <procsock>:1/);
      const syntax = await js.run('function (');
      assert.equal(syntax.exitCode, 1);
      assert.match(syntax.stderr, /SyntaxError/);
      assert.equal((await js.run('require("node:os").EOL')).stdout, "'\\n'\n");
      // A run that closes the requests' descriptor ends the driver (exit 70): the next run fails
      // at once with a crash (it used to wait for ever), and the shell starts again.
      await js.run('require("node:fs").closeSync(3)');
      await assert.rejects(js.run('1', 10_000), (error: ShellCrashError) => {
        assert.ok(error instanceof ShellCrashError, String(error));
        // Its line (stderr between runs) is quoted where it is read before the exit (locally).
        assert.equal(error.exitCode, 70);
        return true;
      });
      await js.start(10_000);
      await js.stop(5000);
    });

    test('sqlite: statements and dot-commands, errors per statement on stderr, no hang', {
      skip: skip('sqlite3'),
    }, async () => {
      const db = Shell.sqlite(options());
      await db.start(10_000);
      await db.run("create table t(a);\ninsert into t values (1), ('two') -- a trailing comment");
      const rows = await db.run('select a from t -- comment, no terminator');
      assert.deepEqual([rows.stdout, rows.stderr, rows.exitCode], ['1\ntwo\n', '', null]);
      assert.equal((await db.run('.print hello')).stdout, 'hello\n'); // no terminator appended
      const bad = await db.run('selec 1;');
      assert.equal(bad.stdout, '');
      assert.match(bad.stderr, /syntax error/);
      assert.match((await db.run('.nosuchcommand')).stderr, /unknown command/); // not drained
      assert.equal((await db.run('select count(*) from t;')).stdout, '2\n');
      await assert.rejects(
        db.run("select 'unterminated"),
        (e: ArgumentError) =>
          e instanceof ArgumentError && /ends inside a string literal/.test(e.message),
      );
      assert.equal(db.state, 'idle');
      await db.run('.echo on');
      const echoed = await db.run('select 3;');
      assert.ok(echoed.stdout.includes('3\n'));
      assert.equal((await db.run('.echo off')).stderr, '');
      assert.equal((await db.run('select 4;')).stdout, '4\n');
      await db.stop(5000); // sqlite3 exits 1 after any error: still a clean stop
    });
  });
}

describe('hand-written sentinels with a terminator', () => {
  test('the terminator goes after a -- comment on its own line, never after a dot-command', () => {
    const framing = new SentinelFraming(';', { command: 'select 1', value: '1' }, null);
    assert.equal(framing.terminate('select 1 -- why'), 'select 1 -- why\n;\n');
    assert.equal(framing.terminate('.print hello'), '.print hello\n');
    assert.equal(framing.terminate('select 1'), 'select 1;\n');
  });
});

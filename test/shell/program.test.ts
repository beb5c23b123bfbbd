/**
 * The driver with programs that are not POSIX shells: our fake database CLI (statements
 * ended by `;`, hand-written sentinels) and bash with a plain sentinel; plus leak checks.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ShellCrashError, ShellTimeoutError } from '../../src/errors.js';
import { RecallCommander, Shell, type ShellOptions } from '../../src/shell/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { childrenOf, isAlive, openFdCount, waitUntil } from '../helpers/process.js';

const FAKEDB = fileURLToPath(new URL('../fixtures/fakedb.mjs', import.meta.url));
const VERSION = { command: 'version', value: 'fakedb 1.2.3' };
const UNKNOWN = { command: 'rumpelstiltskin', value: 'fakedb: unknown command: rumpelstiltskin' };

for (const kind of ['local', 'daemon'] as const) {
  describe(`fake database CLI over ${kind === 'local' ? 'a local child' : 'the daemon'}`, () => {
    let daemon: TestDaemon | undefined;
    before(async () => {
      if (kind === 'daemon') daemon = await startDaemon({ timeout: 0, killTimeout: 300 });
    });
    after(async () => {
      await daemon?.close();
    });

    const fakedb = (flags: string[] = [], options: Partial<ShellOptions> = {}) =>
      new Shell({
        program: process.execPath,
        args: [FAKEDB, ...flags],
        terminator: ';',
        sentinel: VERSION,
        stderrSentinel: UNKNOWN,
        // The daemon keeps its own grace (-k); a killTimeout through it would be refused.
        ...(daemon ? { transport: { socket: daemon.path } } : { killTimeout: 300 }),
        ...options,
      });

    test('keeps state across commands; `;` added; multi-line statements; stderr parsed', async () => {
      const db = fakedb(['--rows', '1']);
      await db.start(10_000);
      await db.run('insert ada');
      await db.run('insert\ngrace hopper;');
      const rows = new RecallCommander('select');
      await db.run(rows);
      assert.deepEqual(rows.stdoutLines, ['1|row1', '2|ada', '3|grace hopper']);
      const bad = new RecallCommander('frobnicate');
      await db.run(bad);
      assert.deepEqual(bad.stdoutLines, []);
      assert.deepEqual(bad.stderrLines, ['fakedb: unknown command: frobnicate']);
      const result = await db.run('count');
      assert.deepEqual([result.stdout, result.exitCode], ['3\n', null]);
      await db.stop(5000, 'quit');
      assert.equal(db.state, 'off');
    });

    test('failing at start: ShellCrashError with its message', async () => {
      const db = fakedb(['--fail-at-start']);
      await assert.rejects(db.start(10_000), (error: ShellCrashError) => {
        assert.ok(error instanceof ShellCrashError);
        assert.match(error.message, /exited with code 2 before answering .*disk on fire/);
        return true;
      });
      assert.equal(db.state, 'off');
    });

    test('an error on a row with --exit-on-error: crash; without: reported, shell usable', async () => {
      // Here an unknown command would exit, so the stderr sentinel is a warning instead.
      const strict = fakedb(['--rows', '3', '--fail-on-row', '2', '--exit-on-error'], {
        stderrSentinel: { command: 'warn end-of-stderr', value: 'end-of-stderr' },
      });
      await strict.start(10_000);
      const rows = new RecallCommander('select');
      await assert.rejects(
        strict.run(rows),
        /exited with code 1 while running "select".*row 2 is corrupt/,
      );
      assert.deepEqual(rows.stdoutLines, ['1|row1']);
      assert.equal(strict.state, 'off');

      const lenient = fakedb(['--rows', '3', '--fail-on-row', '2']);
      await lenient.start(10_000);
      const result = await lenient.run('select');
      assert.deepEqual([result.stdout, result.stderr], ['1|row1\n', 'fakedb: row 2 is corrupt\n']);
      assert.equal((await lenient.run('count')).stdout, '3\n');
      await lenient.stop(5000);
    });

    test('slow: a run past its timeout kills the program; start works again', async () => {
      const db = fakedb(['--slow', '100']);
      await db.start(10_000);
      await assert.rejects(db.run('sleep 5000', 300), ShellTimeoutError);
      assert.equal(db.state, 'off');
      await db.start(10_000);
      assert.equal((await db.run('echo still here')).stdout, 'still here\n');
      await db.stop(5000);
    });

    test('a per-run marker sentinel: output equal to a fixed sentinel value is just output', async () => {
      const db = fakedb([], {
        sentinel: (marker) => ({ command: `echo ${marker}`, value: marker }),
        stderrSentinel: (marker) => ({
          command: marker,
          value: `fakedb: unknown command: ${marker}`,
        }),
      });
      await db.start(10_000);
      const result = await db.run('version');
      assert.equal(result.stdout, 'fakedb 1.2.3\n');
      assert.equal(
        (await db.run('echo fakedb: unknown command: x')).stdout,
        'fakedb: unknown command: x\n',
      );
      await db.stop(5000);
    });
  });
}

describe('bash with a plain sentinel', () => {
  test('without a stderr sentinel, stderr is drained: 1 MB of it cannot block the shell', async () => {
    const shell = new Shell({
      program: 'bash',
      sentinel: { command: 'echo __done__', value: '__done__' },
    });
    await shell.start(5000);
    const result = await shell.run('head -c 1000000 /dev/zero >&2; echo ok');
    assert.deepEqual([result.stdout, result.stderr, result.exitCode], ['ok\n', '', null]);
    await shell.stop(5000);
  });
});

describe('leaks', () => {
  test('start/run/stop, timeouts and crashes leave no descriptor and no child behind', async () => {
    const cycle = async () => {
      const shell = Shell.posix({ program: 'bash', killTimeout: 300 });
      await shell.start(5000);
      await shell.run('echo hi; sleep 0.01 & wait');
      await shell.stop(5000);
      await shell.start(5000);
      const pid = shell.pid!;
      await assert.rejects(shell.run('sleep 30 & sleep 30', 100), ShellTimeoutError);
      assert.ok(!isAlive(pid));
      await shell.start(5000);
      await assert.rejects(shell.run('exit 9'), ShellCrashError);
    };
    await cycle(); // warm up: lazily opened descriptors (the native backend, timers) stay
    const fds = openFdCount();
    const earlier = new Set(childrenOf().map((child) => child.pid)); // tsx's esbuild, say
    for (let i = 0; i < 3; i++) await cycle();
    await waitUntil(
      () => openFdCount() <= fds,
      `descriptors back to ${fds} (now ${openFdCount()})`,
      5000,
    );
    const children = childrenOf().filter((child) => !earlier.has(child.pid));
    assert.deepEqual(children, [], 'no child (live or zombie) is left');
  });
});

/**
 * The POSIX preset against the state users build up in their shells (issue 14, items 1–5, 8,
 * 10): strict modes, traps, `set -vx`, history, aliases and functions named like the
 * builtins the framing uses, an IFS of digits, stderr redirected for good. Every shell
 * installed (bash, dash, zsh), run locally (stderr read at the stdout marker), locally with
 * a stderr marker (a transport whose channels cannot read pending output), and through a daemon.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { spawnBackendInUse } from '../../src/channel/local.js';
import { ShellCrashError } from '../../src/errors.js';
import { Shell, type ShellResult } from '../../src/shell/index.js';
import type { PosixStderr } from '../../src/shell/posix.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { markers, recordingTransport } from './transports.js';

const KILL_TIMEOUT = 300;
const native = spawnBackendInUse() === 'native';
const SHELLS = ['bash', 'dash', 'zsh'].filter(
  (program) => spawnSync(program, ['-c', 'true']).status === 0,
);

const KINDS = ['local', 'local with a stderr marker', 'daemon', 'an interactive terminal'] as const;
for (const kind of KINDS) {
  // The terminal (its commands' stdin too) is bash's only, and the native backend's.
  const terminal = kind === 'an interactive terminal';
  const shells = terminal ? SHELLS.filter((program) => program === 'bash') : SHELLS;
  describe(`hostile shell state, over ${kind}`, {
    skip: terminal && !native && 'a terminal needs the native backend: runs in the native pass',
  }, () => {
    let daemon: TestDaemon | undefined;
    before(async () => {
      if (kind === 'daemon') {
        daemon = await startDaemon({ timeout: 0, killTimeout: KILL_TIMEOUT, processGroup: true });
      }
    });
    after(async () => {
      await daemon?.close();
    });

    /** A started shell; `check` runs a command and proves no marker leaked into any output. */
    async function open(program: string, stderr: PosixStderr = 'capture') {
      // A LocalChannel reads its stderr pipe at the stdout marker; any other channel (here one
      // that re-emits the output byte by byte) needs the stderr marker.
      const recording = recordingTransport(daemon?.path, {
        byteSplit: kind === 'local with a stderr marker',
      });
      const shell = Shell.posix({
        program,
        stderr,
        transport: recording.transport,
        ...(terminal ? { pty: { interactive: true } } : {}),
        // The daemon keeps its own grace (-k); a killTimeout through it would be refused.
        ...(kind === 'daemon' ? {} : { killTimeout: KILL_TIMEOUT }),
      });
      await shell.start(5000);
      const outputs: string[] = [];
      const run = async (command: string): Promise<ShellResult> => {
        const result = await shell.run(command, 10_000);
        outputs.push(result.stdout, result.stderr);
        return result;
      };
      const noMarkerLeaked = () => {
        const written = markers(recording.written);
        assert.ok(written.length > outputs.length / 2, 'every run wrote a marker');
        for (const marker of written) {
          for (const output of outputs) assert.ok(!output.includes(marker), 'a marker leaked');
        }
      };
      return { shell, run, noMarkerLeaked };
    }
    const status = async (run: (c: string) => Promise<ShellResult>, command: string) =>
      (await run(command)).exitCode;

    for (const program of shells) {
      const bashLike = program !== 'dash';

      test(`${program}: set -eu(o pipefail): exempt failures are results; a real one ends the shell as in a script`, async () => {
        const { shell, run } = await open(program);
        await run(`set -eu${program === 'dash' ? '' : ' -o pipefail'}`);
        assert.deepEqual(
          { ...(await run('[ -f /nope ] && echo y')) },
          { command: '[ -f /nope ] && echo y', exitCode: 1, stdout: '', stderr: '' },
        );
        assert.equal(await status(run, '! true'), 1);
        assert.equal((await run('echo "$?"')).stdout, '1\n'); // restored under set -e
        assert.equal(await status(run, 'f() { return 3; }; f && :'), 3);
        assert.equal((await run('echo "$?"')).stdout, '3\n');
        if (program !== 'dash') assert.equal(await status(run, 'g() { false | true; }; g && :'), 1); // pipefail
        await assert.rejects(run('false; echo not reached'), (error: ShellCrashError) => {
          assert.ok(error instanceof ShellCrashError);
          assert.equal(error.exitCode, 1);
          return true;
        });
        await shell.close();
      });

      if (bashLike) {
        test(`${program}: an ERR trap fires once per failed command, never for the driver's`, async () => {
          const { shell, run } = await open(program);
          await run("trap 'echo ERR >&2' ERR");
          assert.deepEqual(
            [(await run('false')).stderr, (await run('true')).stderr],
            ['ERR\n', ''],
          );
          const exempt = await run('[ -f /nope ] && echo y');
          assert.deepEqual([exempt.exitCode, exempt.stderr], [1, '']);
          const three = await run('f() { return 3; }; f');
          assert.deepEqual([three.exitCode, three.stderr], [3, 'ERR\n']);
          assert.deepEqual(
            [(await run('echo "$?"')).stdout, (await run('set -e; true')).stderr],
            ['3\n', ''],
          );
          await shell.stop(5000);
        });
      }

      test(`${program}: set -v and set -x, stderr merged, never forge the marker`, async () => {
        const { shell, run, noMarkerLeaked } = await open(program, 'merge');
        await run('set -v');
        const one = await run('echo one');
        assert.match(one.stdout, /^(.*\n)*one\n(.*\n)*$/);
        assert.equal(one.exitCode, 0);
        assert.equal(await status(run, 'false'), 1);
        const two = await run('echo two');
        assert.ok(two.stdout.includes('two\n') && !two.stdout.includes('one'));
        await run('set +v; set -x');
        const three = await run('echo three; (exit 4)');
        assert.ok(three.stdout.includes('three\n'));
        assert.equal(three.exitCode, 4);
        const four = await run('echo four');
        assert.ok(four.stdout.includes('four\n') && !four.stdout.includes('three'));
        assert.equal(four.exitCode, 0);
        noMarkerLeaked();
        await shell.stop(5000);
      });

      test(`${program}: a trap that prints each command, and history, never forge the marker`, {
        skip: bashLike ? false : 'dash has no DEBUG trap and no history',
      }, async () => {
        const { shell, run, noMarkerLeaked } = await open(program);
        const debug =
          program === 'bash'
            ? `trap 'echo "$BASH_COMMAND"' DEBUG`
            : `trap 'print -r -- "$ZSH_DEBUG_CMD"' DEBUG`;
        if (program === 'bash') {
          await run('set -o history');
          assert.equal(await status(run, 'history 1'), 0);
          assert.equal((await run('echo after')).stdout, 'after\n');
        }
        await run(debug);
        const hi = await run('echo hi; false');
        assert.ok(hi.stdout.includes('hi\n'));
        assert.equal(hi.exitCode, 1);
        const next = await run('echo there');
        assert.ok(next.stdout.includes('there\n') && !next.stdout.includes('hi'));
        noMarkerLeaked();
        await shell.stop(5000);
      });

      test(`${program}: aliases named like the framing's words capture nothing`, async () => {
        const { shell, run } = await open(program);
        if (program === 'bash') await run('shopt -s expand_aliases');
        const names = ['eval', 'echo', 'printf', 'command', 'builtin', 'false', 'unset', 'return'];
        const global = program === 'zsh' ? '-g ' : '';
        await run(names.map((name) => `alias ${global}${name}='exit 99;'`).join('\n'));
        assert.equal(await status(run, '(exit 3)'), 3);
        assert.equal(await status(run, '[ "$?" = 3 ]'), 0);
        assert.equal(await status(run, '[ -f /nope ]'), 1);
        assert.equal(await status(run, '[ "$?" = 1 ]'), 0);
        const out = await run('\\printf "%s\\n" "$?" >&2');
        assert.deepEqual([out.stdout, out.stderr, out.exitCode], ['', '0\n', 0]);
        await shell.stop(5000);
      });

      test(`${program}: functions shadowing builtins capture nothing`, async () => {
        const { shell, run } = await open(program);
        const names = bashLike
          ? ['eval', 'echo', 'printf', 'command', 'false', 'unset', 'return', 'exec']
          : ['echo', 'printf', 'false']; // dash: special builtins cannot be functions
        await run(names.map((name) => `${name}() { exit 98; }`).join('\n'));
        assert.equal(await status(run, '(exit 3)'), 3);
        assert.equal(await status(run, '[ "$?" = 3 ]'), 0);
        assert.equal(await status(run, '[ -f /nope ]'), 1);
        assert.equal(await status(run, '[ "$?" = 1 ]'), 0);
        assert.equal(await status(run, 'true'), 0);
        await shell.close();
      });

      test(`${program}: an IFS of digits keeps every status exact`, async () => {
        const { shell, run } = await open(program);
        await run('IFS=0123456789');
        for (const code of [1, 42, 100, 255]) {
          assert.equal(await status(run, `(exit ${code})`), code);
          assert.equal(await status(run, `[ "$?" = ${code} ]`), 0);
        }
        // The user's IFS is in force (zsh splits only when asked).
        const split = program === 'zsh' ? `echo \${=x}` : 'echo $x';
        assert.equal((await run(`x=a1b; ${split}`)).stdout, 'a b\n');
        await shell.stop(5000);
      });

      test(`${program}: EXIT and RETURN traps stay quiet between runs`, async () => {
        const { shell, run } = await open(program);
        await run("trap 'echo EXIT-TRAP' EXIT");
        if (program === 'bash') await run("set -T; trap 'echo RETURN-TRAP' RETURN");
        const results = [await run('false'), await run('[ "$?" = 1 ]'), await run('echo ok')];
        assert.deepEqual(
          results.map((r) => [r.stdout, r.stderr, r.exitCode]),
          [
            ['', '', 1],
            ['', '', 0],
            ['ok\n', '', 0],
          ],
        );
        await shell.stop(5000); // exits 0: the EXIT trap's output belongs to no run
      });

      test(`${program}: error messages count the command's own lines, in functions it defines and in syntax errors`, async () => {
        const { shell, run } = await open(program);
        const missing = 'procsock-no-such-command';
        // What the shell says for an error on a command's line N (zsh numbers a function's
        // lines from the function's start, as it does in a script). bash names the script it
        // reads: /dev/fd/3 where it reads the driver's pipe on fd 3, else itself (and `main`
        // in a function), as for `bash < script`.
        const expected = {
          bash: (n: number) => new RegExp(`^[^:\n]+: line ${n}: ${missing}: command not found\n$`),
          dash: (n: number) => new RegExp(`: ${n}: eval: ${missing}: not found\n$`),
          // zsh reading stdin (a socket: the child_process backend) gives no line, as for `zsh < script`.
          zsh: (n: number) =>
            new RegExp(`^(\\(eval\\):${n}|zsh): command not found: ${missing}\n$`),
        }[program]!;
        for (let round = 0; round < 2; round++) {
          // The same lines, later in the session, still count from 1.
          const second = await run(`true\n${missing}`);
          assert.equal(second.exitCode, 127);
          assert.match(second.stderr, expected(2));
          assert.match((await run(`  ${missing}`)).stderr, expected(1));
        }
        await run(`f() {\n  true\n  ${missing}\n}`);
        const inFunction = await run('true\nf');
        assert.equal(inFunction.exitCode, 127);
        const functionLine = program === 'zsh' ? /^f:2: command not found/ : expected(3);
        assert.match(inFunction.stderr, functionLine);
        if (program !== 'dash') {
          // dash has no LINENO.
          assert.equal((await run('echo "$LINENO"\n\necho "$LINENO"')).stdout, '1\n3\n');
        }
        const syntax = await run('true\n\ndone');
        assert.notEqual(syntax.exitCode, 0);
        const syntaxLine = {
          bash: /^[^:\n]+: eval: line 3: syntax error near unexpected token `done'\n/,
          dash: /: 3: eval: Syntax error: "done" unexpected\n$/,
          zsh: /^(\(eval\):3|zsh): parse error near `done'\n$/,
        }[program]!;
        assert.match(syntax.stderr, syntaxLine);
        // The syntax error ended only its run (dash too: `command eval` keeps it in the shell).
        assert.equal((await run('echo still here')).stdout, 'still here\n');
        await shell.stop(5000);
      });

      if (program === 'bash') {
        test('bash: break and continue at the top of a command end that run only; TMOUT does not end the loop', async () => {
          const { shell, run } = await open(program);
          for (const command of ['echo a; break; echo b', 'continue', 'break 9', 'continue 3']) {
            const result = await run(command);
            assert.equal(result.stderr, '');
            assert.ok(!result.stdout.includes('b'));
            // Its status is unknown (the loop never recorded it); the shell goes on.
            assert.equal(result.exitCode, null);
            assert.deepEqual(
              [(await run('echo "$LINENO"; false')).stdout, (await run('echo "$?"')).stdout],
              ['1\n', '1\n'],
            );
          }
          assert.equal(
            (await run('for i in 1 2 3; do [ $i = 2 ] && break; echo $i; done')).stdout,
            '1\n',
          );
          // TMOUT, the read builtin's default timeout (hardened hosts export it), does not end
          // the loop while it waits: the shell idles past it (a timeout to outlast, not an event).
          await run('TMOUT=1');
          await new Promise((resolve) => setTimeout(resolve, 1200));
          assert.equal((await run('echo "$TMOUT"')).stdout, '1\n');
          await shell.stop(5000);
        });
      }

      test(`${program}: a command ending in a backslash ends there; the framing's tail is not its next line`, async () => {
        const { shell, run, noMarkerLeaked } = await open(program);
        const joined = await run('false; echo a \\');
        assert.deepEqual([joined.stdout, joined.stderr, joined.exitCode], ['a\n', '', 0]);
        const escaped = await run('echo b \\\\');
        assert.deepEqual([escaped.stdout, escaped.exitCode], ['b \\\n', 0]);
        assert.equal(await status(run, '(exit 4) \\'), 4);
        assert.equal((await run('echo $?')).stdout, '4\n');
        noMarkerLeaked();
        await shell.stop(5000);
      });

      test(`${program}: exec 2>/dev/null and exec 2>&1 in a run keep later runs working`, async () => {
        const { shell, run } = await open(program);
        await run('exec 2>/dev/null');
        const hidden = await run('echo out; echo err >&2; false');
        assert.deepEqual([hidden.stdout, hidden.stderr, hidden.exitCode], ['out\n', '', 1]);
        await run('exec 2>&1');
        const merged = await run('echo out; echo err >&2');
        assert.deepEqual([merged.stdout, merged.stderr, merged.exitCode], ['out\nerr\n', '', 0]);
        assert.equal((await run('echo again')).stdout, 'again\n');
        await shell.stop(5000);
      });
    }
  });
}

/**
 * An exit is an exit: a shell that has exited is reported as exited at once, even while a
 * background job still holds its pipes, and the jobs it leaves end with it (a shell session
 * ending is a hang-up). Locally and through the daemon; every wait here is bounded by the
 * job's own length (300 s), so the old behaviour — waiting for the job — fails by the test
 * timeout, not by a clock threshold.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import { reaperAvailable } from '../../src/channel/contain.js';
import { ShellCrashError } from '../../src/errors.js';
import { Shell } from '../../src/shell/index.js';
import { runCli } from '../helpers/cli.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { isAlive, waitUntil } from '../helpers/process.js';

const KILL_TIMEOUT = 300;
/** Far below the 300 s the jobs would hold the pipes: the old behaviour fails here. */
const BOUNDED = { timeout: 30_000 };

for (const kind of ['local', 'daemon'] as const) {
  describe(`a shell's exit is reported while its jobs hold the pipes (${kind})`, () => {
    let daemon: TestDaemon | undefined;
    before(async () => {
      if (kind === 'daemon')
        daemon = await startDaemon({
          timeout: 0,
          killTimeout: KILL_TIMEOUT,
          processGroup: true,
        });
    });
    after(async () => {
      await daemon?.close();
    });
    const shell = () =>
      Shell.posix({
        program: 'bash',
        // Through the daemon its own grace (-k) applies.
        ...(daemon ? { transport: { socket: daemon.path } } : { killTimeout: KILL_TIMEOUT }),
      });
    const jobPid = async (sh: Shell, command: string) =>
      Number((await sh.run(`${command} & echo $!`)).stdout);

    test('`sleep 300 & exit 3` → ShellCrashError(3), and the job is gone', BOUNDED, async () => {
      const sh = shell();
      await sh.start(10_000);
      const job = await jobPid(sh, 'sleep 300');
      assert.equal(isAlive(job), true);
      await assert.rejects(sh.run('sleep 300 & exit 3', 0), (error: unknown) => {
        assert.ok(error instanceof ShellCrashError, String(error));
        assert.equal(error.exitCode, 3);
        return true;
      });
      assert.equal(sh.state, 'off');
      await waitUntil(() => !isAlive(job), 'the job is gone');
    });

    test(
      '`sleep 300 &` then stop(): bash exited 0, stop() resolves, the job ends',
      BOUNDED,
      async () => {
        const sh = shell();
        await sh.start(10_000);
        const job = await jobPid(sh, 'sleep 300');
        await sh.stop(0);
        assert.equal(sh.state, 'off');
        await waitUntil(() => !isAlive(job), 'the job is gone');
      },
    );

    test(
      'a job that released the pipes (>/dev/null 2>&1 &) ends at stop() too',
      BOUNDED,
      async () => {
        const sh = shell();
        await sh.start(10_000);
        const job = await jobPid(sh, 'sleep 300 >/dev/null 2>&1');
        await sh.stop(0);
        await waitUntil(() => !isAlive(job), 'the job is gone');
      },
    );

    test('by default, jobs in a session or group of their own (setsid, set -m) end at stop() too', {
      ...BOUNDED,
      skip: !reaperAvailable() && 'procsock_reaper is not built',
    }, async () => {
      const sh = shell();
      await sh.start(10_000);
      const jobs = [
        await jobPid(sh, 'setsid sleep 300'),
        Number((await sh.run('set -m; sleep 300 & echo $!; set +m')).stdout),
      ];
      assert.ok(jobs.every(isAlive));
      await sh.stop(0);
      await waitUntil(() => !jobs.some(isAlive), 'the jobs are gone');
    });

    test(
      'procsock shell: a script ending in a & job exits at once with the shell status',
      BOUNDED,
      async () => {
        const socket = daemon ? ['--socket', daemon.path] : [];
        const { status, stdout } = await runCli(['shell', ...socket, '--', 'bash'], {
          input: 'echo one\nsleep 300 &\n',
        });
        assert.equal(status, 0);
        assert.match(stdout, /^one\n/);
      },
    );
  });
}

/**
 * run()'s containment options reach the program locally (contain, exitGrace, detached) and
 * through a procsock daemon (the protocol extension), which refuses with a typed error what
 * its policy will not do (contain: false on a containing daemon) and what no daemon does
 * (detached) rather than ignoring them. Real processes; the escaping job is a `setsid sleep`
 * (a session of its own, out of any process group's reach).
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import { reaperAvailable } from '../../src/channel/contain.js';
import { createExec, run } from '../../src/client/exec.js';
import { UnsupportedOptionError } from '../../src/errors.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { isAlive, waitUntil } from '../helpers/process.js';

const ESCAPER = ['sh', '-c', 'setsid sleep 300 & echo $!'];

describe('containment options of a local run()', {
  skip: !reaperAvailable() && 'procsock_reaper is not built',
}, () => {
  test('contain: true stops a setsid job when the program exits (exitGrace 0)', async () => {
    const result = await run(ESCAPER, { contain: true, exitGrace: 0 });
    assert.equal(result.exitCode, 0);
    const job = Number(result.stdout);
    await waitUntil(() => !isAlive(job), 'the setsid job is gone');
  });

  test('an exec’s default contain applies to its calls; contain: false lets the job run', async () => {
    const contained = createExec('local', { contain: true, exitGrace: 0 });
    const job = Number((await contained(ESCAPER)).stdout);
    await waitUntil(() => !isAlive(job), 'the contained job is gone');
    // Uncontained, the job outlives the run (the control: the option is what stopped it above).
    const loose = Number((await contained(ESCAPER, { contain: false, exitGrace: 0 })).stdout);
    try {
      assert.equal(isAlive(loose), true);
    } finally {
      process.kill(loose, 'SIGKILL');
    }
  });
});

describe('through a daemon', () => {
  let daemon: TestDaemon;
  let loose: TestDaemon;
  before(async () => {
    daemon = await startDaemon({ timeout: 60_000 });
    loose = await startDaemon({ timeout: 60_000, contain: false });
  });
  after(async () => {
    await Promise.all([daemon.close(), loose.close()]);
  });

  test('contain: true on an uncontained daemon stops the setsid job (exitGrace 0)', {
    skip: !reaperAvailable() && 'procsock_reaper is not built',
  }, async () => {
    const result = await run(ESCAPER, { socket: loose.path, contain: true, exitGrace: 0 });
    assert.equal(result.descendantsStopped, 1);
    await waitUntil(() => !isAlive(Number(result.stdout)), 'the setsid job is gone');
  });

  const refused: [string, unknown][] = [['detached', true]];
  if (reaperAvailable()) refused.push(['contain', false]);
  for (const [option, value] of refused) {
    test(`${option}: ${value} is refused by a (containing) daemon, nothing runs`, async () => {
      await assert.rejects(
        run(['sh', '-c', 'echo ran'], { socket: daemon.path, [option]: value }),
        (error: unknown) => {
          assert.ok(error instanceof UnsupportedOptionError, String(error));
          assert.equal(error.option, option);
          return true;
        },
      );
    });
  }
});

/**
 * The environment a child gets is the one of the moment it was spawned, even when
 * process.env is rewritten right after each spawn: the native backend's child, not yet
 * exec'd, read the live environ array, which those writes reallocate and free (issue 12:
 * EFAULT and garbage environments). Each backend; one per pass of the suite.
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { LocalChannel } from '../../src/channel/local.js';
import { addonAvailable, addonLoadError } from '../../src/native/addon.js';
import { childrenOf } from '../helpers/process.js';
import { backendsToRun } from '../helpers/scenario.js';

const requireNative = process.env.PROCSOCK_REQUIRE_NATIVE === '1';
const nativeSkip =
  !requireNative && !addonAvailable() && `native addon not built: ${addonLoadError()?.message}`;

const STORM_SPAWNS = 1500;
const STORM_IN_FLIGHT = 32;

for (const backend of backendsToRun()) {
  describe(`environment storm: ${backend}`, { skip: backend === 'native' && nativeSkip }, () => {
    test(`environment storm: ${STORM_SPAWNS} spawns, process.env rewritten right after each`, async () => {
      // Each spawn is followed at once by writes that make the C library reallocate the
      // environ array: the child, not yet exec'd, must have its own copy of the environment.
      const before = childrenOf().length;
      let wrong = 0;
      const failures: string[] = [];
      const batch: Promise<void>[] = [];
      try {
        for (let i = 0; i < STORM_SPAWNS; i++) {
          const expected = `storm-${i}`;
          process.env.PROCSOCK_STORM = expected;
          const channel = new LocalChannel(['printenv', 'PROCSOCK_STORM'], {
            spawnBackend: backend,
          });
          const out: Buffer[] = [];
          const err: Buffer[] = [];
          channel.on('output', ({ type, data }) =>
            (type === 'stdout' ? out : err).push(Buffer.from(data)),
          );
          channel.end();
          for (let k = 0; k < 4; k++) {
            process.env[`PROCSOCK_STORM_${i}_${k}`] = 'x'.repeat(40);
            delete process.env[`PROCSOCK_STORM_${i - 1}_${k}`];
          }
          batch.push(
            channel.done().then((status) => {
              const stdout = Buffer.concat(out).toString();
              if (status?.exitCode !== 0 || stdout !== `${expected}\n`) {
                wrong++;
                if (failures.length < 5) {
                  failures.push(`${JSON.stringify(status)} ${stdout} ${Buffer.concat(err)}`);
                }
              }
            }),
          );
          if (batch.length === STORM_IN_FLIGHT) await Promise.all(batch.splice(0));
        }
        await Promise.all(batch);
      } finally {
        delete process.env.PROCSOCK_STORM;
        for (let k = 0; k < 4; k++) delete process.env[`PROCSOCK_STORM_${STORM_SPAWNS - 1}_${k}`];
      }
      assert.equal(wrong, 0, `wrong environments: ${failures.join(' | ')}`);
      assert.equal(childrenOf().length, before, 'every child reaped');
    });
  });
}

/**
 * Out of descriptors at spawn (issue 12): procsock could not start the program, which is a
 * SpawnError (PROCSOCK_SPAWN, EMFILE), not "the program ran and exited 126"; nothing leaks.
 * In a node process of its own (test/fixtures/spawn-emfile.mjs), which fills its descriptor
 * table. Each backend; one per pass of the suite.
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { addonAvailable, addonLoadError } from '../../src/native/addon.js';
import { backendsToRun, fixture, report, scenario } from '../helpers/scenario.js';

const requireNative = process.env.PROCSOCK_REQUIRE_NATIVE === '1';
const nativeSkip =
  !requireNative && !addonAvailable() && `native addon not built: ${addonLoadError()?.message}`;

for (const backend of backendsToRun()) {
  describe(`spawn without descriptors: ${backend}`, {
    skip: backend === 'native' && nativeSkip,
  }, () => {
    test('out of descriptors at spawn: a SpawnError (PROCSOCK_SPAWN, EMFILE), nothing leaked', async () => {
      interface Attempt {
        status?: { exitCode: number | null };
        error?: { name: string; code: string; reason: string; syscall: string; errno: number };
        output: string[];
      }
      const result = report<{
        starved: Attempt;
        starvedRun: { error?: Attempt['error'] };
        after: Attempt;
        leaked: number;
      }>(await scenario([fixture('spawn-emfile.mjs'), '3'], { PROCSOCK_SPAWN: backend }));
      // Not "the program ran and exited 126": no exit status, no output, a typed error.
      assert.equal(result.starved.status, undefined);
      assert.deepEqual(result.starved.output, []);
      assert.equal(result.starved.error?.name, 'SpawnError');
      assert.equal(result.starved.error?.code, 'PROCSOCK_SPAWN');
      assert.equal(result.starved.error?.reason, 'EMFILE');
      assert.equal(result.starved.error?.errno, -24);
      assert.equal(result.starved.error?.syscall, backend === 'native' ? 'pipe2' : 'spawn');
      assert.deepEqual(result.starvedRun.error, result.starved.error, 'run() rejects the same');
      assert.deepEqual(result.after.status, { exitCode: 0, termSignal: null });
      assert.deepEqual(result.after.output, ['stdout:ran\n']);
      assert.ok(result.leaked <= 0, `${result.leaked} descriptors leaked`);
    });
  });
}

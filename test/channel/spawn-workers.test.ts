/**
 * Worker threads are first-class (issue 12): any number spawning at once, terminated at
 * any moment with children alive — no crash, no warning, every child stopped (TERM, then
 * KILL after killTimeout) and reaped. Run in a node process of their own
 * (test/fixtures/spawn-workers.mjs), so a crash is seen. Each backend; one per pass.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { addonAvailable, addonLoadError } from '../../src/native/addon.js';
import { tempDir } from '../helpers/process.js';
import { backendsToRun, fixture, report, scenario } from '../helpers/scenario.js';

const requireNative = process.env.PROCSOCK_REQUIRE_NATIVE === '1';
const nativeSkip =
  !requireNative && !addonAvailable() && `native addon not built: ${addonLoadError()?.message}`;

for (const backend of backendsToRun()) {
  describe(`worker threads: ${backend}`, { skip: backend === 'native' && nativeSkip }, () => {
    test('workers terminated with children alive: no crash, no warning, all stopped and reaped', async () => {
      // 3 workers terminated as soon as they are online (mid-spawn), 6 after starting a
      // sleep and a TERM-ignoring script (killTimeout 300 ms) and while still spawning.
      const scratch = tempDir('procsock-workers-');
      try {
        const termLog = scratch.path('term.log');
        const result = report<{
          wrong: number;
          pids: number[];
          left: unknown[];
          stillAlive: number[];
        }>(await scenario([fixture('spawn-workers.mjs'), 'terminate', backend, termLog]));
        assert.equal(result.wrong, 0, 'programs printed the wrong thing');
        assert.equal(result.pids.length, 12);
        assert.ok(
          result.pids.every((pid) => Number.isInteger(pid)),
          'every live child was started',
        );
        assert.deepEqual(result.left, [], 'no child (nor zombie) of the scenario is left');
        assert.deepEqual(result.stillAlive, []);
        // Each TERM-ignoring script recorded its TERM: stopped as an aborted run, TERM then KILL.
        assert.equal(readFileSync(termLog, 'utf8'), 'TERM\n'.repeat(6));
      } finally {
        scratch.cleanup();
      }
    });

    test('spawn storm from 8 workers and the main thread at once', async () => {
      const result = report<{ wrong: number; runs: number; left: unknown[] }>(
        await scenario([fixture('spawn-workers.mjs'), 'storm', backend]),
      );
      assert.equal(result.runs, 540);
      assert.equal(result.wrong, 0, 'programs printed the wrong thing or failed');
      assert.deepEqual(result.left, []);
    });
  });
}

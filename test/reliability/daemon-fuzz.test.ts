/**
 * Hostile input against a daemon in its own process: arbitrary bytes, mangled requests,
 * arbitrary splits and arbitrary disconnect points. After each batch the daemon must be
 * alive and answering, hold no more than its baseline descriptors, and have no child left,
 * live or zombie. Seeded and reproducible:
 *   PROCSOCK_FUZZ_SEED=123 PROCSOCK_FUZZ_RUNS=5000 node scripts/run-tests.mjs test/reliability/daemon-fuzz.test.ts
 */
import { strict as assert } from 'node:assert';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { type DaemonProcess, daemonChildren, startDaemonProcess } from '../helpers/daemon.js';
import { fuzzPolicyFlags, fuzzScenario, playFuzzScenario } from '../helpers/fuzz-cases.js';
import { openFdCount, tempDir, waitUntil } from '../helpers/process.js';
import { RawClient, request } from '../helpers/raw-client.js';

const SEED = Number(process.env.PROCSOCK_FUZZ_SEED ?? 20_261_121);
const RUNS = Number(process.env.PROCSOCK_FUZZ_RUNS ?? 400);
const BATCHES = 4;

/** Where programs run: whatever a mangled request makes them write lands here. */
const workDir = tempDir('procsock-fuzz-');
let daemon: DaemonProcess;
let baselineFds = 0;

async function canary(): Promise<void> {
  const client = await RawClient.connect(daemon.path);
  client.send(request(['echo', 'alive'], []));
  const reply = await client.reply();
  assert.deepEqual(reply.pairs, [
    ['stdout', 'alive\n'],
    ['exitcode', '0'],
  ]);
}

before(async () => {
  // -t 0.5: a request left incomplete is cut off by the deadline; --kill-group reaps grandchildren.
  daemon = await startDaemonProcess([
    ...fuzzPolicyFlags(workDir.dir),
    '-t',
    '0.5',
    '-k',
    '1',
    '--kill-group',
  ]);
  await canary();
  baselineFds = openFdCount(daemon.pid);
});

after(async () => {
  assert.equal(await daemon.stop(), 0, 'the daemon shuts down cleanly');
  daemon.cleanup();
  workDir.cleanup();
});

async function assertClean(): Promise<void> {
  await waitUntil(() => daemonChildren(daemon.pid).length === 0, 'the daemon has no child left');
  await waitUntil(
    // At most: the baseline may still count the canary's socket (closed a moment later).
    () => openFdCount(daemon.pid) <= baselineFds,
    `the daemon is back to its ${baselineFds} descriptors`,
  );
  await canary();
  assert.equal(daemon.child.exitCode, null, 'the daemon is still running');
}

test(`daemon survives ${RUNS} fuzz cases (seed ${SEED}) without a leak`, async () => {
  for (let batch = 0; batch < BATCHES; batch++) {
    await fc.assert(
      fc.asyncProperty(fuzzScenario, (s) => playFuzzScenario(daemon.path, s)),
      { seed: SEED + batch, numRuns: Math.ceil(RUNS / BATCHES), endOnFailure: true },
    );
    await assertClean();
  }
});

test('concurrent fuzz clients do not disturb each other or a well-behaved client', async () => {
  const cases = fc.sample(fuzzScenario, { seed: SEED, numRuns: 64 });
  const wellBehaved = (async () => {
    for (let i = 0; i < 10; i++) await canary();
  })();
  for (let i = 0; i < cases.length; i += 16) {
    await Promise.all(cases.slice(i, i + 16).map((c) => playFuzzScenario(daemon.path, c)));
  }
  await wellBehaved;
  await assertClean();
});

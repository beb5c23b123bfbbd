/**
 * Hostile input against a daemon in its own process: arbitrary bytes, mangled requests,
 * arbitrary splits and arbitrary disconnect points. After each batch the daemon must be
 * alive and answering, hold exactly its baseline descriptors, and have no child left,
 * live or zombie. Seeded and reproducible:
 *   PROCSOCK_FUZZ_SEED=123 PROCSOCK_FUZZ_RUNS=5000 node scripts/run-tests.mjs test/reliability/daemon-fuzz.test.ts
 */
import { strict as assert } from 'node:assert';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { fuzzPolicyFlags, fuzzScenario, playFuzzScenario } from '../helpers/fuzz-cases.js';
import { childrenOf, openFdCount, tempDir, waitUntil } from '../helpers/process.js';
import { RawClient, request } from '../helpers/raw-client.js';

const SEED = Number(process.env.PROCSOCK_FUZZ_SEED ?? 20_261_121);
const RUNS = Number(process.env.PROCSOCK_FUZZ_RUNS ?? 400);
const BATCHES = 4;

const tmp = tempDir('procsock-fuzz-');
const socketPath = tmp.path('fuzz.sock');
let daemon: ChildProcess;
let baselineFds = 0;

async function canary(): Promise<void> {
  const client = await RawClient.connect(socketPath);
  client.send(request(['echo', 'alive'], []));
  const reply = await client.reply();
  assert.deepEqual(reply.pairs, [
    ['stdout', 'alive\n'],
    ['exitcode', '0'],
  ]);
}

function connectable(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

before(async () => {
  // -t 0.5: a request left incomplete is cut off by the deadline; --kill-group reaps grandchildren.
  // The built CLI, not tsx: tsx keeps an esbuild helper process that would count as a child.
  assert.ok(existsSync('dist/cli/main.js'), 'run `npm run build` first');
  daemon = spawn(
    process.execPath,
    [
      'dist/cli/main.js',
      'serve',
      '--allow-root',
      ...fuzzPolicyFlags(tmp.dir),
      '-t',
      '0.5',
      '-k',
      '1',
      '--kill-group',
      socketPath,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const deadline = Date.now() + 20_000;
  while (!(await connectable())) {
    if (Date.now() > deadline) throw new Error('the fuzz daemon did not start');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await canary();
  baselineFds = openFdCount(daemon.pid!);
});

after(async () => {
  if (daemon.exitCode === null) {
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
  }
  tmp.cleanup();
});

async function assertClean(): Promise<void> {
  await waitUntil(() => childrenOf(daemon.pid!).length === 0, 'the daemon has no child left');
  await waitUntil(
    // At most: the baseline may still count the canary's socket (closed a moment later).
    () => openFdCount(daemon.pid!) <= baselineFds,
    `the daemon is back to its ${baselineFds} descriptors`,
  );
  await canary();
  assert.equal(daemon.exitCode, null, 'the daemon is still running');
}

test(`daemon survives ${RUNS} fuzz cases (seed ${SEED}) without a leak`, async () => {
  for (let batch = 0; batch < BATCHES; batch++) {
    await fc.assert(
      fc.asyncProperty(fuzzScenario, (s) => playFuzzScenario(socketPath, s)),
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
    await Promise.all(cases.slice(i, i + 16).map((c) => playFuzzScenario(socketPath, c)));
  }
  await wellBehaved;
  await assertClean();
});

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
import { loadAddon } from '../../src/native/addon.js';
import { DEFAULT_REQUEST_LIMITS, RequestDecoder } from '../../src/protocol/request.js';
import { type DaemonProcess, daemonChildren, startDaemonProcess } from '../helpers/daemon.js';
import {
  fuzzInput,
  fuzzPolicyFlags,
  fuzzScenario,
  playFuzzScenario,
} from '../helpers/fuzz-cases.js';
import { openFdCount, tempDir, waitUntil } from '../helpers/process.js';
import { RawClient, request } from '../helpers/raw-client.js';

const SEED = Number(process.env.PROCSOCK_FUZZ_SEED ?? 20_261_121);
const RUNS = Number(process.env.PROCSOCK_FUZZ_RUNS ?? 400);
const BATCHES = 4;

/** Where programs run: whatever a mangled request makes them write lands here. */
const workDir = tempDir('procsock-fuzz-');
let daemon: DaemonProcess;
let baselineFds = 0;
/** The addon's request parser (native/conn.c), where the native connection path exists. */
const addon = process.env.PROCSOCK_SPAWN === 'child_process' ? null : loadAddon();
const nativePath = typeof addon?.connParse === 'function';

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

/**
 * The daemon under test is the one `daemon` names: the contained one above, then (below) an
 * uncontained one, whose plain connections are served by the native connection path.
 */
async function withUncontained(run: () => Promise<void>): Promise<void> {
  const contained = daemon;
  const saved = baselineFds;
  daemon = await startDaemonProcess([
    ...fuzzPolicyFlags(workDir.dir),
    '--no-contain',
    '-t',
    '0.5',
    '-k',
    '1',
    '--kill-group',
  ]);
  try {
    await canary();
    baselineFds = openFdCount(daemon.pid);
    await run();
    assert.equal(await daemon.stop(), 0, 'the daemon shuts down cleanly');
  } finally {
    await daemon.stop();
    daemon.cleanup();
    daemon = contained;
    baselineFds = saved;
  }
}

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

test('the native connection path survives the fuzz cases too', {
  skip: !nativePath && 'the native connection path needs the native backend',
}, async () => {
  await withUncontained(async () => {
    for (let batch = 0; batch < BATCHES; batch++) {
      await fc.assert(
        fc.asyncProperty(fuzzScenario, (s) => playFuzzScenario(daemon.path, s)),
        { seed: SEED + 100 + batch, numRuns: Math.ceil(RUNS / BATCHES), endOnFailure: true },
      );
      await assertClean();
    }
    const cases = fc.sample(fuzzScenario, { seed: SEED + 1, numRuns: 64 });
    for (let i = 0; i < cases.length; i += 16) {
      await Promise.all(cases.slice(i, i + 16).map((c) => playFuzzScenario(daemon.path, c)));
    }
    await assertClean();
  });
});

/** What the JS RequestDecoder makes of `chunks`: the argv, if it got that far without a violation. */
function decodeArgs(chunks: Buffer[]): { argv: string[] | null; failed: boolean } {
  let argv: string[] | null = null;
  let failed = false;
  const decoder = new RequestDecoder(
    {
      onArgs: (args) => {
        argv = args;
      },
      onStdin: () => {},
      onStdinEnd: () => {},
      // The extension's opening: the native parser must hand that client to JS.
      onExtended: () => ({
        onHeader: () => {},
        onStdin: () => {},
        onStdinEnd: () => {},
        onSignal: () => {},
        onWindow: () => {},
        onStop: () => {},
      }),
    },
    DEFAULT_REQUEST_LIMITS,
  );
  for (const chunk of chunks) {
    if (argv !== null) break;
    try {
      decoder.push(chunk);
    } catch {
      failed = true;
      break;
    }
  }
  return { argv, failed: failed && argv === null };
}

test('the native request parser agrees with the JS decoder, or hands the client to it', {
  skip: !nativePath && 'the native connection path needs the native backend',
}, () => {
  const { maxArgs, maxArgLength, maxArgBytes } = DEFAULT_REQUEST_LIMITS;
  fc.assert(
    fc.property(
      fuzzInput,
      fc.uniqueArray(fc.nat({ max: 400 }), { maxLength: 6 }),
      (bytes, cuts) => {
        const at = [
          0,
          ...cuts.filter((cut) => cut < bytes.length).sort((a, b) => a - b),
          bytes.length,
        ];
        const chunks = at.slice(1).map((end, i) => bytes.subarray(at[i], end));
        const parsed = addon!.connParse(chunks, maxArgs, maxArgLength, maxArgBytes);
        const js = decodeArgs(chunks);
        if (parsed.result === 'complete') {
          // Served natively: exactly the argv the JS path would have run.
          assert.notEqual(js.argv, null, 'the JS decoder completes the same argv');
          assert.deepEqual(parsed.args!.toString('utf8').split('\0'), js.argv);
        } else if (parsed.result === 'more') {
          assert.equal(js.argv, null, 'the JS decoder does not have the argv either');
          assert.equal(js.failed, false, 'nor has it found a violation');
        } else if (js.argv !== null) {
          // Handed off although the JS decoder accepts it: only for a NUL byte in an argument.
          assert.ok(
            (js.argv as string[]).some((arg) => arg.includes('\0')),
            'handed off for a NUL',
          );
        }
      },
    ),
    { seed: SEED, numRuns: RUNS * 10 },
  );
});

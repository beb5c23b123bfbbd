/**
 * Hostile input against a daemon in its own process: arbitrary bytes, mangled requests,
 * arbitrary splits and arbitrary disconnect points. After each batch the daemon must be
 * alive and answering, hold exactly its baseline descriptors, and have no child left,
 * live or zombie. Seeded and reproducible:
 *   PROCSOCK_FUZZ_SEED=123 PROCSOCK_FUZZ_RUNS=5000 node scripts/run-tests.mjs test/reliability/daemon-fuzz.test.ts
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { childrenOf, openFdCount, tempDir, waitUntil } from '../helpers/process.js';
import { ns, RawClient, request } from '../helpers/raw-client.js';

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
    ['dist/cli/main.js', 'serve', '-t', '0.5', '-k', '1', '--kill-group', socketPath],
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

/** Harmless programs a mangled request may still name. */
const programs = fc.constantFrom(
  ['true'],
  ['cat'],
  ['echo', 'x'],
  ['sh', '-c', 'exit 3'],
  ['head', '-c', '200000', '/dev/zero'],
  ['sleep', '0.05'],
  ['sleep', '5'],
  ['procsock-no-such-program'],
);

const wellFormed = fc
  .record({
    argv: programs,
    stdin: fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 4 }),
    terminate: fc.boolean(),
  })
  .map(({ argv, stdin, terminate }) => request(argv, stdin.map(Buffer.from), terminate));

/** A valid request with one byte changed, bytes inserted, or cut short. */
const mangled = fc
  .tuple(
    wellFormed,
    fc.nat(),
    fc.integer({ min: 0, max: 255 }),
    fc.constantFrom('flip', 'insert', 'cut'),
  )
  .map(([bytes, at, byte, how]) => {
    const i = at % (bytes.length + 1);
    if (how === 'cut') return bytes.subarray(0, i);
    if (how === 'insert')
      return Buffer.concat([bytes.subarray(0, i), Buffer.from([byte]), bytes.subarray(i)]);
    const copy = Buffer.from(bytes);
    if (i < copy.length) copy[i] = byte;
    return copy;
  });

const hostileLengths = fc.constantFrom(
  Buffer.from('99999999999:'),
  Buffer.from('1:9,99999999999:'),
  Buffer.from('1:1,9999999:'),
  Buffer.concat([ns('100000000'), ns('a')]),
  Buffer.from('00:,'),
  Buffer.from('0:,'),
  Buffer.from(':,'),
);

const input = fc.oneof(
  { arbitrary: fc.uint8Array({ maxLength: 200 }).map(Buffer.from), weight: 3 },
  { arbitrary: wellFormed, weight: 2 },
  { arbitrary: mangled, weight: 4 },
  { arbitrary: hostileLengths, weight: 1 },
);

const scenario = fc.record({
  bytes: input,
  cuts: fc.uniqueArray(fc.nat({ max: 400 }), { maxLength: 6 }),
  // Reading until the daemon closes may wait for the deadline: rarer, to keep the suite quick.
  leave: fc.oneof(
    { arbitrary: fc.constantFrom('end', 'destroy'), weight: 9 },
    { arbitrary: fc.constant('read-to-close'), weight: 1 },
  ),
});

function write(socket: Socket, data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed || !socket.writable) return resolve();
    socket.write(data, () => resolve());
  });
}

async function play({
  bytes,
  cuts,
  leave,
}: fc.RecordValue<{ bytes: Buffer; cuts: number[]; leave: string }>) {
  const socket = connect(socketPath);
  socket.on('data', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => {});
  await new Promise<void>((resolve) => {
    socket.once('connect', () => resolve());
    socket.once('close', () => resolve());
  });
  const points = [...cuts.filter((c) => c < bytes.length)].sort((a, b) => a - b);
  let from = 0;
  for (const point of [...points, bytes.length]) {
    await write(socket, bytes.subarray(from, point));
    from = point;
  }
  if (leave === 'destroy') socket.destroy();
  else if (leave === 'end') socket.end();
  // read-to-close: the daemon ends it (reply done, violation, or the deadline).
  await closed;
}

async function assertClean(): Promise<void> {
  await waitUntil(() => childrenOf(daemon.pid!).length === 0, 'the daemon has no child left');
  await waitUntil(
    () => openFdCount(daemon.pid!) === baselineFds,
    `the daemon is back to its ${baselineFds} descriptors`,
  );
  await canary();
  assert.equal(daemon.exitCode, null, 'the daemon is still running');
}

test(`daemon survives ${RUNS} fuzz cases (seed ${SEED}) without a leak`, async () => {
  for (let batch = 0; batch < BATCHES; batch++) {
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        await play(s);
      }),
      { seed: SEED + batch, numRuns: Math.ceil(RUNS / BATCHES), endOnFailure: true },
    );
    await assertClean();
  }
});

test('concurrent fuzz clients do not disturb each other or a well-behaved client', async () => {
  const cases = fc.sample(scenario, { seed: SEED, numRuns: 64 });
  const wellBehaved = (async () => {
    for (let i = 0; i < 10; i++) await canary();
  })();
  for (let i = 0; i < cases.length; i += 16) {
    await Promise.all(cases.slice(i, i + 16).map(play));
  }
  await wellBehaved;
  await assertClean();
});

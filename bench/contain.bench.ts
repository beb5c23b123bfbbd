/**
 * What containment costs a run: `/bin/true` as a LocalChannel, plain and contained (under
 * procsock_reaper: one more exec and a fork per run), on each spawn backend, 1 and 8 in
 * flight. This is what the daemon and a Shell pay per run for their contained default.
 * Contenders are interleaved round by round; medians are reported.
 *
 *   npm run bench -- contain          (or: node --import tsx bench/contain.bench.ts)
 */
import { reaperAvailable } from '../src/channel/contain.js';
import { LocalChannel, type SpawnBackendName } from '../src/channel/local.js';
import { addonAvailable } from '../src/native/addon.js';
import { ratio, recordGoals } from './goals.js';

const ROUNDS = 7;
const RUNS_PER_BATCH = 100;
const PROGRAM = '/bin/true';

interface Contender {
  name: string;
  backend: SpawnBackendName;
  contain: boolean;
}

function runOnce(contender: Contender): Promise<unknown> {
  const channel = new LocalChannel([PROGRAM], {
    spawnBackend: contender.backend,
    contain: contender.contain,
  });
  channel.end();
  return channel.done();
}

/** Runs `total` programs with `inFlight` of them running at any time; returns runs per second. */
async function batch(contender: Contender, total: number, inFlight: number): Promise<number> {
  let started = 0;
  const begin = process.hrtime.bigint();
  const worker = async () => {
    while (started < total) {
      started++;
      await runOnce(contender);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return total / (Number(process.hrtime.bigint() - begin) / 1e9);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

if (!reaperAvailable()) {
  console.log('procsock_reaper is not built: nothing to compare (npm rebuild procsock)');
  process.exit(0);
}
const backends: SpawnBackendName[] = addonAvailable()
  ? ['native', 'child_process']
  : ['child_process'];
const contenders: Contender[] = backends.flatMap((backend) => [
  { name: `${backend} plain`, backend, contain: false },
  { name: `${backend} contained`, backend, contain: true },
]);
const rates = new Map<string, number[]>();
const key = (name: string, inFlight: number) => `${name}@${inFlight}`;
for (const contender of contenders) await batch(contender, 30, 4); // warm up
for (let round = 0; round < ROUNDS; round++) {
  for (const inFlight of [1, 8]) {
    for (const contender of contenders) {
      const list = rates.get(key(contender.name, inFlight)) ?? [];
      list.push(await batch(contender, RUNS_PER_BATCH, inFlight));
      rates.set(key(contender.name, inFlight), list);
    }
  }
}
const rate = (name: string, inFlight: number) => median(rates.get(key(name, inFlight)) ?? [0]);
const show = (value: number) => `${value.toFixed(0)}/s (${(1e6 / value).toFixed(0)} µs)`;

console.log(
  `LocalChannel ${PROGRAM}: runs per second (µs per run), median of ${ROUNDS} interleaved rounds of ${RUNS_PER_BATCH}\n`,
);
console.log('| backend | in flight | plain | contained | contained ÷ plain |');
console.log('|---|---|---|---|---|');
for (const backend of backends) {
  for (const inFlight of [1, 8]) {
    const plain = rate(`${backend} plain`, inFlight);
    const contained = rate(`${backend} contained`, inFlight);
    console.log(
      `| ${backend} | ${inFlight} | ${show(plain)} | ${show(contained)} | ${ratio(contained, plain)} |`,
    );
  }
}
recordGoals(
  backends.flatMap((backend) =>
    [1, 8].map((inFlight) => ({
      figure: `contained ${backend} LocalChannel runs/s, ${inFlight} in flight`,
      procsock: `${rate(`${backend} contained`, inFlight).toFixed(0)}/s`,
      peer: `plain ${backend} (same run)`,
      peerValue: `${rate(`${backend} plain`, inFlight).toFixed(0)}/s`,
      ratio: ratio(rate(`${backend} contained`, inFlight), rate(`${backend} plain`, inFlight)),
      goal: 'for scale (the price of the contained default)',
    })),
  ),
);

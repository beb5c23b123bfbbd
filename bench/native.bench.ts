/**
 * Spawning `/bin/true` locally: LocalChannel on the native backend vs LocalChannel on
 * child_process vs raw `child_process.spawn` vs a C loop of posix_spawn + waitpid (compiled
 * here with cc), at 1 and 8 in flight; and how long each spawn blocks the event loop.
 *   npm run bench -- native          (BENCH_ROUNDS, BENCH_SECONDS to change the effort)
 * Goals (issue 6): native ≥ 2× child_process.spawn throughput at 1 and 8 in flight; event-loop
 * block per spawn ≤ 1/3 of child_process.spawn's; within 1.25× of the C loop at 1 in flight.
 */
import { spawn } from 'node:child_process';
import { LocalChannel } from '../src/channel/local.js';
import { addonAvailable, addonExitWatch, addonLoadError } from '../src/native/addon.js';
import { buildCLoop, cLoopRate as cLoopRatePeer } from './c-loop.js';
import { ratio, recordGoals } from './goals.js';

const PROGRAM = '/bin/true';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 0.6);

type SpawnOnce = () => Promise<void>;

const contenders: Record<string, SpawnOnce | null> = {
  'LocalChannel native': addonAvailable()
    ? () => new LocalChannel([PROGRAM], { spawnBackend: 'native' }).done().then(() => {})
    : null,
  'LocalChannel child_process': () =>
    new LocalChannel([PROGRAM], { spawnBackend: 'child_process' }).done().then(() => {}),
  'child_process.spawn': () =>
    new Promise((resolve, reject) => {
      spawn(PROGRAM, [], { stdio: 'pipe' })
        .on('close', () => resolve())
        .on('error', reject);
    }),
};

/** Spawns per second over about SECONDS, keeping `concurrency` in flight. */
async function rate(once: SpawnOnce, concurrency: number): Promise<number> {
  const start = performance.now();
  const deadline = start + SECONDS * 1000;
  let count = 0;
  const worker = async () => {
    while (performance.now() < deadline) {
      await once();
      count++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return count / ((performance.now() - start) / 1000);
}

function cLoopRate(path: string, concurrency: number, estimate: number): number {
  return cLoopRatePeer(path, concurrency, Math.max(200, Math.round(estimate * SECONDS)), PROGRAM);
}

/** Milliseconds the synchronous part of one spawn holds the event loop (the call itself). */
async function blockPerSpawn(start: () => { done(): Promise<unknown> }): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 300; i++) {
    const t0 = performance.now();
    const running = start();
    samples.push(performance.now() - t0);
    await running.done();
  }
  return median(samples.slice(50));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const fmt = (n: number | undefined, digits = 0) =>
  n === undefined || Number.isNaN(n) ? 'n/a' : n.toFixed(digits);

async function main(): Promise<void> {
  console.log(
    `spawning ${PROGRAM}: ${ROUNDS} rounds of ~${SECONDS}s per contender, interleaved; median`,
  );
  if (!addonAvailable()) {
    console.log(`native backend: NOT BUILT (${addonLoadError()?.message.split('\n')[0]})`);
  } else {
    console.log(`native backend: built, exits watched by ${addonExitWatch()}`);
  }
  const cLoop = buildCLoop();
  if (!cLoop.path) console.log(`C posix_spawn loop: not available (${cLoop.why})`);

  const results: Record<string, Record<number, number[]>> = {};
  const record = (name: string, concurrency: number, value: number) => {
    results[name] ??= {};
    results[name][concurrency] ??= [];
    results[name][concurrency].push(value);
  };
  // Warm up (JIT, lazily loaded modules, the addon).
  for (const once of Object.values(contenders)) if (once) await rate(once, 2);

  for (let round = 0; round < ROUNDS; round++) {
    for (const concurrency of [1, 8]) {
      for (const [name, once] of Object.entries(contenders)) {
        if (once) record(name, concurrency, await rate(once, concurrency));
      }
      if (cLoop.path) {
        const estimate = median(results['child_process.spawn']![concurrency]!) * 4;
        record('C posix_spawn loop', concurrency, cLoopRate(cLoop.path, concurrency, estimate));
      }
    }
  }
  cLoop.cleanup();

  const med = (name: string, c: number) =>
    results[name]?.[c] ? median(results[name][c]) : Number.NaN;
  const native = (c: number) => med('LocalChannel native', c);
  const raw = (c: number) => med('child_process.spawn', c);

  console.log(
    '\n| spawns/s | LocalChannel native | LocalChannel child_process | child_process.spawn | C posix_spawn loop | native ÷ spawn | native ÷ C |',
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const c of [1, 8]) {
    console.log(
      `| ${c} in flight | ${fmt(native(c))} | ${fmt(med('LocalChannel child_process', c))} | ${fmt(raw(c))} | ${fmt(med('C posix_spawn loop', c))} | ${fmt(native(c) / raw(c), 2)}× | ${fmt(native(c) / med('C posix_spawn loop', c), 2)}× |`,
    );
  }

  const block: Record<string, number> = {};
  if (addonAvailable()) {
    block.native = await blockPerSpawn(
      () => new LocalChannel([PROGRAM], { spawnBackend: 'native' }),
    );
  }
  block.childProcessChannel = await blockPerSpawn(
    () => new LocalChannel([PROGRAM], { spawnBackend: 'child_process' }),
  );
  block.raw = await blockPerSpawn(() => {
    const child = spawn(PROGRAM, [], { stdio: 'pipe' });
    return { done: () => new Promise((resolve) => child.on('close', resolve)) };
  });
  console.log(
    '\n| event-loop block per spawn (ms, median) | LocalChannel native | LocalChannel child_process | child_process.spawn | native ÷ spawn |',
  );
  console.log('|---|---|---|---|---|');
  console.log(
    `| synchronous spawn call | ${fmt(block.native, 3)} | ${fmt(block.childProcessChannel, 3)} | ${fmt(block.raw, 3)} | ${fmt((block.native ?? Number.NaN) / block.raw!, 2)}× |`,
  );

  const cFloor = med('C posix_spawn loop', 1);
  const goals: [string, boolean | undefined][] = [
    ['native ≥ 2× child_process.spawn at 1 in flight', native(1) >= 2 * raw(1)],
    ['native ≥ 2× child_process.spawn at 8 in flight', native(8) >= 2 * raw(8)],
    ['event-loop block ≤ 1/3 of child_process.spawn', (block.native ?? Infinity) <= block.raw! / 3],
    [
      'native within 1.25× of the C loop at 1 in flight',
      Number.isNaN(cFloor) ? undefined : native(1) * 1.25 >= cFloor,
    ],
  ];
  recordGoals([
    {
      figure: 'local spawns/s (LocalChannel native), 1 in flight',
      procsock: `${fmt(native(1))}/s`,
      peer: 'C posix_spawn loop',
      peerValue: Number.isNaN(cFloor) ? `not built (${cLoop.why})` : `${fmt(cFloor)}/s`,
      ratio: ratio(native(1), Number.isNaN(cFloor) ? undefined : cFloor),
      goal: 'within 1.25× of the C loop (≥ 0.8×)',
      met: Number.isNaN(cFloor) ? null : native(1) * 1.25 >= cFloor,
    },
    {
      figure: 'local spawns/s (LocalChannel native), 8 in flight',
      procsock: `${fmt(native(8))}/s`,
      peer: 'C posix_spawn loop',
      peerValue: Number.isNaN(med('C posix_spawn loop', 8))
        ? 'not built'
        : `${fmt(med('C posix_spawn loop', 8))}/s`,
      ratio: ratio(native(8), med('C posix_spawn loop', 8)),
      goal: 'for scale (the C loop uses both cores)',
    },
  ]);
  console.log('\n| goal | met |');
  console.log('|---|---|');
  for (const [goal, met] of goals) {
    console.log(`| ${goal} | ${met === undefined ? 'n/a (no peer)' : met ? 'yes' : 'NO'} |`);
  }
}

await main();

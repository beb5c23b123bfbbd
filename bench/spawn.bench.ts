/**
 * What one `run(['/bin/true'])` costs the caller, next to the usual ways of running a
 * program from Node: calls per second with 1 and 8 calls in flight, locally and through
 * a procsock daemon (started with serve() in a child process), and how long each spawn
 * blocks the event loop. Contenders are interleaved round by round; medians are reported.
 *
 *   npm run bench -- spawn          (or: node --import tsx bench/spawn.bench.ts)
 *   PROCSOCK_SPAWN=child_process npm run bench -- spawn   # the client over Node's own spawn
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnBackendInUse } from '../src/channel/spawn/index.js';
import { run } from '../src/client/exec.js';
import { ratio, recordGoals } from './goals.js';

const ROUNDS = 7;
const CALLS_PER_BATCH = 200;
const PROGRAM = '/bin/true';

type Call = () => Promise<unknown>;
interface Contender {
  name: string;
  /** Starts one call; the synchronous part is what blocks the event loop. */
  call: Call | null;
  missing?: string;
}

async function optional(name: string, load: () => Promise<Call>): Promise<Contender> {
  try {
    return { name, call: await load() };
  } catch (error) {
    return { name, call: null, missing: `not installed (${(error as Error).message})` };
  }
}

function nodeSpawn(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(PROGRAM, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdout.resume();
    child.stderr.resume();
    child.on('error', reject);
    child.on('close', () => resolve());
  });
}

/** Runs `total` calls with `inFlight` of them running at any time; returns calls per second. */
async function batch(call: Call, total: number, inFlight: number): Promise<number> {
  let started = 0;
  const begin = process.hrtime.bigint();
  const worker = async () => {
    while (started < total) {
      started++;
      await call();
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const seconds = Number(process.hrtime.bigint() - begin) / 1e9;
  return total / seconds;
}

/** Median microseconds a call spends before returning its promise (the loop is blocked meanwhile). */
async function blockPerCall(call: Call, samples: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const begin = process.hrtime.bigint();
    const pending = call();
    times.push(Number(process.hrtime.bigint() - begin) / 1e3);
    await pending;
  }
  return median(times);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function startDaemon(): Promise<{ path: string; child: ChildProcess; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'procsock-spawn-bench-'));
  const path = join(dir, 'daemon.sock');
  const server = fileURLToPath(new URL('../src/server/index.ts', import.meta.url));
  const code = `import { serve } from ${JSON.stringify(server)};
await serve({ path: process.argv[1], timeout: 0, policy: { allowRoot: true } });
process.stdout.write('listening\\n');
process.on('SIGTERM', () => process.exit(0));`;
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', code, path],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the daemon exited with ${code}`)));
  });
  return { path, child, dir };
}

const daemon = await startDaemon();
const local: Contender[] = [
  { name: 'procsock run()', call: () => run([PROGRAM]) },
  { name: 'child_process.spawn', call: nodeSpawn },
  await optional('execa', async () => {
    const { execa } = await import('execa');
    return () => execa(PROGRAM);
  }),
  await optional('nano-spawn', async () => {
    const { default: nanoSpawn } = await import('nano-spawn');
    return () => nanoSpawn(PROGRAM);
  }),
  await optional('tinyexec', async () => {
    const { x } = await import('tinyexec');
    return async () => {
      await x(PROGRAM, []);
    };
  }),
];
const viaDaemon: Contender = {
  name: 'procsock run() via daemon',
  call: () => run([PROGRAM], { socket: daemon.path }),
};
const contenders = [...local, viaDaemon];

const rates = new Map<string, number[]>();
const key = (name: string, inFlight: number) => `${name}@${inFlight}`;
try {
  for (const contender of contenders) {
    if (contender.call) await batch(contender.call, 50, 4); // warm up
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const inFlight of [1, 8]) {
      for (const contender of contenders) {
        if (!contender.call) continue;
        const rate = await batch(contender.call, CALLS_PER_BATCH, inFlight);
        const list = rates.get(key(contender.name, inFlight)) ?? [];
        list.push(rate);
        rates.set(key(contender.name, inFlight), list);
      }
    }
  }
  const blocks = new Map<string, number>();
  for (const contender of [local[0]!, local[1]!, viaDaemon]) {
    blocks.set(contender.name, await blockPerCall(contender.call!, 200));
  }

  const rate = (name: string, inFlight: number) => median(rates.get(key(name, inFlight)) ?? [0]);
  const show = (contender: Contender, inFlight: number) =>
    contender.call
      ? `${rate(contender.name, inFlight).toFixed(0)}/s (${(1e6 / rate(contender.name, inFlight)).toFixed(0)} µs)`
      : contender.missing!;
  console.log(`local spawn backend: ${spawnBackendInUse()} (choose with PROCSOCK_SPAWN)`);
  console.log(
    `run ${PROGRAM}: calls per second (µs per call), median of ${ROUNDS} interleaved rounds of ${CALLS_PER_BATCH}\n`,
  );
  console.log(`| in flight | ${contenders.map((c) => c.name).join(' | ')} |`);
  console.log(`|---|${contenders.map(() => '---').join('|')}|`);
  for (const inFlight of [1, 8]) {
    console.log(`| ${inFlight} | ${contenders.map((c) => show(c, inFlight)).join(' | ')} |`);
  }

  console.log('\n| figure | procsock | child_process.spawn | ratio | goal | met |');
  console.log('|---|---|---|---|---|---|');
  for (const inFlight of [1, 8]) {
    const ours = rate('procsock run()', inFlight);
    const node = rate('child_process.spawn', inFlight);
    const ratio = ours / node;
    console.log(
      `| local run(), ${inFlight} in flight | ${ours.toFixed(0)}/s | ${node.toFixed(0)}/s | ${ratio.toFixed(2)}× | ≥ 2× spawn | ${ratio >= 2 ? 'yes' : 'no'} |`,
    );
  }
  const ourBlock = blocks.get('procsock run()')!;
  const nodeBlock = blocks.get('child_process.spawn')!;
  console.log(
    `| event-loop block per local spawn | ${ourBlock.toFixed(0)} µs | ${nodeBlock.toFixed(0)} µs | ${(ourBlock / nodeBlock).toFixed(2)}× | ≤ 0.33× | ${ourBlock <= nodeBlock / 3 ? 'yes' : 'no'} |`,
  );
  for (const inFlight of [1, 8]) {
    const ours = rate(viaDaemon.name, inFlight);
    const node = rate('child_process.spawn', inFlight);
    console.log(
      `| run() via daemon, ${inFlight} in flight | ${ours.toFixed(0)}/s | ${node.toFixed(0)}/s | ${(ours / node).toFixed(2)}× | ≥ 1.0× C sockexec (${inFlight === 1 ? '1,760' : '2,714'}/s reference; see daemon.bench for a same-run comparison) | ${ours >= (inFlight === 1 ? 1760 : 2714) ? 'yes' : 'no'} (vs reference) |`,
    );
  }
  recordGoals([
    ...[1, 8].map((inFlight) => ({
      figure: `local run() calls/s, ${inFlight} in flight`,
      procsock: `${rate('procsock run()', inFlight).toFixed(0)}/s`,
      peer: 'child_process.spawn',
      peerValue: `${rate('child_process.spawn', inFlight).toFixed(0)}/s`,
      ratio: ratio(rate('procsock run()', inFlight), rate('child_process.spawn', inFlight)),
      goal: '≥ 2×',
      met: rate('procsock run()', inFlight) >= 2 * rate('child_process.spawn', inFlight),
    })),
    {
      figure: 'event-loop block per local run() (median)',
      procsock: `${ourBlock.toFixed(0)} µs`,
      peer: 'child_process.spawn',
      peerValue: `${nodeBlock.toFixed(0)} µs`,
      ratio: ratio(ourBlock, nodeBlock),
      goal: '≤ 0.33×',
      met: ourBlock <= nodeBlock / 3,
    },
  ]);
  console.log(
    `| event-loop block per call via daemon | ${blocks.get(viaDaemon.name)!.toFixed(0)} µs | | | | |`,
  );
  for (const peer of local.slice(2)) {
    if (!peer.call) continue;
    for (const inFlight of [1, 8]) {
      console.log(
        `| local run() vs ${peer.name}, ${inFlight} in flight | ${rate('procsock run()', inFlight).toFixed(0)}/s | ${rate(peer.name, inFlight).toFixed(0)}/s (${peer.name}) | ${(rate('procsock run()', inFlight) / rate(peer.name, inFlight)).toFixed(2)}× | | |`,
      );
    }
  }
} finally {
  daemon.child.kill('SIGTERM');
  await new Promise((resolve) => daemon.child.once('exit', resolve));
  rmSync(daemon.dir, { recursive: true, force: true });
}

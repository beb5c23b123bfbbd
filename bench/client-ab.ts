/**
 * The client's own cost of `run(argv, { socket })`, this checkout against another one, in
 * one process: both builds' `run()` are loaded side by side (from their dist/) and batches
 * alternate between them, so the machine's load hits both alike. The daemon answers every
 * request at once (exit 0, no program: a child process of this script), so what is measured
 * is the client: connect, request, reply, result. Prints CPU µs per call (process.cpuUsage)
 * and the median per-round ratio.
 *
 *   npm run build   # here and in the other checkout
 *   node --import tsx bench/client-ab.ts /path/to/other/checkout [rounds] [in flight]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

type Run = (argv: string[], options: { socket: string }) => Promise<unknown>;

const [other, roundsArg = '30', inFlightArg = '8'] = process.argv.slice(2);
if (!other) {
  console.error('usage: node --import tsx bench/client-ab.ts OTHER_CHECKOUT [rounds] [in flight]');
  process.exit(2);
}
const here = fileURLToPath(new URL('..', import.meta.url));
const checkouts = [resolve(other), here];
const runs: Run[] = [];
for (const root of checkouts) {
  const exec = pathToFileURL(join(root, 'dist/client/exec.js')).href;
  runs.push(((await import(exec)) as { run: Run }).run);
}

const dir = mkdtempSync(join(tmpdir(), 'procsock-client-ab-'));
const socket = join(dir, 'answers.sock');
const daemon = spawn(
  process.execPath,
  [
    '-e',
    `require('net').createServer((s) => { s.once('data', () => s.end('8:exitcode,1:0,')); s.on('error', () => {}); }).listen(process.argv[1], () => console.log('up'))`,
    socket,
  ],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
await new Promise((ready) => daemon.stdout!.once('data', ready));

const inFlight = Number(inFlightArg);
async function batch(run: Run, calls: number): Promise<number> {
  let started = 0;
  const before = process.cpuUsage();
  const worker = async () => {
    while (started < calls) {
      started++;
      await run(['/bin/true'], { socket });
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const used = process.cpuUsage(before);
  return (used.user + used.system) / calls;
}
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

try {
  for (const run of runs) await batch(run, 1000); // warm up
  const perCall: number[][] = runs.map(() => []);
  for (let round = 0; round < Number(roundsArg); round++) {
    for (let k = 0; k < runs.length; k++) {
      const i = (k + round) % runs.length;
      perCall[i]!.push(await batch(runs[i]!, 400));
    }
  }
  const ratios = perCall[1]!.map((value, round) => value / perCall[0]![round]!);
  for (const [i, root] of checkouts.entries()) {
    console.log(`${root}: ${median(perCall[i]!).toFixed(1)} µs of client CPU per call`);
  }
  console.log(`this checkout ÷ the other: ×${median(ratios).toFixed(3)} (${inFlight} in flight)`);
} finally {
  daemon.kill();
  rmSync(dir, { recursive: true, force: true });
}

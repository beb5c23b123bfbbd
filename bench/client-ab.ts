/**
 * The client's own cost of one call, this checkout against another one, in one process:
 * both builds are loaded side by side (from their dist/) and batches alternate between
 * them, so the machine's load hits both alike. Through a daemon, the daemon answers every
 * request at once (exit 0, no program: a child process of this script), so what is
 * measured is the client: connect, request, reply, result. Prints CPU µs per call
 * (process.cpuUsage: user + system of this process) and the median per-round ratio.
 *
 *   npm run build   # here and in the other checkout
 *   node --import tsx bench/client-ab.ts /path/to/other/checkout [rounds] [in flight] [mode]
 *
 * Modes (default `run`):
 * - `run`: `run(['/bin/true'], { socket })`;
 * - `exec`: an exec made once by `createExec({ socket })`, called as `exec(['/bin/true'])`;
 * - `session`: `connect(socket)`, `sendArgs`, `sendClose`, `wait()`, `close()`;
 * - `local`: `run(['/bin/true'])`, a real child (PROCSOCK_SPAWN picks the backend; the
 *   program's own CPU is the child's, not counted).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

type Call = () => Promise<unknown>;
interface SessionLike {
  sendArgs(argv: string[]): unknown;
  sendClose(): void;
  wait(): Promise<unknown>;
  close(): Promise<void>;
}
interface Client {
  run(argv: string[], options?: { socket: string }): Promise<unknown>;
  createExec(target: { socket: string }): (argv: string[]) => Promise<unknown>;
}

const MODES = ['run', 'exec', 'session', 'local'] as const;
type Mode = (typeof MODES)[number];

const [other, roundsArg = '30', inFlightArg = '8', modeArg = 'run'] = process.argv.slice(2);
if (!other || !(MODES as readonly string[]).includes(modeArg)) {
  console.error(
    `usage: node --import tsx bench/client-ab.ts OTHER_CHECKOUT [rounds] [in flight] [${MODES.join('|')}]`,
  );
  process.exit(2);
}
const mode = modeArg as Mode;
const here = fileURLToPath(new URL('..', import.meta.url));
const checkouts = [resolve(other), here];

const dir = mkdtempSync(join(tmpdir(), 'procsock-client-ab-'));
const socket = join(dir, 'answers.sock');
const daemon =
  mode === 'local'
    ? null
    : spawn(
        process.execPath,
        [
          '-e',
          `require('net').createServer((s) => { s.once('data', () => s.end('8:exitcode,1:0,')); s.on('error', () => {}); }).listen(process.argv[1], () => console.log('up'))`,
          socket,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
if (daemon) await new Promise((ready) => daemon.stdout!.once('data', ready));

async function load(root: string): Promise<Call> {
  const url = (file: string) => pathToFileURL(join(root, 'dist/client', file)).href;
  const client = (await import(url('exec.js'))) as Client;
  const argv = ['/bin/true'];
  switch (mode) {
    case 'run':
      return () => client.run(argv, { socket });
    case 'exec': {
      const exec = client.createExec({ socket });
      return () => exec(argv);
    }
    case 'session': {
      const { connect } = (await import(url('session.js'))) as {
        connect(target: string): Promise<SessionLike>;
      };
      return async () => {
        const session = await connect(socket);
        session.sendArgs(argv);
        session.sendClose();
        await session.wait();
        await session.close();
      };
    }
    case 'local':
      return () => client.run(argv);
  }
}
const calls: Call[] = [];
for (const root of checkouts) calls.push(await load(root));

const inFlight = Number(inFlightArg);
async function batch(call: Call, count: number): Promise<number> {
  let started = 0;
  const before = process.cpuUsage();
  const worker = async () => {
    while (started < count) {
      started++;
      await call();
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const used = process.cpuUsage(before);
  return (used.user + used.system) / count;
}
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

// A local call spawns a real program (about a millisecond): fewer of them per batch.
const perBatch = mode === 'local' ? 100 : 400;
try {
  for (const call of calls) await batch(call, perBatch * 2.5); // warm up
  const perCall: number[][] = calls.map(() => []);
  for (let round = 0; round < Number(roundsArg); round++) {
    for (let k = 0; k < calls.length; k++) {
      const i = (k + round) % calls.length;
      perCall[i]!.push(await batch(calls[i]!, perBatch));
    }
  }
  const ratios = perCall[1]!.map((value, round) => value / perCall[0]![round]!);
  for (const [i, root] of checkouts.entries()) {
    console.log(`${root}: ${median(perCall[i]!).toFixed(1)} µs of client CPU per call`);
  }
  console.log(
    `this checkout ÷ the other: ×${median(ratios).toFixed(3)} (${mode}, ${inFlight} in flight)`,
  );
} finally {
  daemon?.kill();
  rmSync(dir, { recursive: true, force: true });
}

/**
 * The daemon's throughput, through a minimal raw client (its cost is small and the same
 * for every daemon measured):
 *   - connections per second running /bin/true, 1 and 8 connections in flight, and the
 *     daemon's CPU per connection (its threads' run time over the round, from schedstat);
 *   - MB/s streaming 1 GiB of `head -c 1073741824 /dev/zero` to a fast reader, and the
 *     daemon's peak RSS (VmHWM), also after a slow reader streamed 256 MiB.
 * The C sockexec is measured too, in the same run, when env SOCKEXEC names its binary.
 *
 *   npm run bench -- daemon          (or: node --import tsx bench/daemon.bench.ts)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { isListening } from '../test/helpers/daemon.js';
import { buildCLoop, cLoopRate } from './c-loop.js';
import { formatGoalTable, type GoalRow, ratio as ratioOf, recordGoals } from './goals.js';

const ROUNDS = 5;
/** Reference figures of the C daemon (sockexec 3.1.1; see bench/README.md), used when SOCKEXEC is not set. */
const SOCKEXEC_REFERENCE = { 1: 1760, 8: 2714, streamMBps: 694 } as const;
const RSS_GOAL_MB = 99; // "tens of MB"
/**
 * Both daemons run without their default 60 s deadline (`-t 0`, the same flag for both): on a
 * loaded machine the slow reader's 256 MiB can take longer, and the deadline then ends it.
 */
const NO_DEADLINE = ['-t', '0'];

const ROUND_MS = 1000;
const CONTAINED = 'procsock contained';
const STREAM_BYTES = 1024 * 1024 * 1024;
const SLOW_BYTES = 256 * 1024 * 1024;

interface Daemon {
  name: string;
  path: string;
  process: ChildProcess;
}

function ns(text: string): string {
  return `${Buffer.byteLength(text)}:${text},`;
}

function requestBytes(argv: string[]): Buffer {
  return Buffer.from(ns(String(argv.length)) + argv.map(ns).join('') + ns(''));
}

async function startDaemon(name: string, command: string, args: string[]): Promise<Daemon> {
  const dir = mkdtempSync(join(tmpdir(), 'procsock-bench-'));
  const path = join(dir, 'daemon.sock');
  const child = spawn(command, [...args, path], { stdio: ['ignore', 'ignore', 'inherit'] });
  const deadline = Date.now() + 10_000;
  while (!isListening(path)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`${name} did not start`);
    await delay(10);
  }
  child.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  // A bench that fails (a stuck peer) must not leave its daemons running.
  process.once('exit', () => child.kill());
  return { name, path, process: child };
}

/** True when `file` exists and is newer than every .ts file under `dir`. */
function isFresh(file: string, dir: string): boolean {
  if (!existsSync(file)) return false;
  const builtAt = statSync(file).mtimeMs;
  const newest = (path: string): number =>
    readdirSync(path, { withFileTypes: true }).reduce((latest, entry) => {
      const child = join(path, entry.name);
      if (entry.isDirectory()) return Math.max(latest, newest(child));
      return entry.name.endsWith('.ts') ? Math.max(latest, statSync(child).mtimeMs) : latest;
    }, 0);
  return newest(dir) <= builtAt;
}

async function stopDaemon(daemon: Daemon): Promise<void> {
  if (daemon.process.exitCode !== null || daemon.process.signalCode !== null) return;
  const exited = new Promise((resolve) => daemon.process.once('exit', resolve));
  daemon.process.kill('SIGTERM');
  await exited;
}

/** Longest silence of a daemon connection: past it the daemon is stuck, and the bench says so. */
const STALL_MS = 30_000;

/** Fails a connection that has been silent for STALL_MS, instead of waiting for ever. */
function failOnStall(socket: Socket, daemon: Daemon, reject: (error: Error) => void): void {
  socket.setTimeout(STALL_MS, () => {
    socket.destroy();
    reject(new Error(`${daemon.name} sent nothing for ${STALL_MS / 1000} s: it is stuck`));
  });
}

/** One connection: send the request, read until the daemon closes, return the bytes received. */
function exchange(
  daemon: Daemon,
  request: Buffer,
  onData?: (chunk: Buffer) => void,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path: daemon.path });
    let last: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      onData?.(chunk);
      last = chunk.length >= 32 ? chunk : Buffer.concat([last, chunk]).subarray(-32);
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(last));
    failOnStall(socket, daemon, reject);
    socket.write(request);
  });
}

const TRUE_REQUEST = requestBytes(['/bin/true']);
const TRUE_REPLY = Buffer.from('8:exitcode,1:0,');

/**
 * CPU seconds the process has used so far, all its threads (not its children): the sum of
 * each thread's run time in /proc/PID/task/TID/schedstat (ns; /proc/PID/stat's utime + stime
 * in 10 ms ticks made a 1 s round's figure jump by 8%). A thread that ended meanwhile is left
 * out; the daemons' threads live as long as they do.
 */
function cpuSeconds(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // (the thread ended)
    }
  }
  return ns / 1e9;
}

/** Connections per second, and the daemon's CPU µs per connection, over one round. */
async function connectionsPerSecond(
  daemon: Daemon,
  concurrency: number,
  ms: number,
): Promise<{ rate: number; cpuPerConnection: number }> {
  let done = 0;
  const stopAt = performance.now() + ms;
  const worker = async () => {
    while (performance.now() < stopAt) {
      const tail = await exchange(daemon, TRUE_REQUEST);
      if (!tail.subarray(-TRUE_REPLY.length).equals(TRUE_REPLY)) {
        throw new Error(`${daemon.name}: unexpected reply ${tail.toString('latin1')}`);
      }
      done++;
    }
  };
  const start = performance.now();
  const cpuBefore = cpuSeconds(daemon.process.pid!);
  await Promise.all(Array.from({ length: concurrency }, worker));
  const cpu = cpuSeconds(daemon.process.pid!) - cpuBefore;
  return {
    rate: (done * 1000) / (performance.now() - start),
    cpuPerConnection: (cpu * 1e6) / Math.max(done, 1),
  };
}

async function streamMBps(daemon: Daemon, bytes: number, slow: boolean): Promise<number> {
  let received = 0;
  const request = requestBytes(['head', '-c', String(bytes), '/dev/zero']);
  const start = performance.now();
  const tail = await new Promise<Buffer>((resolve, reject) => {
    const socket = connect({ path: daemon.path });
    let last: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      last = Buffer.concat([last, chunk]).subarray(-32);
      if (slow) {
        // A slow reader: 1 ms pause per chunk.
        socket.pause();
        setTimeout(() => socket.resume(), 1);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(last));
    failOnStall(socket, daemon, reject);
    socket.write(request);
  });
  const seconds = (performance.now() - start) / 1000;
  if (!tail.subarray(-TRUE_REPLY.length).equals(TRUE_REPLY) || received < bytes) {
    throw new Error(`${daemon.name}: stream ended badly after ${received} bytes`);
  }
  return bytes / 1e6 / seconds;
}

function peakRssMB(pid: number): number {
  if (!existsSync(`/proc/${pid}/status`)) return Number.NaN; // a peer that crashed
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN) / 1024;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function fmt(value: number | undefined, digits = 0): string {
  return value === undefined ? '—' : value.toFixed(digits);
}

async function main(): Promise<void> {
  const root = fileURLToPath(new URL('..', import.meta.url));
  // The built daemon when dist/ is up to date (`npm run bench` builds it), else the source
  // through tsx (same code; tsx only adds start-up time and some resident memory).
  const built = join(root, 'dist/cli/main.js');
  const procsockArgs = isFresh(built, join(root, 'src'))
    ? [built, 'serve', '--allow-root', ...NO_DEADLINE]
    : ['--import', 'tsx', join(root, 'src/cli/main.ts'), 'serve', '--allow-root', ...NO_DEADLINE];
  // Like for like with sockexec, which contains nothing: the compared daemon runs uncontained
  // (--no-contain). Its default, contained, is measured alongside for what containment costs.
  const daemons: Daemon[] = [
    await startDaemon('procsock', process.execPath, [...procsockArgs, '--no-contain']),
  ];
  const sockexec = process.env.SOCKEXEC;
  if (sockexec) daemons.push(await startDaemon('sockexec', sockexec, NO_DEADLINE));
  else console.log('C sockexec: not installed (set SOCKEXEC=/path/to/sockexec to measure it too)');
  console.log(`procsock daemon: node ${procsockArgs.join(' ')} --no-contain SOCKET`);
  const contained = await startDaemon(CONTAINED, process.execPath, procsockArgs);

  const rssStart: Record<string, number> = {};
  for (const daemon of daemons) rssStart[daemon.name] = peakRssMB(daemon.process.pid!);
  const rates: Record<string, Record<number, number[]>> = {};
  const cpu: Record<string, Record<number, number[]>> = {};
  for (const daemon of [...daemons, contained]) {
    rates[daemon.name] = { 1: [], 8: [] };
    cpu[daemon.name] = { 1: [], 8: [] };
    await connectionsPerSecond(daemon, 8, 300); // warm up
  }
  // The floor: a C loop of posix_spawn + waitpid, interleaved with the daemons.
  const cLoop = buildCLoop();
  if (!cLoop.path) console.log(`C posix_spawn loop: not available (${cLoop.why})`);
  const cRates: Record<number, number[]> = { 1: [], 8: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const concurrency of [1, 8]) {
      for (const daemon of [...daemons, contained]) {
        const { rate, cpuPerConnection } = await connectionsPerSecond(
          daemon,
          concurrency,
          ROUND_MS,
        );
        rates[daemon.name]![concurrency]!.push(rate);
        cpu[daemon.name]![concurrency]!.push(cpuPerConnection);
      }
      if (cLoop.path) {
        const count = Math.max(
          300,
          Math.round((median(rates.procsock![concurrency]!) * 2 * ROUND_MS) / 1000),
        );
        cRates[concurrency]!.push(cLoopRate(cLoop.path, concurrency, count, '/bin/true'));
      }
    }
  }
  cLoop.cleanup();
  await stopDaemon(contained);

  const rssConnections: Record<string, number> = {};
  for (const daemon of daemons) rssConnections[daemon.name] = peakRssMB(daemon.process.pid!);
  // A peer that fails a stream (the C sockexec can crash on 1 GiB) is reported as failed, and
  // not streamed to again; procsock failing one fails the bench.
  const failed: Record<string, string> = {};
  const stream = async (daemon: Daemon, bytes: number, slow: boolean): Promise<number> => {
    if (failed[daemon.name]) return Number.NaN;
    try {
      return await streamMBps(daemon, bytes, slow);
    } catch (error) {
      if (daemon.name === 'procsock') throw error;
      failed[daemon.name] = (error as Error).message;
      console.log(`${daemon.name} failed a stream: ${failed[daemon.name]}`);
      return Number.NaN;
    }
  };
  // The slow reader first, so that its peak RSS is its own, then the fast streams.
  const rssSlow: Record<string, number> = {};
  for (const daemon of daemons) {
    await stream(daemon, SLOW_BYTES, true);
    rssSlow[daemon.name] = peakRssMB(daemon.process.pid!);
  }
  const streams: Record<string, number[]> = {};
  for (const daemon of daemons) streams[daemon.name] = [];
  for (let round = 0; round < 3; round++) {
    for (const daemon of daemons) {
      streams[daemon.name]!.push(await stream(daemon, STREAM_BYTES, false));
    }
  }
  const rssFast: Record<string, number> = {};
  for (const daemon of daemons) rssFast[daemon.name] = peakRssMB(daemon.process.pid!);

  const p = 'procsock';
  const s = sockexec ? 'sockexec' : undefined;
  const rows: GoalRow[] = [];
  for (const concurrency of [1, 8] as const) {
    const mine = median(rates[p]![concurrency]!);
    const floor = cRates[concurrency]!.length > 0 ? median(cRates[concurrency]!) : undefined;
    const figure = `daemon /bin/true conn/s, ${concurrency} in flight`;
    rows.push({
      figure,
      procsock: `${fmt(mine)}/s`,
      peer: 'C posix_spawn loop (same run)',
      peerValue: floor === undefined ? `not built (${cLoop.why})` : `${fmt(floor)}/s`,
      ratio: ratioOf(mine, floor),
      goal:
        concurrency === 1
          ? 'client + daemon ≥ 0.8× the loop'
          : 'for scale (the loop uses both cores)',
      ...(concurrency === 1 ? { met: floor === undefined ? null : mine >= 0.8 * floor } : {}),
    });
    const peer = s ? median(rates[s]![concurrency]!) : SOCKEXEC_REFERENCE[concurrency];
    rows.push({
      figure,
      procsock: `${fmt(mine)}/s`,
      peer: s ? 'C sockexec (same run)' : 'C sockexec (not installed: reference figure)',
      peerValue: `${fmt(peer)}/s`,
      ratio: ratioOf(mine, peer),
      goal: '≥ 1.0×',
      met: mine >= peer,
    });
    const inside = median(rates[CONTAINED]![concurrency]!);
    rows.push({
      figure: `${figure}, contained (the default)`,
      procsock: `${fmt(inside)}/s`,
      peer: 'procsock --no-contain (same run)',
      peerValue: `${fmt(mine)}/s`,
      ratio: ratioOf(inside, mine),
      goal: 'what containment costs',
    });
    const mineCpu = median(cpu[p]![concurrency]!);
    const peerCpu = s ? median(cpu[s]![concurrency]!) : undefined;
    rows.push({
      figure: `daemon CPU per connection, ${concurrency} in flight`,
      procsock: `${fmt(mineCpu)} µs`,
      peer: s ? 'C sockexec (same run)' : 'C sockexec',
      peerValue: peerCpu === undefined ? 'not installed' : `${fmt(peerCpu)} µs`,
      ratio: ratioOf(mineCpu, peerCpu),
      goal: '≤ 1.0× (the C daemon’s)',
      ...(peerCpu === undefined ? {} : { met: mineCpu <= peerCpu }),
    });
  }
  const mineStream = median(streams[p]!);
  const peerStream = s ? median(streams[s]!) : SOCKEXEC_REFERENCE.streamMBps;
  rows.push({
    figure: 'daemon: stream 1 GiB of head -c to a fast reader',
    procsock: `${fmt(mineStream)} MB/s`,
    peer: s ? 'C sockexec (same run)' : 'C sockexec (not installed: reference figure)',
    peerValue: s && failed[s] ? 'failed (see above)' : `${fmt(peerStream)} MB/s`,
    ratio: ratioOf(mineStream, peerStream),
    goal: '≥ 1000 MB/s',
    met: mineStream >= 1000,
  });
  const rss = (figure: string, values: Record<string, number>, goal?: boolean) => {
    rows.push({
      figure,
      procsock: `${fmt(values[p], 1)} MB`,
      peer: s ? 'C sockexec (same run)' : 'C sockexec',
      peerValue: s ? `${fmt(values[s], 1)} MB` : 'not installed',
      ratio: '',
      goal: goal ? `≤ ${RSS_GOAL_MB} MB (tens of MB)` : 'for scale',
      ...(goal ? { met: values[p]! <= RSS_GOAL_MB } : {}),
    });
  };
  rss('daemon RSS at start', rssStart);
  rss('daemon peak RSS after the conn/s runs', rssConnections);
  rss('daemon peak RSS after a slow reader took 256 MiB', rssSlow, true);
  rss('daemon peak RSS after the 1 GiB streams', rssFast, true);
  console.log(formatGoalTable(rows));
  console.log(
    `(median of ${ROUNDS} rounds of ${ROUND_MS} ms for conn/s, of 3 streams for MB/s; contenders interleaved)`,
  );
  recordGoals(rows);
  for (const daemon of daemons) await stopDaemon(daemon);
}

await main();

/**
 * Why the daemon: the event-loop delay of a web server (examples/http-server.ts) while it
 * serves a steady 200 requests/s of GET /uname, each request running `uname` —
 *   - directly, its own child (`PROCSOCK_SPAWN=child_process`: libuv forks the whole Node
 *     process on the event loop; `PROCSOCK_SPAWN=native`: the addon, when built);
 *   - through the procsock daemon, a separate process (`procsock serve`).
 * Each server runs in its own process and measures itself with
 * `perf_hooks.monitorEventLoopDelay` (1 ms resolution) while this process drives the load
 * (open loop: requests are sent on schedule, whether or not earlier ones have finished).
 * Servers are started once; rounds are interleaved; the median round is reported.
 *
 *   npm run bench -- eventloop        (or: node --import tsx bench/eventloop.bench.ts)
 *   BENCH_RATE=100 npm run bench -- eventloop    (another rate)
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { Agent, get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { isListening } from '../test/helpers/daemon.js';

const RATE = Number(process.env.BENCH_RATE) || 200; // requests per second
const ROUND_MS = 5000;
const WARMUP_MS = 1000;
const ROUNDS = 3;
const MAX_IN_FLIGHT = 200;

interface LoopDelay {
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

type ServerMessage = { type: 'listening'; port: number } | { type: 'delay'; delay: LoopDelay };

// ---- server role: one example server, measuring its own event loop on request ----------

async function serveRole(): Promise<void> {
  const { startHttpServer } = await import('../examples/http-server.js');
  const socket = process.env.BENCH_SOCKET || undefined;
  const example = await startHttpServer({ socket, log: () => {} });
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  process.on('message', (message: string) => {
    if (message === 'start') {
      histogram.reset();
      histogram.enable();
    } else if (message === 'stop') {
      histogram.disable();
      const ms = (ns: number) => ns / 1e6;
      const delay: LoopDelay = {
        p50: ms(histogram.percentile(50)),
        p99: ms(histogram.percentile(99)),
        max: ms(histogram.max),
        mean: ms(histogram.mean),
      };
      process.send!({ type: 'delay', delay } satisfies ServerMessage);
    } else if (message === 'exit') {
      void example.close().then(() => process.exit(0));
    }
  });
  process.send!({ type: 'listening', port: example.port } satisfies ServerMessage);
}

// ---- driver role ------------------------------------------------------------------------

interface Contender {
  name: string;
  server: ChildProcess | null;
  port: number;
  /** Why it is not measured (e.g. the native addon is not built). */
  missing?: string;
  rounds: Round[];
}

interface Round {
  delay: LoopDelay;
  done: number;
  failed: number;
  dropped: number;
  latencyP50: number;
  latencyP99: number;
}

function nextMessage<T extends ServerMessage['type']>(
  child: ChildProcess,
  type: T,
): Promise<Extract<ServerMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: ServerMessage) => {
      if (message.type !== type) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(message as Extract<ServerMessage, { type: T }>);
    };
    const onExit = (code: number | null) => reject(new Error(`server exited (${code})`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

async function startServer(name: string, env: NodeJS.ProcessEnv): Promise<Contender> {
  const server = fork(fileURLToPath(import.meta.url), ['--serve'], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const { port } = await nextMessage(server, 'listening');
  return { name, server, port, rounds: [] };
}

async function startDaemon(): Promise<{ path: string; child: ChildProcess; dir: string }> {
  const cli = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
  if (!existsSync(cli)) throw new Error('dist/ is missing: run npm run build (npm run bench does)');
  const dir = mkdtempSync(join(tmpdir(), 'procsock-bench-'));
  const path = join(dir, 'daemon.sock');
  const child = spawn(process.execPath, [cli, 'serve', '--allow-root', '-t', '0', path], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const deadline = Date.now() + 10_000;
  while (!isListening(path)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error('daemon did not start');
    await delay(10);
  }
  return { path, child, dir };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Sends RATE requests/s for `ms` to the contender; resolves once all have finished. */
async function load(contender: Contender, ms: number, agent: Agent): Promise<Omit<Round, 'delay'>> {
  const latencies: number[] = [];
  let failed = 0;
  let dropped = 0;
  let inFlight = 0;
  const pending = new Set<Promise<void>>();
  const request = () =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      inFlight++;
      const finish = (ok: boolean) => {
        inFlight--;
        if (ok) latencies.push(performance.now() - started);
        else failed++;
        resolve();
      };
      get({ host: '127.0.0.1', port: contender.port, path: '/uname', agent }, (res) => {
        res.resume();
        res.on('end', () => finish(res.statusCode === 200 && res.trailers['x-exit-code'] === '0'));
        res.on('error', () => finish(false));
      }).on('error', () => finish(false));
    });
  const start = performance.now();
  let sent = 0;
  while (performance.now() - start < ms) {
    const due = Math.floor(((performance.now() - start) / 1000) * RATE);
    for (; sent < due; sent++) {
      if (inFlight >= MAX_IN_FLIGHT) {
        dropped++;
        continue;
      }
      const done = request();
      pending.add(done);
      void done.then(() => pending.delete(done));
    }
    await delay(2);
  }
  await Promise.all(pending);
  latencies.sort((a, b) => a - b);
  return {
    done: latencies.length,
    failed,
    dropped,
    latencyP50: percentile(latencies, 50),
    latencyP99: percentile(latencies, 99),
  };
}

async function measure(contender: Contender, ms: number, agent: Agent): Promise<Round> {
  const server = contender.server!;
  server.send('start');
  const result = await load(contender, ms, agent);
  server.send('stop');
  const { delay: loopDelay } = await nextMessage(server, 'delay');
  return { ...result, delay: loopDelay };
}

function median(rounds: Round[]): Round {
  const sorted = [...rounds].sort((a, b) => a.delay.p99 - b.delay.p99);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '—');

async function driverRole(): Promise<void> {
  let nativeBuilt = false;
  try {
    nativeBuilt = (await import('../src/native/addon.js')).addonAvailable();
  } catch {}
  const daemon = await startDaemon();
  const contenders: Contender[] = [
    await startServer('direct spawn, child_process', { PROCSOCK_SPAWN: 'child_process' }),
    nativeBuilt
      ? await startServer('direct spawn, native addon', { PROCSOCK_SPAWN: 'native' })
      : {
          name: 'direct spawn, native addon',
          server: null,
          port: 0,
          missing: 'not built',
          rounds: [],
        },
    await startServer('via the daemon (own process, its default backend)', {
      BENCH_SOCKET: daemon.path,
    }),
  ];
  const live = contenders.filter((contender) => contender.server);
  const agent = new Agent({ keepAlive: true, maxSockets: MAX_IN_FLIGHT });
  try {
    // An idle server's loop, for scale: what the timer resolution and GC alone cost.
    const idle = live.at(-1)!;
    idle.server!.send('start');
    await delay(2000);
    idle.server!.send('stop');
    const idleDelay = (await nextMessage(idle.server!, 'delay')).delay;
    for (const contender of live) await load(contender, WARMUP_MS, agent);
    for (let round = 0; round < ROUNDS; round++) {
      for (const contender of live)
        contender.rounds.push(await measure(contender, ROUND_MS, agent));
    }
    print(contenders, idleDelay);
  } finally {
    agent.destroy();
    for (const contender of live) contender.server!.send('exit');
    await Promise.all(
      live.map((contender) => new Promise((resolve) => contender.server!.once('exit', resolve))),
    );
    daemon.child.kill('SIGTERM');
    await new Promise((resolve) => daemon.child.once('exit', resolve));
    rmSync(daemon.dir, { recursive: true, force: true });
  }
}

function print(contenders: Contender[], idle: LoopDelay): void {
  console.log(
    `web server event-loop delay, ${RATE} req/s of GET /uname for ${ROUND_MS / 1000} s, ` +
      `median of ${ROUNDS} interleaved rounds (by p99); times in ms\n`,
  );
  console.log(
    '| server runs `uname` | loop p50 | loop p99 | loop max | req done | failed/dropped | request p50 | request p99 | p99 vs child_process |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  console.log(
    `| (idle server, no load) | ${f1(idle.p50)} | ${f1(idle.p99)} | ${f1(idle.max)} | — | — | — | — | — |`,
  );
  const reference = contenders[0]!.rounds.length ? median(contenders[0]!.rounds) : null;
  for (const contender of contenders) {
    if (contender.missing) {
      console.log(`| ${contender.name} | ${contender.missing} | | | | | | | |`);
      continue;
    }
    const m = median(contender.rounds);
    const ratio = reference ? m.delay.p99 / reference.delay.p99 : Number.NaN;
    console.log(
      `| ${contender.name} | ${f1(m.delay.p50)} | ${f1(m.delay.p99)} | ${f1(m.delay.max)} | ${m.done} | ${m.failed}/${m.dropped} | ${f1(m.latencyP50)} | ${f1(m.latencyP99)} | ${f1(ratio)}× |`,
    );
  }
  const daemon = contenders.at(-1)!;
  if (reference && daemon.rounds.length) {
    const ratio = median(daemon.rounds).delay.p99 / reference.delay.p99;
    console.log(
      `\ngoal: via the daemon, the server's loop p99 below direct child_process spawning: ${f1(ratio)}× — ${ratio < 1 ? 'met' : 'NOT met'}`,
    );
  }
}

if (process.argv.includes('--serve')) await serveRole();
else await driverRole();

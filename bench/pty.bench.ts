/**
 * PTY mode beside pipes, measured in the same run: spawns/s of `/bin/true` (LocalChannel on
 * the native backend, 1 and 8 in flight) with pipes and with a terminal, and throughput of
 * `head -c N /dev/zero` read through each; node-pty doing the same where it is installed
 * (PROCSOCK_BENCH_NODE_PTY=/path/to/node_modules/node-pty, or `node-pty` resolvable from
 * here; it is not a dependency of procsock: it compiles at install).
 *   npm run bench -- pty          (BENCH_ROUNDS, BENCH_SECONDS, BENCH_PTY_MB to change the effort)
 * Goals: pty spawns/s and MB/s at least node-pty's (it forks the whole Node process in a
 * synchronous call; procsock clones without copying it); and, for scale, ÷ pipes.
 */
import { createRequire } from 'node:module';
import { LocalChannel } from '../src/channel/local.js';
import { addonAvailable, addonLoadError } from '../src/native/addon.js';
import { ratio, recordGoals } from './goals.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 0.5);
const MEGABYTES = Number(process.env.BENCH_PTY_MB ?? 64);

interface NodePty {
  spawn(
    file: string,
    args: string[],
    options: { cols?: number; rows?: number; encoding?: string | null },
  ): {
    onData(listener: (data: Buffer | string) => void): void;
    onExit(listener: (exit: { exitCode: number; signal?: number }) => void): void;
  };
}

function loadNodePty(): { pty: NodePty | null; why: string } {
  const require = createRequire(import.meta.url);
  const where = process.env.PROCSOCK_BENCH_NODE_PTY ?? 'node-pty';
  try {
    return { pty: require(where) as NodePty, why: '' };
  } catch (error) {
    return { pty: null, why: `not installed (${(error as Error).message.split('\n')[0]})` };
  }
}

type Once = () => Promise<number>;

function channelRun(argv: string[], pty: boolean): Once {
  return () =>
    new Promise((resolve, reject) => {
      const channel = new LocalChannel(argv, { spawnBackend: 'native', ...(pty ? { pty } : {}) });
      let bytes = 0;
      channel.on('output', ({ data }) => {
        bytes += data.length;
      });
      channel.end();
      channel.done().then(() => resolve(bytes), reject);
    });
}

function nodePtyRun(pty: NodePty, argv: string[]): Once {
  return () =>
    new Promise((resolve) => {
      const child = pty.spawn(argv[0]!, argv.slice(1), { cols: 80, rows: 24, encoding: null });
      let bytes = 0;
      child.onData((data) => {
        bytes += data.length;
      });
      child.onExit(() => resolve(bytes));
    });
}

/** Runs per second over about SECONDS, `concurrency` in flight. */
async function rate(once: Once, concurrency: number): Promise<number> {
  const start = performance.now();
  const deadline = start + SECONDS * 1000;
  let count = 0;
  const lane = async () => {
    while (performance.now() < deadline) {
      await once();
      count++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return count / ((performance.now() - start) / 1000);
}

/** Runs that ended with output missing (the exit reported before the last bytes), by contender. */
const shortRuns: Record<string, { runs: number; bytes: number }> = {};

/** This process's CPU (user + system) per MB read, by contender: the figure load does not skew. */
const cpuPerMb: Record<string, number[]> = {};

/** MB/s of one run reading its output (what arrived by the time it was reported ended). */
async function throughput(name: string, once: Once): Promise<number> {
  const start = performance.now();
  const cpu = process.cpuUsage();
  const bytes = await once();
  const used = process.cpuUsage(cpu);
  cpuPerMb[name] ??= [];
  cpuPerMb[name].push((used.user + used.system) / 1000 / (bytes / 1e6));
  const missing = MEGABYTES * 1024 * 1024 - bytes;
  if (missing > 0) {
    shortRuns[name] ??= { runs: 0, bytes: 0 };
    shortRuns[name].runs++;
    shortRuns[name].bytes += missing;
  }
  return bytes / 1e6 / ((performance.now() - start) / 1000);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

async function main(): Promise<void> {
  if (!addonAvailable()) {
    console.log(
      `native backend: NOT BUILT (${addonLoadError()?.message.split('\n')[0]}): PTY mode needs it`,
    );
    return;
  }
  const { pty: nodePty, why } = loadNodePty();
  console.log(`node-pty: ${nodePty ? 'loaded' : why}`);
  const truth = ['/bin/true'];
  const stream = ['head', '-c', String(MEGABYTES * 1024 * 1024), '/dev/zero'];
  const spawners: Record<string, Once | null> = {
    pipes: channelRun(truth, false),
    pty: channelRun(truth, true),
    'node-pty': nodePty ? nodePtyRun(nodePty, truth) : null,
  };
  const streamers: Record<string, Once | null> = {
    pipes: channelRun(stream, false),
    pty: channelRun(stream, true),
    'node-pty': nodePty ? nodePtyRun(nodePty, stream) : null,
  };
  const spawns: Record<string, Record<number, number[]>> = {};
  const mbps: Record<string, number[]> = {};
  for (const once of Object.values(spawners)) if (once) await rate(once, 2); // warm up
  for (let round = 0; round < ROUNDS; round++) {
    for (const concurrency of [1, 8]) {
      for (const [name, once] of Object.entries(spawners)) {
        if (!once) continue;
        spawns[name] ??= {};
        const byConcurrency = spawns[name];
        byConcurrency[concurrency] ??= [];
        byConcurrency[concurrency].push(await rate(once, concurrency));
      }
    }
    for (const [name, once] of Object.entries(streamers)) {
      if (!once) continue;
      mbps[name] ??= [];
      mbps[name].push(await throughput(name, once));
    }
  }
  const spawnRate = (name: string, c: number) =>
    spawns[name]?.[c] ? median(spawns[name][c]) : Number.NaN;
  const speed = (name: string) => (mbps[name] ? median(mbps[name]) : Number.NaN);

  console.log(
    `\n${ROUNDS} rounds, interleaved; median. Output: ${MEGABYTES} MiB of head -c /dev/zero`,
  );
  console.log('\n| | pipes | pty | node-pty | pty ÷ pipes | pty ÷ node-pty |');
  console.log('|---|---|---|---|---|---|');
  for (const c of [1, 8]) {
    console.log(
      `| spawns/s of /bin/true, ${c} in flight | ${fmt(spawnRate('pipes', c))} | ${fmt(spawnRate('pty', c))} | ${fmt(spawnRate('node-pty', c))} | ${ratio(spawnRate('pty', c), spawnRate('pipes', c))} | ${ratio(spawnRate('pty', c), spawnRate('node-pty', c))} |`,
    );
  }
  console.log(
    `| MB/s read | ${fmt(speed('pipes'))} | ${fmt(speed('pty'))} | ${fmt(speed('node-pty'))} | ${ratio(speed('pty'), speed('pipes'))} | ${ratio(speed('pty'), speed('node-pty'))} |`,
  );
  // Lower is better: the ratios are the other's ÷ pty's, so that above 1× still means better.
  const cpu = (name: string) => (cpuPerMb[name] ? median(cpuPerMb[name]) : Number.NaN);
  console.log(
    `| CPU ms per MB read (this process) | ${fmt(cpu('pipes'), 2)} | ${fmt(cpu('pty'), 2)} | ${fmt(cpu('node-pty'), 2)} | ${ratio(cpu('pipes'), cpu('pty'))} | ${ratio(cpu('node-pty'), cpu('pty'))} |`,
  );

  for (const name of Object.keys(mbps)) {
    const short = shortRuns[name];
    console.log(
      `${name}: ${short ? `${short.runs} of ${ROUNDS} runs ended with output missing (${short.bytes} bytes in all)` : 'every byte of every run arrived'}`,
    );
  }

  const peerMissing = nodePty === null;
  const peerValue = (value: number, unit: string) => (peerMissing ? why : `${fmt(value)}${unit}`);
  recordGoals([
    {
      figure: 'pty spawns/s (LocalChannel native), 1 in flight',
      procsock: `${fmt(spawnRate('pty', 1))}/s`,
      peer: 'node-pty',
      peerValue: peerValue(spawnRate('node-pty', 1), '/s'),
      ratio: ratio(spawnRate('pty', 1), peerMissing ? undefined : spawnRate('node-pty', 1)),
      goal: '≥ node-pty',
      met: peerMissing ? null : spawnRate('pty', 1) >= spawnRate('node-pty', 1),
    },
    {
      figure: 'pty spawns/s, 1 in flight',
      procsock: `${fmt(spawnRate('pty', 1))}/s`,
      peer: 'pipes (same run)',
      peerValue: `${fmt(spawnRate('pipes', 1))}/s`,
      ratio: ratio(spawnRate('pty', 1), spawnRate('pipes', 1)),
      goal: 'for scale (a pty spawn opens a terminal and waits for the exec)',
    },
    {
      figure: `pty throughput, ${MEGABYTES} MiB read`,
      procsock: `${fmt(speed('pty'))} MB/s`,
      peer: 'node-pty',
      peerValue: peerValue(speed('node-pty'), ' MB/s'),
      ratio: ratio(speed('pty'), peerMissing ? undefined : speed('node-pty')),
      goal: '≥ node-pty',
      met: peerMissing ? null : speed('pty') >= speed('node-pty'),
    },
    {
      figure: `pty throughput, ${MEGABYTES} MiB read`,
      procsock: `${fmt(speed('pty'))} MB/s`,
      peer: 'pipes (same run)',
      peerValue: `${fmt(speed('pipes'))} MB/s`,
      ratio: ratio(speed('pty'), speed('pipes')),
      goal: "for scale (the kernel's terminal buffer is 4 KiB pieces)",
    },
    {
      figure: `pty runs that lost output at exit (${MEGABYTES} MiB each)`,
      procsock: `${shortRuns.pty?.runs ?? 0} of ${ROUNDS}`,
      peer: 'node-pty',
      peerValue: peerMissing ? why : `${shortRuns['node-pty']?.runs ?? 0} of ${ROUNDS}`,
      ratio: '—',
      goal: 'none lost',
      met: (shortRuns.pty?.runs ?? 0) === 0,
    },
  ]);
}

await main();

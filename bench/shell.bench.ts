/**
 * Round trips per second of a trivial command (`echo hi`): through one persistent bash
 * driven by `Shell` (POSIX preset: fresh marker, stdout + stderr + exit status per run),
 * against a fresh `bash -c 'echo hi'` per command, in one run, interleaved rounds, median.
 *   npm run bench -- shell          (BENCH_ROUNDS, BENCH_SECONDS to change the effort)
 * Goal (bench/README.md): Shell ≥ 1.0× Go shexec (10,900–12,000/s on the reference machine,
 * where a fresh `bash -c` did 900–1,000/s) while also capturing each exit status.
 * With a Go toolchain (`apt-get install golang-go`) the peer is measured in the same run:
 * bench/go/shexec_scheme.go, Go driving bash the way shexec does (no exit status, no stdin
 * isolation); without one, the row compares with the reference figure and says so.
 *
 * Where a run's time goes (README, Performance): bash reads the driver's pipe one byte per
 * read(), and every extra shell construct in the framed line costs it; the driver is idle
 * most of the time. A plain fixed sentinel (shexec's scheme, also measured here) shows what
 * the exit status and the stdin isolation cost.
 */
import { spawn, spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { LocalChannel } from '../src/channel/local.js';
import { Shell } from '../src/shell/index.js';
import { formatGoalTable, type GoalRow, ratio as ratioOf, recordGoals } from './goals.js';
import { type BuiltPeer, buildPeer, peerSource } from './peer.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);
const COMMAND = 'echo hi';
const GO_SHEXEC_REFERENCE = 10_900;
const BASH_C_REFERENCE = 1_000;

type Once = () => Promise<void>;

/** The Go peer (bench/go/shexec_scheme.go), built with the `go` on PATH if there is one. */
function buildGoPeer(): BuiltPeer {
  return buildPeer('shexec-scheme', (out, dir) => ({
    argv: ['go', 'build', '-o', out, peerSource('go/shexec_scheme.go')],
    env: { GOCACHE: process.env.GOCACHE ?? join(dir, 'cache'), GO111MODULE: 'off' },
  }));
}

/** The Go peer's runs/s over SECONDS (it warms up first, in its own process). */
function goPeerRate(path: string): number {
  const out = spawnSync(
    path,
    ['-seconds', String(SECONDS), '-warmup', '1000', '-command', COMMAND],
    {
      encoding: 'utf8',
    },
  );
  if (out.status !== 0) throw new Error(`the Go peer failed: ${out.stderr}`);
  return Number(out.stdout);
}

async function rate(once: Once): Promise<number> {
  const start = performance.now();
  const deadline = start + SECONDS * 1000;
  let count = 0;
  while (performance.now() < deadline) {
    await once();
    count++;
  }
  return count / ((performance.now() - start) / 1000);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const fmt = (n: number, digits = 0) => (Number.isNaN(n) ? 'n/a' : n.toFixed(digits));

async function main(): Promise<void> {
  const posix = Shell.posix({ program: 'bash' });
  const plain = new Shell({
    program: 'bash',
    sentinel: { command: 'echo __procsock_bench_done__', value: '__procsock_bench_done__' },
  });
  const merged = Shell.posix({ program: 'bash', stderr: 'merge' });
  const drained = Shell.posix({ program: 'bash', stderr: 'drain' });
  await posix.start(5000);
  await merged.start(5000);
  await drained.start(5000);
  await plain.start(5000);

  const contenders: Record<string, Once> = {
    'Shell, POSIX preset (bash)': async () => {
      const result = await posix.run(COMMAND);
      if (result.stdout !== 'hi\n' || result.exitCode !== 0) throw new Error('wrong result');
    },
    "Shell, POSIX preset, stderr: 'merge' (bash)": async () => {
      await merged.run(COMMAND);
    },
    "Shell, POSIX preset, stderr: 'drain' (bash)": async () => {
      await drained.run(COMMAND);
    },
    'Shell, plain sentinel (bash, no status)': async () => {
      await plain.run(COMMAND);
    },
    'bash -c per command (child_process.spawn)': () =>
      new Promise((resolve, reject) => {
        spawn('bash', ['-c', COMMAND], { stdio: 'pipe' })
          .on('close', () => resolve())
          .on('error', reject);
      }),
    'bash -c per command (LocalChannel)': () =>
      new LocalChannel(['bash', '-c', COMMAND]).done().then(() => {}),
  };

  console.log(
    `\`${COMMAND}\` round trips: ${ROUNDS} rounds of ~${SECONDS}s each, interleaved; median`,
  );
  console.log(
    `load average at start: ${loadavg()
      .map((n) => n.toFixed(2))
      .join(' ')} (others' work skews every figure)`,
  );
  const goPeer = buildGoPeer();
  console.log(
    goPeer.path
      ? "Go peer: bench/go/shexec_scheme.go (shexec's scheme and structure; shexec itself cannot be fetched here), built and run in this run"
      : `Go peer: NOT BUILT (${goPeer.why.split('\n')[0]}); compared with Go shexec's reference figure instead`,
  );
  const goRates: number[] = [];

  for (const once of Object.values(contenders)) await rate(once); // warm up
  const results: Record<string, number[]> = Object.fromEntries(
    Object.keys(contenders).map((name) => [name, []]),
  );
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, once] of Object.entries(contenders)) results[name]!.push(await rate(once));
    if (goPeer.path) goRates.push(goPeerRate(goPeer.path));
  }
  goPeer.cleanup();
  await posix.stop(5000);
  await merged.stop(5000);
  await drained.stop(5000);
  await plain.stop(5000);

  console.log(
    `load average at end: ${loadavg()
      .map((n) => n.toFixed(2))
      .join(' ')}`,
  );
  const med = (name: string) => median(results[name]!);
  const shell = med('Shell, POSIX preset (bash)');
  const bashC = med('bash -c per command (child_process.spawn)');
  console.log('\n| runs/s | median | all rounds |');
  console.log('|---|---|---|');
  for (const name of Object.keys(contenders)) {
    console.log(
      `| ${name} | ${fmt(med(name))} | ${results[name]!.map((n) => fmt(n)).join(', ')} |`,
    );
  }
  if (goRates.length > 0) {
    console.log(
      `| Go, shexec's scheme (no exit status; bench/go) | ${fmt(median(goRates))} | ${goRates.map((n) => fmt(n)).join(', ')} |`,
    );
  }
  const ratio = shell / bashC;
  const referenceRatio = GO_SHEXEC_REFERENCE / BASH_C_REFERENCE;
  const go = goRates.length > 0 ? median(goRates) : undefined;
  const figure = 'Shell (POSIX preset, bash) echo hi runs/s, exit status captured';
  const rows: GoalRow[] = [];
  if (go !== undefined) {
    rows.push({
      figure,
      procsock: `${fmt(shell)}/s`,
      peer: "Go, shexec's scheme (bench/go, same run)",
      peerValue: `${fmt(go)}/s`,
      ratio: ratioOf(shell, go),
      goal: '≥ 1.0×',
      met: shell >= go,
    });
  }
  rows.push(
    {
      figure,
      procsock: `${fmt(shell)}/s`,
      peer: 'Go shexec (reference figure, its machine)',
      peerValue: `${GO_SHEXEC_REFERENCE}/s`,
      ratio: ratioOf(shell, GO_SHEXEC_REFERENCE),
      ...(go === undefined
        ? { goal: '≥ 1.0×', met: shell >= GO_SHEXEC_REFERENCE }
        : { goal: 'for scale (judged against the same-run peer above)' }),
    },
    {
      figure,
      procsock: `${fmt(shell)}/s`,
      peer: 'bash -c per command (child_process.spawn)',
      peerValue: `${fmt(bashC)}/s`,
      ratio: `${fmt(ratio, 1)}×`,
      goal: `for scale (Go shexec did ${fmt(referenceRatio, 1)}× on its machine)`,
    },
  );
  console.log(`\n${formatGoalTable(rows)}`);
  recordGoals(rows);
  console.log(
    `\nFor scale: on the reference machine Go shexec ran ${fmt(referenceRatio, 1)}× a fresh bash -c; here the Shell runs ${fmt(ratio, 1)}× it. ` +
      'Process creation speed varies much more between machines than a pipe round trip, so read that ratio with care.',
  );
}

await main();

/**
 * The soak: load, faults, hostile input and a long-lived Shell against a real daemon in its
 * own process, on loopback only, bounded in count and time. Not run in CI.
 *
 *   npm run soak                                   # the full run (~5–10 minutes on 2 cores)
 *   SOAK_SCALE=0.05 npm run soak                   # a quick pass with 5% of every count
 *
 * Prints one summary table: load held (connections/s, p99 latency), faults survived, bad
 * inputs tried, bytes lost (must be 0), leaks (must be 0), the daemon's peak RSS.
 * Exits non-zero when any check fails.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import fc from 'fast-check';
import type { ExitStatus } from '../src/core/output.js';
import { Shell, ShellCrashError } from '../src/index.js';
import {
  encodeExtendedRequest,
  encodeStdinMessage,
  STDIN_END_MESSAGE,
  type WireReason,
} from '../src/protocol/extension.js';
import { ReplyDecoder } from '../src/protocol/reply.js';
import { encodeArgs, encodeStdin, STDIN_END } from '../src/protocol/request.js';
import { fuzzPolicyFlags, fuzzScenario, playFuzzScenario } from '../test/helpers/fuzz-cases.js';
import { childrenOf, openFdCount, tempDir } from '../test/helpers/process.js';

const SCALE = Number(process.env.SOAK_SCALE ?? 1);
const count = (n: number) => Math.max(1, Math.round(n * SCALE));
const CONNECTIONS = count(100_000);
const CONCURRENCY = 64;
const FUZZ_CASES = count(1_000_000);
const SHELL_RUNS = count(100_000);
const SHELL_CYCLES = count(200);
const KILL_TIMEOUT_S = 1;
/** A token in the argv of every long-lived program, to find survivors in /proc afterwards. */
const TOKEN = `procsock-soak-${process.pid}`;

const failures: string[] = [];
function check(ok: boolean, what: string): void {
  if (!ok) {
    failures.push(what);
    console.error(`FAIL: ${what}`);
  }
}

// ---------------------------------------------------------------- the daemon

const tmp = tempDir('procsock-soak-');
const socketPath = tmp.path('soak.sock');
let daemon: ChildProcess;
let daemonExit: Promise<number | null>;

async function startDaemon(): Promise<void> {
  if (!existsSync('dist/cli/main.js')) throw new Error('run `npm run build` first');
  daemon = spawn(
    process.execPath,
    [
      'dist/cli/main.js',
      'serve',
      '--allow-root',
      // Fuzz cases name only harmless programs, but a mangled one must not run anything else.
      ...fuzzPolicyFlags(tmp.dir),
      '--allow',
      '/usr/bin/sh',
      '-m',
      '128',
      '-q',
      '512',
      // A short deadline: incomplete hostile requests are cut off quickly.
      '-t',
      '2',
      '-k',
      String(KILL_TIMEOUT_S),
      '--kill-group',
      socketPath,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  daemonExit = new Promise((resolve) => daemon.once('exit', (code) => resolve(code)));
  for (let i = 0; i < 500 && !existsSync(socketPath); i++) await delay(20);
  await exchange(['true']);
}

function daemonStatus(field: 'VmHWM' | 'VmRSS'): number {
  const status = readFileSync(`/proc/${daemon.pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits until `condition` holds (for things in another process, which send no event). */
async function settle(condition: () => boolean, ms = 15_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await delay(20);
  }
  return true;
}

/** Processes, anywhere on the machine, started by this soak for a long life (argv holds TOKEN). */
function survivors(): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'latin1').includes(TOKEN)) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

// ---------------------------------------------------------------- a minimal client

interface Exchange {
  stdout: Buffer[];
  stdoutBytes: number;
  stderr: string;
  status: ExitStatus | null;
  /** Extended exchanges: the reason the daemon gave. */
  reason: WireReason | null;
  ms: number;
}

/**
 * One connection: argv, optional stdin in pieces, terminator; the whole reply. `extended`:
 * through the protocol extension, with a per-run timeout the run never reaches.
 */
function exchange(
  argv: string[],
  stdinPieces: Buffer[] = [],
  keep = true,
  extended = false,
): Promise<Exchange> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const result: Exchange = {
      stdout: [],
      stdoutBytes: 0,
      stderr: '',
      status: null,
      reason: null,
      ms: 0,
    };
    const decoder = new ReplyDecoder(
      {
        onOutput(type, data) {
          if (type === 'stdout') {
            result.stdoutBytes += data.length;
            if (keep) result.stdout.push(Buffer.from(data));
          } else result.stderr += data.toString();
        },
        onExit(status) {
          result.status = status;
        },
        onRunEnd(reason) {
          result.reason = reason;
        },
      },
      { extended },
    );
    const socket = connect(socketPath);
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      result.ms = performance.now() - started;
      resolve(result);
    });
    socket.cork();
    if (extended) {
      socket.write(encodeExtendedRequest({ argv, timeout: 1900, killGroup: true }));
      for (const piece of stdinPieces) {
        for (const part of encodeStdinMessage(piece)) socket.write(part);
      }
      socket.write(STDIN_END_MESSAGE);
    } else {
      socket.write(encodeArgs(argv));
      for (const piece of stdinPieces) for (const part of encodeStdin(piece)) socket.write(part);
      socket.write(STDIN_END);
    }
    socket.uncork();
  });
}

async function pool(total: number, concurrency: number, job: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async () => {
      while (next < total) await job(next++);
    }),
  );
}

const sha = (data: Buffer | Buffer[]) => {
  const hash = createHash('sha256');
  for (const piece of Array.isArray(data) ? data : [data]) hash.update(piece);
  return hash.digest('hex');
};

// ---------------------------------------------------------------- phases

interface Row {
  figure: string;
  value: string;
}
const rows: Row[] = [];

async function loadPhase(): Promise<void> {
  let bytesExpected = 0;
  let bytesReceived = 0;
  let wrong = 0;
  const latencies: number[] = [];
  const started = performance.now();
  await pool(CONNECTIONS, CONCURRENCY, async (i) => {
    const kind = i % 10;
    let expectStdout: string | null = null;
    let expectBytes = 0;
    let expectCode = 0;
    let argv: string[];
    let stdin: Buffer[] = [];
    let zeros = false;
    // One in ten connections goes through the protocol extension (the cat and sh kinds).
    const extended = i % 20 === 5 || i % 20 === 9;
    if (kind <= 2) {
      argv = ['true'];
      expectStdout = sha(Buffer.alloc(0));
    } else if (kind === 3) {
      const word = randomBytes(6).toString('hex');
      argv = ['echo', word];
      expectStdout = sha(Buffer.from(`${word}\n`));
      expectBytes = word.length + 1;
    } else if (kind === 4) {
      expectBytes = (i * 7919) % (1 << 20);
      argv = ['head', '-c', String(expectBytes), '/dev/zero'];
      zeros = true;
    } else if (kind === 5) {
      const data = randomBytes(((i * 104729) % (256 << 10)) + 1);
      const cut = data.length >> 1;
      stdin = [data.subarray(0, cut), data.subarray(cut)];
      argv = ['cat'];
      expectStdout = sha(data);
      expectBytes = data.length;
    } else if (kind === 6) {
      expectCode = i % 256;
      argv = ['sh', '-c', `exit ${expectCode}`];
      expectStdout = sha(Buffer.alloc(0));
    } else if (kind === 7) {
      argv = ['sleep', '0.1'];
      expectStdout = sha(Buffer.alloc(0));
    } else {
      argv = ['sh', '-c', 'echo out; echo err >&2'];
      expectStdout = sha(Buffer.from('out\n'));
      expectBytes = 4;
    }
    const reply = await exchange(argv, stdin, !zeros, extended);
    latencies.push(reply.ms);
    bytesExpected += expectBytes;
    bytesReceived += Math.min(reply.stdoutBytes, expectBytes);
    const stdoutOk = zeros
      ? reply.stdoutBytes === expectBytes
      : sha(reply.stdout) === expectStdout && reply.stdoutBytes === expectBytes;
    const exitOk = reply.status?.exitCode === expectCode;
    const stderrOk = kind >= 8 ? reply.stderr === 'err\n' : reply.stderr === '';
    const reasonOk = !extended || reply.reason === 'exit';
    if (!(stdoutOk && exitOk && stderrOk && reasonOk)) {
      wrong++;
      if (wrong <= 5)
        console.error(`wrong reply for ${argv.join(' ')}:`, reply.status, reply.stderr);
    }
  });
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const p = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  check(wrong === 0, `${wrong} wrong replies under load`);
  check(bytesReceived === bytesExpected, `${bytesExpected - bytesReceived} bytes lost under load`);
  rows.push(
    {
      figure: 'load: connections (64 concurrent, mixed; 1 in 10 extended)',
      value: String(CONNECTIONS),
    },
    { figure: 'load: connections/s', value: (CONNECTIONS / seconds).toFixed(0) },
    {
      figure: 'load: latency p50 / p99 (ms)',
      value: `${p(0.5).toFixed(1)} / ${p(0.99).toFixed(1)}`,
    },
    { figure: 'load: wrong replies', value: String(wrong) },
    { figure: 'load: bytes lost', value: String(bytesExpected - bytesReceived) },
  );
}

/** A client in its own process, so it can be SIGKILLed or SIGSTOPped for real. */
function clientProcess(argv: string[]): { child: ChildProcess; firstData: Promise<void> } {
  const script = `
    const net = require('node:net');
    const ns = (s) => { const b = Buffer.from(s); return Buffer.concat([Buffer.from(b.length + ':'), b, Buffer.from(',')]); };
    const argv = ${JSON.stringify(argv)};
    const s = net.connect(${JSON.stringify(socketPath)});
    s.write(Buffer.concat([ns(String(argv.length)), ...argv.map(ns), ns('')]));
    let told = false;
    s.on('data', () => { if (!told) { told = true; process.stdout.write('x'); } });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const firstData = new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
  return { child, firstData };
}

/**
 * Waits for the processes a fault scenario started (TOKEN in argv) to be gone — their
 * connection's end stops them, with their descendants — and records how many were left.
 */
async function descendantsLeft(scenario: string, counts: string[]): Promise<void> {
  await settle(() => survivors().length === 0, 5000 + 2 * KILL_TIMEOUT_S * 1000);
  const left = survivors();
  check(
    left.length === 0,
    `after ${scenario}: ${left.length} programs or descendants left: ${left.join(' ')}`,
  );
  counts.push(`${scenario} ${left.length}`);
}

async function faultsPhase(): Promise<void> {
  let survived = 0;
  const left: string[] = [];
  const background = (async () => {
    let served = 0;
    const until = Date.now() + 8000;
    while (Date.now() < until) {
      const reply = await exchange(['echo', 'still here']);
      check(reply.status?.exitCode === 0, 'a well-behaved client was not served during faults');
      served++;
    }
    return served;
  })();

  // 1. Clients killed mid-stream.
  for (let i = 0; i < 5; i++) {
    const { child, firstData } = clientProcess(['head', '-c', '1000000000', '/dev/zero', TOKEN]);
    await firstData;
    child.kill('SIGKILL');
  }
  survived += 5;
  await descendantsLeft('killed clients', left);

  // 2. Clients that stop reading: the program blocks, the daemon does not buffer it all.
  const rssBefore = daemonStatus('VmRSS');
  const stopped = Array.from({ length: 4 }, () =>
    clientProcess(['head', '-c', '10000000000', '/dev/zero', TOKEN]),
  );
  await Promise.all(stopped.map((s) => s.firstData));
  for (const s of stopped) s.child.kill('SIGSTOP');
  await delay(2000);
  const rssStalled = daemonStatus('VmRSS');
  check(
    rssStalled - rssBefore < 64 << 20,
    `daemon RSS grew ${rssStalled - rssBefore} B for stalled readers`,
  );
  for (const s of stopped) s.child.kill('SIGKILL');
  survived += 4;
  await descendantsLeft('stalled readers', left);
  rows.push({
    figure: 'faults: RSS growth with 4 stalled readers of 10 GB',
    value: `${((rssStalled - rssBefore) / 2 ** 20).toFixed(1)} MiB`,
  });

  // 3. Programs that ignore TERM, abandoned by their client: KILL after the grace.
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      const { child, firstData } = clientProcess([
        'sh',
        '-c',
        `trap '' TERM; echo ready; exec sleep 60 ${TOKEN}`,
      ]);
      await firstData;
      child.kill('SIGKILL');
    }),
  );
  survived += 4;
  await descendantsLeft('TERM-ignoring', left);

  // 4. Programs that start grandchildren and exit; the client leaves: the group is killed.
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      const { child, firstData } = clientProcess(['sh', '-c', `sleep 60 ${TOKEN} & echo started`]);
      await firstData;
      child.kill('SIGKILL');
    }),
  );
  survived += 4;
  await descendantsLeft('grandchildren', left);

  // 4b. Descendants out of the group's reach — a setsid session, a set -m job, one ignoring
  // TERM — and the client leaves: containment (the daemon's default) stops them all.
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      const { child, firstData } = clientProcess([
        'sh',
        '-c',
        `setsid sleep 60 ${TOKEN} & set -m; sleep 60 ${TOKEN} & ` +
          `setsid sh -c "trap '' TERM; exec sleep 60 ${TOKEN}" & echo started; wait`,
      ]);
      await firstData;
      child.kill('SIGKILL');
    }),
  );
  survived += 4;
  await descendantsLeft('setsid and set -m escapers', left);

  // 5. Programs killed by -9.
  for (let i = 0; i < 4; i++) {
    const reply = await exchange(['sh', '-c', 'kill -9 $$']);
    check(
      reply.status?.termSignal === 'KILL',
      'a program killed by -9 was not reported as termsig KILL',
    );
  }
  survived += 4;
  await descendantsLeft('killed by -9', left);

  const served = await background;
  rows.push(
    { figure: 'faults: programs and descendants left, per scenario', value: left.join(', ') },
    {
      figure:
        'faults survived (killed/stalled clients, TERM-ignoring, grandchildren, escapers, -9)',
      value: String(survived),
    },
    { figure: 'faults: well-behaved requests served meanwhile', value: String(served) },
  );
}

async function hostilePhase(): Promise<void> {
  let tried = 0;
  const started = performance.now();
  // Slowloris: one byte a second from 32 clients while everything else goes on.
  const slowloris = Array.from({ length: 32 }, async () => {
    const socket = connect(socketPath);
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const bytes = Buffer.from('1:3,3:cat,5:hello,');
    for (const byte of bytes) {
      if (socket.destroyed) break;
      socket.write(Buffer.from([byte]));
      await Promise.race([delay(1000), closed]);
    }
    socket.destroy();
    await closed;
  });
  const batch = 1000;
  for (let seed = 0; tried < FUZZ_CASES; seed++) {
    // Leaving by end/destroy: a case that waits for the deadline would throttle the million
    // (those are covered by the CI fuzz test and by the slowloris clients here).
    const cases = fc.sample(
      fuzzScenario.map((c) => (c.leave === 'read-to-close' ? { ...c, leave: 'end' as const } : c)),
      { seed, numRuns: Math.min(batch, FUZZ_CASES - tried) },
    );
    await pool(cases.length, CONCURRENCY, (i) => playFuzzScenario(socketPath, cases[i]!));
    tried += cases.length;
    if (seed % 100 === 99) console.error(`  fuzz: ${tried} cases…`);
  }
  // Named attacks.
  const named: [string, Buffer][] = [
    [
      '100k-argument argv',
      Buffer.concat([Buffer.from('6:100000,'), Buffer.from('1:x,'.repeat(100_000))]),
    ],
    [
      'never-ending argument',
      Buffer.concat([Buffer.from('1:1,131072:'), Buffer.alloc(131_072 - 1, 'a')]),
    ],
    ['absurd length', Buffer.from('99999999999999999999:')],
  ];
  for (const [, bytes] of named) {
    await playFuzzScenario(socketPath, { bytes, cuts: [5, 1000, 50_000], leave: 'read-to-close' });
    tried++;
  }
  await Promise.all(slowloris);
  tried += 32;
  const reply = await exchange(['echo', 'ok']);
  check(reply.status?.exitCode === 0, 'daemon not answering after hostile input');
  rows.push(
    { figure: 'hostile: bad inputs tried (fuzz + named + slowloris)', value: String(tried) },
    {
      figure: 'hostile: fuzz cases/s',
      value: (FUZZ_CASES / ((performance.now() - started) / 1000)).toFixed(0),
    },
  );
}

async function shellPhase(): Promise<void> {
  const shell = Shell.posix({ program: 'bash' });
  await shell.start(10_000);
  let wrong = 0;
  let bytes = 0;
  let lost = 0;
  const started = performance.now();
  for (let i = 0; i < SHELL_RUNS; i++) {
    const size = (i * 7919) % 3000;
    const code = i % 7 === 0 ? i % 256 : 0;
    // Output that looks like markers and sentinels, and a random exit status.
    const text = `${'x'.repeat(size)}__procsock_${i}__ sentinel ${i}`;
    const result = await shell.run(`printf '%s\\n' '${text}'; (exit ${code})`, 10_000);
    bytes += text.length + 1;
    if (result.stdout !== `${text}\n`)
      lost += Math.abs(text.length + 1 - result.stdout.length) || 1;
    if (result.exitCode !== code || result.stdout !== `${text}\n`) wrong++;
  }
  const seconds = (performance.now() - started) / 1000;
  let restarts = 0;
  for (let i = 0; i < SHELL_CYCLES; i++) {
    try {
      await shell.run('exit 3', 5000);
      wrong++;
    } catch (error) {
      if (!(error instanceof ShellCrashError)) wrong++;
    }
    await shell.start(10_000);
    if ((await shell.run('echo back')).stdout !== 'back\n') wrong++;
    restarts++;
  }
  await shell.stop(5000);
  check(wrong === 0, `${wrong} wrong Shell results`);
  check(lost === 0, `${lost} Shell bytes lost`);
  check(
    childrenOf(process.pid).every((c) => !c.command.includes('bash')),
    'a bash outlived the Shell',
  );
  rows.push(
    {
      figure: 'shell: runs through one bash (random sizes, markers, exit codes)',
      value: String(SHELL_RUNS),
    },
    { figure: 'shell: runs/s', value: (SHELL_RUNS / seconds).toFixed(0) },
    { figure: 'shell: crash + restart cycles', value: String(restarts) },
    { figure: 'shell: bytes through / lost', value: `${bytes} / ${lost}` },
  );
}

async function leakCheck(baselineFds: number, phase: string): Promise<number> {
  const clean = await settle(
    () => childrenOf(daemon.pid!).length === 0 && openFdCount(daemon.pid!) === baselineFds,
  );
  const leaked =
    childrenOf(daemon.pid!).length + Math.max(0, openFdCount(daemon.pid!) - baselineFds);
  check(
    clean,
    `after ${phase}: ${childrenOf(daemon.pid!).length} children, ${openFdCount(daemon.pid!)} fds (baseline ${baselineFds})`,
  );
  return clean ? 0 : leaked;
}

async function shutdownUnderLoad(): Promise<void> {
  const clients = Array.from({ length: CONCURRENCY }, () =>
    exchange(['sh', '-c', `trap '' TERM; exec sleep 30 ${TOKEN}`]).catch(() => null),
  );
  await settle(() => childrenOf(daemon.pid!).length >= CONCURRENCY / 2, 10_000);
  daemon.kill('SIGTERM');
  const code = await daemonExit;
  await Promise.all(clients);
  check(code === 0, `daemon exited ${code} on SIGTERM under load`);
  check(!existsSync(socketPath), 'socket file left after shutdown');
  check(await settle(() => survivors().length === 0, 5000), 'programs survived the daemon');
  rows.push({
    figure: 'SIGTERM under load: exit status, socket removed, survivors',
    value: `${code}, ${!existsSync(socketPath)}, ${survivors().length}`,
  });
}

async function main(): Promise<void> {
  console.log(`soak: scale ${SCALE} (SOAK_SCALE), daemon ${socketPath}`);
  await startDaemon();
  // The daemon closes the start-up probe's socket a moment after the client sees it closed.
  await delay(500);
  const baselineFds = openFdCount(daemon.pid!);
  let leaks = 0;
  for (const [name, phase] of [
    ['load', loadPhase],
    ['faults', faultsPhase],
    ['hostile input', hostilePhase],
    ['shell', shellPhase],
  ] as const) {
    console.error(`phase: ${name}`);
    await phase();
    leaks += await leakCheck(baselineFds, name);
  }
  rows.push(
    { figure: 'leaks (fds above baseline + children left)', value: String(leaks) },
    { figure: 'daemon peak RSS', value: `${(daemonStatus('VmHWM') / 2 ** 20).toFixed(1)} MiB` },
  );
  await shutdownUnderLoad();
  const width = Math.max(...rows.map((r) => r.figure.length));
  console.log(`\n| ${'figure'.padEnd(width)} | value |\n|${'-'.repeat(width + 2)}|-------|`);
  for (const row of rows) console.log(`| ${row.figure.padEnd(width)} | ${row.value} |`);
  console.log(
    failures.length === 0
      ? '\nsoak: all checks passed'
      : `\nsoak: ${failures.length} checks FAILED`,
  );
  tmp.cleanup();
  process.exitCode = failures.length === 0 ? 0 : 1;
}

await main();

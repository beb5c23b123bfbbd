/**
 * Containment and accounting of local runs, on real processes (both spawn backends: the
 * runner sets PROCSOCK_SPAWN). A contained run's descendants — `&` jobs, `set -m` jobs in
 * groups of their own, `setsid` children in sessions of their own — end with it: when it is
 * stopped (what a timeout or an abort does: destroy()), when it exits, and when the Node
 * process that started it is SIGKILLed. Usage shows the CPU a busy loop burned and the
 * memory a program touched.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { reaperAvailable } from '../../src/channel/contain.js';
import { LocalChannel, spawnBackendInUse } from '../../src/channel/local.js';
import { ArgumentError } from '../../src/errors.js';
import { isAlive, waitUntil } from '../helpers/process.js';

const native = spawnBackendInUse() === 'native';
const skip = !reaperAvailable() && 'procsock_reaper is not built';
const KILL_TIMEOUT = 300;
/** A shell that leaves three kinds of descendants and prints their pids, then waits. */
const ESCAPERS = [
  'bash',
  '-c',
  'setsid sleep 300 & echo $!; set -m; sleep 300 & echo $!; set +m; sleep 300 & echo $!; wait',
];

async function pidsOf(channel: LocalChannel, count: number): Promise<number[]> {
  let out = '';
  channel.on('output', ({ type, data }) => {
    if (type === 'stdout') out += data;
  });
  await waitUntil(() => out.split('\n').length > count, `${count} pids printed`);
  return out.trim().split('\n').map(Number);
}

describe('contained local runs', { skip }, () => {
  for (const [how, stop] of [
    ['destroy() (a timeout, an abort)', (channel: LocalChannel) => channel.destroy()],
    ['terminate() (TERM, then KILL)', (channel: LocalChannel) => channel.terminate()],
  ] as const) {
    test(`${how}: setsid, set -m and & descendants all stop`, async () => {
      const channel = new LocalChannel(ESCAPERS, { contain: true, killTimeout: KILL_TIMEOUT });
      const pids = await pidsOf(channel, 3);
      assert.ok(pids.every(isAlive));
      stop(channel);
      await channel.done();
      await waitUntil(() => !pids.some(isAlive), 'every descendant is gone');
      if (how.startsWith('terminate')) {
        assert.equal(channel.descendantsStopped, 3);
        assert.deepEqual(channel.exitStatus, { exitCode: null, termSignal: 'TERM' });
      }
    });
  }

  test('descendants that ignore TERM are KILLed after the kill timeout', async () => {
    const channel = new LocalChannel(
      ['sh', '-c', `trap '' TERM; setsid sh -c "trap '' TERM; sleep 300" & echo $!; wait`],
      { contain: true, killTimeout: KILL_TIMEOUT },
    );
    const [pid] = await pidsOf(channel, 1);
    channel.terminate();
    await channel.done();
    assert.equal(isAlive(pid!), false);
    assert.equal(channel.exitStatus?.termSignal, 'KILL');
  });

  test('at its exit, what the program left running is stopped after the exit grace', async () => {
    const channel = new LocalChannel(['sh', '-c', 'setsid sleep 300 & echo $!; exit 3'], {
      contain: true,
      exitGrace: 100,
      killTimeout: KILL_TIMEOUT,
    });
    const [pid] = await pidsOf(channel, 1);
    assert.deepEqual(await channel.done(), { exitCode: 3, termSignal: null });
    assert.equal(isAlive(pid!), false);
    assert.equal(channel.descendantsStopped, 1);
  });

  test('output a short-lived descendant writes within the grace is delivered before the exit', async () => {
    const channel = new LocalChannel(['sh', '-c', 'echo early; (sleep 0.2; echo late) & exit 3'], {
      contain: true,
    });
    let out = '';
    channel.on('output', ({ data }) => {
      out += data;
    });
    assert.deepEqual(await channel.done(), { exitCode: 3, termSignal: null });
    assert.equal(out, 'early\nlate\n');
    assert.equal(channel.descendantsStopped, 0);
  });

  test('an exec failure is reported as uncontained: exit 127 and the message', async () => {
    const channel = new LocalChannel(['procsock-no-such-program'], { contain: true });
    let err = '';
    channel.on('output', ({ data }) => {
      err += data;
    });
    assert.deepEqual(await channel.done(), { exitCode: 127, termSignal: null });
    assert.equal(err, 'procsock: procsock-no-such-program: command not found\n');
  });

  test('signals other than TERM reach the program through the reaper', async () => {
    const channel = new LocalChannel(
      ['sh', '-c', 'trap "echo got INT; exit 4" INT; echo ready; while :; do sleep 0.05; done'],
      { contain: true },
    );
    let out = '';
    channel.on('output', ({ data }) => {
      out += data;
    });
    await waitUntil(() => out === 'ready\n', 'the program is ready');
    channel.kill('SIGINT');
    assert.deepEqual(await channel.done(), { exitCode: 4, termSignal: null });
    assert.equal(out, 'ready\ngot INT\n');
  });

  test('usage: the CPU a busy loop burned and the memory a program touched', async () => {
    const script =
      'import time\nx = bytearray(64 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\n' +
      't = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n';
    const channel = new LocalChannel(['python3', '-c', script], { contain: true });
    await channel.done();
    const usage = channel.usage!;
    const cpu = usage.userCPUTime! + usage.systemCPUTime!;
    assert.ok(cpu >= 250_000, `CPU ${cpu} µs`);
    assert.ok(usage.userCPUTime! + usage.systemCPUTime! < 60_000_000);
    assert.ok(usage.maxRSS! >= 64 * 1024, `maxRSS ${usage.maxRSS} KiB`);
    assert.ok(usage.maxRSS! < 64 * 1024 + 200 * 1024, `maxRSS ${usage.maxRSS} KiB`);
    assert.ok(usage.wallTime >= 0);
  });
});

describe('children die with their parent', () => {
  const MAKER = fileURLToPath(new URL('../fixtures/orphan-maker.ts', import.meta.url));
  for (const mode of ['contained', 'plain'] as const) {
    const why =
      mode === 'contained'
        ? skip
        : 'PR_SET_PDEATHSIG in the native child is not merged yet (issue-17 report)';
    test(`a SIGKILLed Node parent leaves no ${mode} child behind`, { skip: why }, async () => {
      const maker = spawn(process.execPath, ['--import', 'tsx', MAKER, mode], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let line = '';
      maker.stdout.setEncoding('utf8').on('data', (text: string) => {
        line += text;
      });
      let pids: number[];
      try {
        await waitUntil(() => line.includes('\n'), 'the programs have started', 30_000);
        pids = (JSON.parse(line) as { pids: number[] }).pids;
        assert.ok(pids.length > 0 && pids.every((pid) => Number.isInteger(pid) && isAlive(pid)));
      } finally {
        maker.kill('SIGKILL');
        await once(maker, 'close');
      }
      await waitUntil(() => !pids.some(isAlive), 'every program is gone');
    });
  }

  test('a child started by a worker thread dies with that thread', {
    skip: !native && 'native backend only',
  }, async () => {
    // The built module (npm test builds first): a worker does not take tsx's loader.
    const local = new URL('../../dist/channel/local.js', import.meta.url).href;
    const worker = new Worker(
      `import('${local}').then(({ LocalChannel }) => {
        const channel = new LocalChannel(['sleep', '300']);
        require('node:worker_threads').parentPort.postMessage(channel.pid);
      });`,
      { eval: true },
    );
    const [pid] = (await once(worker, 'message')) as [number];
    assert.equal(isAlive(pid), true);
    await worker.terminate();
    await waitUntil(() => !isAlive(pid), 'the worker’s child is gone');
  });

  test('contain without the reaper is refused, never ignored', {
    skip: reaperAvailable() && 'the reaper is built',
  }, () => {
    assert.throws(() => new LocalChannel(['true'], { contain: true }), ArgumentError);
  });
});

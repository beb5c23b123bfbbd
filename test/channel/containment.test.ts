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
import { childrenOf, isAlive, openFdCount, waitUntil } from '../helpers/process.js';

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

  test('the program gets the descriptors a plain run gets: the report pipe stays the reaper’s', async () => {
    const fds = async (contain: boolean) => {
      const channel = new LocalChannel(['sh', '-c', 'ls /proc/$$/fd'], { contain });
      let out = '';
      channel.on('output', ({ type, data }) => {
        if (type === 'stdout') out += data;
      });
      assert.deepEqual(await channel.done(), { exitCode: 0, termSignal: null });
      return out
        .split('\n')
        .filter(Boolean)
        .map(Number)
        .sort((a, b) => a - b);
    };
    const plain = await fds(false);
    assert.deepEqual(plain.slice(0, 3), [0, 1, 2]);
    assert.deepEqual(await fds(true), plain);
  });

  test('runs that leave setsid jobs behind leave no process, zombie or descriptor', async () => {
    // One run first, so that what the first run opens for good (the addon's) is in the baseline.
    await new LocalChannel(['true'], { contain: true }).done();
    const fdsBefore = openFdCount();
    const childrenBefore = childrenOf().length;
    const runs = Array.from({ length: 8 }, () => {
      const channel = new LocalChannel(['sh', '-c', 'setsid sleep 300 & echo $!'], {
        contain: true,
        exitGrace: 0,
        killTimeout: KILL_TIMEOUT,
      });
      return pidsOf(channel, 1).then(async ([pid]) => {
        assert.deepEqual(await channel.done(), { exitCode: 0, termSignal: null });
        assert.equal(channel.descendantsStopped, 1);
        return pid!;
      });
    });
    const pids = await Promise.all(runs);
    assert.deepEqual(pids.filter(isAlive), []);
    // Every reaper has been reaped by the time its run is done: nothing left to wait for.
    assert.equal(childrenOf().length, childrenBefore);
    // Handles close a turn of the loop after 'close'.
    await waitUntil(() => openFdCount() <= fdsBefore, 'descriptors are released', 1000);
  });
});

describe('accounting of plain runs', () => {
  test(
    native
      ? 'native: the CPU a busy loop burned (wait4); no peak RSS (a CLONE_VM child’s is ours)'
      : 'child_process: no CPU or peak RSS (Node does not give wait4’s), the wall time',
    async () => {
      const channel = new LocalChannel([
        'python3',
        '-c',
        'import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n',
      ]);
      assert.deepEqual(await channel.done(), { exitCode: 0, termSignal: null });
      const usage = channel.usage!;
      assert.equal(usage.maxRSS, null);
      assert.ok(usage.wallTime >= 0);
      if (!native) {
        assert.equal(usage.userCPUTime, null);
        assert.equal(usage.systemCPUTime, null);
        return;
      }
      const cpu = usage.userCPUTime! + usage.systemCPUTime!;
      assert.ok(cpu >= 250_000, `CPU ${cpu} µs`);
      assert.ok(cpu < 60_000_000, `CPU ${cpu} µs`);
    },
  );
});

describe('children die with their parent', () => {
  const MAKER = fileURLToPath(new URL('../fixtures/orphan-maker.ts', import.meta.url));

  /** Starts the orphan maker, reads the pids it started, SIGKILLs it; returns the pids. */
  async function orphans(
    mode: 'contained' | 'plain',
    detached: boolean,
  ): Promise<{ pids: number[]; control?: number }> {
    const maker = spawn(
      process.execPath,
      ['--import', 'tsx', MAKER, mode, ...(detached ? ['detached'] : [])],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let line = '';
    maker.stdout.setEncoding('utf8').on('data', (text: string) => {
      line += text;
    });
    try {
      await waitUntil(() => line.includes('\n'), 'the programs have started', 30_000);
      const started = JSON.parse(line) as { pids: number[]; control?: number };
      const { pids } = started;
      assert.ok(pids.length > 0 && pids.every((pid) => Number.isInteger(pid) && isAlive(pid)));
      return started;
    } finally {
      maker.kill('SIGKILL');
      await once(maker, 'close');
    }
  }

  for (const mode of ['contained', 'plain'] as const) {
    const why =
      mode === 'contained'
        ? skip
        : !native && 'child_process has no pre-exec hook for a parent-death signal (README)';
    test(`a SIGKILLed Node parent leaves no ${mode} child behind`, { skip: why }, async () => {
      const { pids } = await orphans(mode, false);
      await waitUntil(() => !pids.some(isAlive), 'every program is gone');
    });
  }

  for (const mode of ['contained', 'plain'] as const) {
    // The control run (contained, attached) needs the reaper.
    test(`a detached ${mode} child outlives a SIGKILLed Node parent`, { skip }, async () => {
      const { pids, control } = await orphans(mode, true);
      try {
        // The attached control died of the same parent's death: so would these have.
        await waitUntil(() => !isAlive(control!), 'the attached control run is gone');
        assert.deepEqual(
          pids.filter((pid) => !isAlive(pid)),
          [],
        );
      } finally {
        for (const pid of pids) process.kill(pid, 'SIGKILL');
      }
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

/**
 * A contained local run in a cgroup v2 leaf of its own (LocalChannel `cgroup`), on real
 * processes and a real cgroup (both spawn backends: the runner sets PROCSOCK_SPAWN). The
 * program is in its leaf before it runs; `setsid`, `set -m` and `&` descendants end with the
 * run through the cgroup; a reaper that is itself SIGKILLed leaves nothing either (the
 * subreaper alone cannot promise that); CPU comes from the cgroup; the leaf is removed.
 * Skipped, with the reason, where no cgroup v2 directory can be made (not root and nothing
 * delegated, or Linux < 5.14).
 */
import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { reaperAvailable, reaperPath } from '../../src/channel/contain.js';
import { LocalChannel } from '../../src/channel/local.js';
import { ArgumentError, SpawnError } from '../../src/errors.js';
import { leavesOf, makeTestCgroup, removeTestCgroup } from '../helpers/cgroup.js';
import { childrenOf, isAlive, waitUntil } from '../helpers/process.js';

const made = reaperAvailable() ? makeTestCgroup() : { skip: 'procsock_reaper is not built' };
const skip = 'skip' in made ? made.skip : false;
const base = 'dir' in made ? made.dir : '';
const KILL_TIMEOUT = 300;
/** A shell that leaves three kinds of descendants and prints their pids, then waits. */
const ESCAPERS =
  'setsid sleep 300 & echo $!; set -m; sleep 300 & echo $!; set +m; sleep 300 & echo $!; wait';

function collect(channel: LocalChannel): () => string {
  let out = '';
  channel.on('output', ({ type, data }) => {
    if (type === 'stdout') out += data;
  });
  return () => out;
}

async function pidsOf(read: () => string, count: number): Promise<number[]> {
  await waitUntil(() => read().split('\n').length > count, `${count} pids printed`);
  return read().trim().split('\n').slice(0, count).map(Number);
}

describe('contained runs in a cgroup of their own', { skip }, () => {
  after(() => {
    if (base) removeTestCgroup(base);
  });

  test('the program is in its leaf before it runs; the leaf is removed at the end', async () => {
    const channel = new LocalChannel(['cat', '/proc/self/cgroup'], { contain: true, cgroup: base });
    const out = collect(channel);
    const leaf = channel.cgroup!;
    assert.equal(leaf, join(base, `run-${channel.pid}`));
    assert.deepEqual(await channel.done(), { exitCode: 0, termSignal: null });
    const line = out()
      .split('\n')
      .find((entry) => entry.startsWith('0::'));
    assert.ok(line?.endsWith(`/run-${channel.pid}`), `cat ran in ${line}`);
    assert.equal(existsSync(leaf), false);
    assert.deepEqual(leavesOf(base), []);
    assert.equal(channel.descendantsStopped, 0);
  });

  test('cgroups the program made inside its leaf, with a member, are removed with the leaf', async () => {
    // Without -u the program owns its leaf ($PPID is the reaper: the leaf is run-$PPID) and can
    // nest cgroups in it; a descendant moves itself into the deepest one and outlives the program.
    const script =
      'leaf="$1/run-$PPID"; mkdir "$leaf/x" "$leaf/x/y" "$leaf/z" || exit 9; ' +
      '(echo 0 > "$leaf/x/y/cgroup.procs" && exec sleep 300) & echo $!; ' +
      'while ! grep -qx "$!" "$leaf/x/y/cgroup.procs"; do :; done; echo moved';
    const channel = new LocalChannel(['bash', '-c', script, 'bash', base], {
      contain: true,
      cgroup: base,
      exitGrace: 0,
      killTimeout: KILL_TIMEOUT,
    });
    const out = collect(channel);
    const leaf = channel.cgroup!;
    const [pid] = await pidsOf(out, 2);
    assert.deepEqual(await channel.done(), { exitCode: 0, termSignal: null });
    assert.equal(out().trim().split('\n')[1], 'moved');
    assert.equal(isAlive(pid!), false);
    assert.equal(existsSync(leaf), false);
    assert.deepEqual(leavesOf(base), []);
  });

  for (const [how, stop] of [
    ['terminate() (TERM, then KILL)', (channel: LocalChannel) => channel.terminate()],
    ['destroy() (a timeout, an abort)', (channel: LocalChannel) => channel.destroy()],
    ['kill(KILL) (cgroup.kill)', (channel: LocalChannel) => channel.kill('SIGKILL')],
  ] as const) {
    test(`${how}: setsid, set -m and & descendants stop through the cgroup`, async () => {
      const channel = new LocalChannel(['bash', '-c', ESCAPERS], {
        contain: true,
        cgroup: base,
        killTimeout: KILL_TIMEOUT,
      });
      const pids = await pidsOf(collect(channel), 3);
      assert.ok(pids.every(isAlive));
      // The reaper that runs is the one chosen (PROCSOCK_REAPER_PATH: the sanitizer build).
      assert.equal(readlinkSync(`/proc/${channel.pid}/exe`), reaperPath());
      stop(channel);
      await channel.done();
      await waitUntil(() => !pids.some(isAlive), 'every descendant is gone');
      assert.equal(channel.descendantsStopped, 3);
      assert.deepEqual(leavesOf(base), []);
      assert.deepEqual(
        childrenOf().filter((child) => child.command !== 'esbuild'),
        [],
      );
    });
  }

  test('descendants that ignore TERM are KILLed with the cgroup after the kill timeout', async () => {
    const channel = new LocalChannel(
      ['sh', '-c', `trap '' TERM; setsid sh -c "trap '' TERM; sleep 300" & echo $!; wait`],
      { contain: true, cgroup: base, killTimeout: KILL_TIMEOUT },
    );
    const [pid] = await pidsOf(collect(channel), 1);
    channel.terminate();
    await channel.done();
    assert.equal(isAlive(pid!), false);
    assert.equal(channel.exitStatus?.termSignal, 'KILL');
    assert.deepEqual(leavesOf(base), []);
  });

  test('at its exit, what the program left is stopped after the exit grace', async () => {
    const channel = new LocalChannel(['sh', '-c', `${ESCAPERS.replace('; wait', '')}; exit 3`], {
      contain: true,
      cgroup: base,
      exitGrace: 100,
      killTimeout: KILL_TIMEOUT,
    });
    const pids = await pidsOf(collect(channel), 3);
    assert.deepEqual(await channel.done(), { exitCode: 3, termSignal: null });
    assert.equal(pids.some(isAlive), false);
    assert.equal(channel.descendantsStopped, 3);
    assert.deepEqual(leavesOf(base), []);
  });

  test('a SIGKILLed reaper leaves nothing: its leaf is killed and removed', async () => {
    const channel = new LocalChannel(['bash', '-c', ESCAPERS], {
      contain: true,
      cgroup: base,
      exitGrace: 0,
      killTimeout: KILL_TIMEOUT,
    });
    const pids = await pidsOf(collect(channel), 3);
    const leaf = channel.cgroup!;
    process.kill(channel.pid!, 'SIGKILL');
    await channel.done();
    await waitUntil(() => !pids.some(isAlive), 'every descendant is gone');
    await waitUntil(() => !existsSync(leaf), 'the leaf is removed');
    assert.deepEqual(
      childrenOf().filter((child) => child.command !== 'esbuild'),
      [],
    );
  });

  test("usage: the CPU of a busy loop, from the cgroup's cpu.stat", async () => {
    // 0.3 s of its own CPU time, in a setsid grandchild that nobody but the reaper waits for.
    const burn =
      'import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n';
    const channel = new LocalChannel(['sh', '-c', 'setsid python3 -c "$1" & wait', 'sh', burn], {
      contain: true,
      cgroup: base,
    });
    await channel.done();
    const usage = channel.usage!;
    assert.ok(usage.userCPUTime! + usage.systemCPUTime! >= 290_000, JSON.stringify(usage));
    assert.equal(usage.memoryPeak, null); // no memory controller enabled for the test's cgroup
  });

  describe('a leaf that cannot be made or joined', () => {
    let notCgroup = '';
    before(() => {
      notCgroup = mkdtempSync(join(tmpdir(), 'procsock-not-a-cgroup-'));
    });
    after(() => rmSync(notCgroup, { recursive: true, force: true }));

    test('fails the run with a SpawnError, and nothing ran or is left', async () => {
      const marker = join(notCgroup, 'ran');
      const channel = new LocalChannel(['touch', marker], { contain: true, cgroup: notCgroup });
      const [error] = await Promise.all([
        new Promise<Error>((resolve) => channel.once('error', resolve)),
        channel.done().catch(() => {}),
      ]);
      assert.ok(error instanceof SpawnError, String(error));
      assert.equal(error.code, 'PROCSOCK_SPAWN');
      assert.equal(error.syscall, 'cgroup');
      assert.match(error.message, new RegExp(`cgroup under ${notCgroup}`));
      assert.equal(existsSync(marker), false);
      assert.deepEqual(readdirSync(notCgroup), []);
    });
  });

  test('cgroup without contain, or not an absolute path: ArgumentError', () => {
    assert.throws(() => new LocalChannel(['true'], { cgroup: base }), ArgumentError);
    assert.throws(
      () => new LocalChannel(['true'], { contain: true, cgroup: 'relative' }),
      ArgumentError,
    );
  });
});

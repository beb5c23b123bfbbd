/**
 * The daemon's cgroup per contained run (`procsock serve --cgroup DIR|auto`), on a real
 * daemon, a real socket and a real cgroup v2 directory: each run's program is in a leaf of
 * its own; `setsid`, `set -m` and `&` descendants end with the run through the cgroup at the
 * deadline, a hang-up and shutdown; the audit record counts them; every leaf is removed. A
 * daemon that is itself in the directory moves into a leaf first ("no internal processes"),
 * and `auto` finds a cgroup namespace's root (what a container gets) on its own. A program
 * run as another user (policy user) is in its leaf too: the reaper makes the leaf as the
 * daemon. Skipped, with the reason, where no cgroup v2 directory can be made here.
 */
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ownCgroup } from '../../src/channel/cgroup.js';
import { reaperAvailable } from '../../src/channel/contain.js';
import { leavesOf, makeTestCgroup, removeTestCgroup } from '../helpers/cgroup.js';
import { startDaemon, startDaemonProcess } from '../helpers/daemon.js';
import { childrenOf, isAlive, tempDir, waitUntil } from '../helpers/process.js';
import { RawClient, request } from '../helpers/raw-client.js';
import { testAccount } from '../helpers/users.js';

const made = reaperAvailable() ? makeTestCgroup() : { skip: 'procsock_reaper is not built' };
const skip = 'skip' in made ? made.skip : false;
const base = 'dir' in made ? made.dir : '';
const files = tempDir('procsock-cgroup-');
after(() => {
  if (base) removeTestCgroup(base);
  files.cleanup();
});

/** Prints its cgroup, then the pids of three kinds of descendants, then waits. */
const ESCAPERS = [
  'bash',
  '-c',
  'grep ^0:: /proc/self/cgroup; setsid sleep 300 & echo $!; set -m; sleep 300 & echo $!; set +m; sleep 300 & echo $!; wait',
];

async function started(client: RawClient): Promise<{ cgroup: string; pids: number[] }> {
  for (let count = 1; ; count++) {
    const pairs = await client.waitForPairs(count);
    const lines = pairs
      .filter(([type]) => type === 'stdout')
      .map(([, data]) => data)
      .join('')
      .split('\n');
    if (lines.length > 4)
      return { cgroup: lines[0]!.slice(3), pids: lines.slice(1, 4).map(Number) };
    if (pairs.length < count) throw new Error(`the run ended first: ${JSON.stringify(pairs)}`);
  }
}

function auditRecords(path: string): { descendantsStopped: number | null; reason: string }[] {
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
  // Complete lines only: the record may be being written.
  return text
    .split('\n')
    .slice(0, -1)
    .map((line) => JSON.parse(line) as { descendantsStopped: number | null; reason: string });
}

describe('the daemon gives each contained run a cgroup of its own', { skip }, () => {
  for (const [name, stop, reason] of [
    ['the deadline', async () => {}, 'deadline'],
    ['a hang-up', async (client: RawClient) => client.destroy(), 'hangup'],
  ] as const) {
    test(`${name}: setsid, set -m and & descendants stop through the cgroup`, async () => {
      const audit = files.path(`${reason}.audit`);
      const daemon = await startDaemon({
        contain: true,
        cgroup: base,
        timeout: reason === 'deadline' ? 1000 : 0,
        killTimeout: 300,
        collectLog: true,
        policy: { audit },
      });
      try {
        const client = await RawClient.connect(daemon.path);
        client.send(request(ESCAPERS));
        const { cgroup, pids } = await started(client);
        assert.match(cgroup, /\/run-\d+$/);
        assert.ok(existsSync(join(base, cgroup.split('/').at(-1)!)));
        assert.ok(pids.every(isAlive));
        await stop(client);
        if (reason === 'deadline')
          assert.deepEqual((await client.reply()).exit, ['termsig', 'TERM']);
        await waitUntil(() => !pids.some(isAlive), 'every descendant is gone');
        await waitUntil(() => auditRecords(audit).length === 1, 'the audit record');
        const [record] = auditRecords(audit);
        assert.equal(record!.reason, reason);
        assert.equal(record!.descendantsStopped, 3);
        await waitUntil(() => leavesOf(base).length === 0, 'the leaf is removed');
        assert.match(daemon.log.join('\n'), new RegExp(`a cgroup of their own under ${base}`));
      } finally {
        await daemon.close();
      }
      // (tsx's esbuild service aside: the harness's, not a run's)
      assert.deepEqual(
        childrenOf().filter((child) => child.command !== 'esbuild'),
        [],
      );
    });
  }

  test('shutdown: the running tree stops through the cgroup, and no leaf is left', async () => {
    const daemon = await startDaemon({ contain: true, cgroup: base, timeout: 0, killTimeout: 300 });
    const client = await RawClient.connect(daemon.path);
    client.send(request(ESCAPERS));
    const { pids } = await started(client);
    await daemon.close();
    assert.deepEqual((await client.reply()).exit, ['termsig', 'TERM']);
    await waitUntil(() => !pids.some(isAlive), 'every descendant is gone');
    assert.deepEqual(leavesOf(base), []);
  });

  const account = testAccount('procsock-t-cgroup', true);
  test('a program run as another user (policy user) is in its leaf', {
    skip: account ? false : 'needs root and useradd',
  }, async () => {
    const daemon = await startDaemon({
      contain: true,
      cgroup: base,
      policy: { user: account!.name },
    });
    try {
      const reply = await RawClient.exchange(
        daemon.path,
        request(['sh', '-c', 'id -u; grep ^0:: /proc/self/cgroup']),
      );
      assert.deepEqual(reply.exit, ['exitcode', '0'], reply.stderr);
      const [uid, cgroup] = reply.stdout.trim().split('\n');
      assert.equal(Number(uid), account!.uid);
      assert.match(cgroup!, /\/run-\d+$/);
      assert.deepEqual(leavesOf(base), []);
    } finally {
      await daemon.close();
    }
  });

  test('--no-contain: runs get no cgroup; --cgroup on a directory that is none: refused', async () => {
    const daemon = await startDaemon({ cgroup: base, contain: false });
    try {
      const reply = await RawClient.exchange(
        daemon.path,
        request(['grep', '^0::', '/proc/self/cgroup']),
      );
      assert.doesNotMatch(reply.stdout, /run-/);
    } finally {
      await daemon.close();
    }
    await assert.rejects(startDaemon({ cgroup: files.path('') }), /not a cgroup v2 directory/);
  });

  test('auto: a daemon whose own cgroup is the hierarchy root uses none', {
    skip:
      existsSync(join(ownCgroup() ?? '/', 'cgroup.events')) &&
      'this process is not in the root cgroup',
  }, async () => {
    const daemon = await startDaemon({ collectLog: true });
    try {
      assert.equal(daemon.server.options.cgroup, null);
      const reply = await RawClient.exchange(
        daemon.path,
        request(['grep', '^0::', '/proc/self/cgroup']),
      );
      assert.equal(reply.stdout, '0::/\n');
    } finally {
      await daemon.close();
    }
  });

  describe('a daemon in the directory itself', () => {
    for (const [name, flags, prefix] of [
      // The daemon is started in `dir` and given it.
      [
        '--cgroup DIR',
        (dir: string) => ['--cgroup', dir],
        (dir: string) => ['sh', '-c', `echo $$ > ${dir}/cgroup.procs && exec "$0" "$@"`],
      ],
      // A container: a cgroup namespace whose root is `dir`, and cgroup2 mounted in it, as a
      // runtime does; auto (the default) finds it.
      [
        'auto, in a cgroup namespace (a container)',
        () => [],
        (dir: string) => [
          'sh',
          '-c',
          `echo $$ > ${dir}/cgroup.procs && exec unshare -Cm sh -c 'umount ${mountOf()} && mount -t cgroup2 none ${mountOf()} && exec "$0" "$@"' "$0" "$@"`,
        ],
      ],
    ] as const) {
      test(`${name}: moves into a leaf of its own first; runs get theirs next to it`, async () => {
        const dir = join(base, name.startsWith('auto') ? 'ns' : 'own');
        mkdirSync(dir);
        const daemon = await startDaemonProcess(['-d', '--contain', ...flags(dir)], {
          prefix: prefix(dir),
        });
        try {
          const own = readFileSync(`/proc/${daemon.pid}/cgroup`, 'utf8');
          assert.match(own, /\/procsock-daemon\n/, own);
          const client = await RawClient.connect(daemon.path);
          client.send(request(ESCAPERS));
          const { pids } = await started(client);
          const leaves = leavesOf(dir);
          assert.equal(leaves.length, 2, leaves.join(' '));
          assert.ok(leaves.includes('procsock-daemon'));
          assert.ok(
            leaves.some((leaf) => /^run-\d+$/.test(leaf)),
            leaves.join(' '),
          );
          client.destroy();
          await waitUntil(() => !pids.some(isAlive), 'every descendant is gone');
          await waitUntil(() => leavesOf(dir).length === 1, 'the run leaf is removed');
        } finally {
          await daemon.stop();
          daemon.cleanup();
        }
        assert.deepEqual(leavesOf(dir), ['procsock-daemon']);
      });
    }
  });
});

/** Where cgroup2 is mounted (the test cgroup's hierarchy). */
function mountOf(): string {
  let dir = base;
  while (existsSync(join(dir, '..', 'cgroup.procs'))) dir = join(dir, '..');
  return dir;
}

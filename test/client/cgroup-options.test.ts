/**
 * `cgroup` on run(), an exec, connect() and Shell: a local contained run gets a leaf cgroup
 * of its own in the directory given (the program is in it before it runs); a daemon chooses
 * its runs' cgroups itself, so through a daemon the option is refused with a typed error and
 * nothing runs — never ignored. And `usage.memoryPeak`, the run's cgroup's memory.peak, is a
 * field of every result's usage, meaning the same locally and through the daemon (the
 * protocol extension's `memoryPeak` usage key): a number where the run had a cgroup with the
 * memory controller, else null. Real processes, a real daemon, and a fake daemon that sends
 * the key (this machine may have no memory controller on cgroup v2).
 */
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { reaperAvailable } from '../../src/channel/contain.js';
import { createExec, run } from '../../src/client/exec.js';
import { connect } from '../../src/client/session.js';
import { ArgumentError, UnsupportedOptionError } from '../../src/errors.js';
import { Shell } from '../../src/shell/index.js';
import { makeTestCgroup, removeTestCgroup } from '../helpers/cgroup.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { assertUsageShape } from '../helpers/outcome.js';
import { tempDir } from '../helpers/process.js';

const made = reaperAvailable() ? makeTestCgroup() : { skip: 'procsock_reaper is not built' };
const skip = 'skip' in made ? made.skip : false;
const base = 'dir' in made ? made.dir : '';

/** The cgroup v2 line of /proc/self/cgroup as printed by the program. */
function unifiedLine(stdout: string): string | undefined {
  return stdout.split('\n').find((line) => line.startsWith('0::'));
}

describe('cgroup on local runs', { skip }, () => {
  after(() => {
    if (base) removeTestCgroup(base);
  });

  test('run() and an exec: the program runs in a leaf of the directory; usage has memoryPeak', async () => {
    const result = await run(['cat', '/proc/self/cgroup'], { contain: true, cgroup: base });
    assert.equal(result.exitCode, 0);
    assert.match(unifiedLine(result.stdout) ?? '', /\/run-\d+$/);
    assert.ok(result.usage);
    assertUsageShape(result.usage);
    assert.ok('memoryPeak' in result.usage);
    const exec = createExec('local', { contain: true, cgroup: base });
    assert.match(unifiedLine((await exec('cat', '/proc/self/cgroup')).stdout) ?? '', /\/run-\d+$/);
  });

  test('connect(): a session in a leaf', async () => {
    const session = await connect('local', { contain: true, cgroup: base });
    session.sendArgs(['cat', '/proc/self/cgroup']);
    session.sendClose();
    let out = '';
    for await (const item of session) if (item.type === 'stdout') out += item.data;
    assert.match(unifiedLine(out) ?? '', /\/run-\d+$/);
    await session.close();
  });

  test('Shell: the shell and its commands run in its leaf (contained by default)', async () => {
    const shell = Shell.posix({ program: 'sh', cgroup: base });
    await shell.start(10_000);
    try {
      const { stdout } = await shell.run('cat /proc/self/cgroup');
      assert.match(unifiedLine(stdout) ?? '', /\/run-\d+$/);
    } finally {
      await shell.stop(10_000);
    }
  });

  test('cgroup without containment is an ArgumentError, and nothing runs', async () => {
    await assert.rejects(run(['true'], { cgroup: base }), ArgumentError);
    await assert.rejects(run(['true'], { cgroup: base, contain: false }), ArgumentError);
    assert.throws(
      () => Shell.posix({ program: 'sh', cgroup: base, contain: false }),
      ArgumentError,
    );
  });
});

test('a bad cgroup value is an ArgumentError before anything runs', async () => {
  await assert.rejects(run(['true'], { contain: true, cgroup: '' }), ArgumentError);
  await assert.rejects(run(['true'], { contain: true, cgroup: 42 as never }), ArgumentError);
  assert.throws(() => Shell.posix({ program: 'sh', cgroup: '' }), ArgumentError);
});

describe('cgroup through a daemon: refused, typed, nothing run', () => {
  let daemon: TestDaemon;
  const files = tempDir('procsock-cgroup-options-');
  before(async () => {
    daemon = await startDaemon({ timeout: 60_000 });
  });
  after(async () => {
    await daemon.close();
    files.cleanup();
  });

  const refused = (error: unknown) => {
    assert.ok(error instanceof UnsupportedOptionError, String(error));
    assert.equal(error.code, 'PROCSOCK_UNSUPPORTED');
    assert.equal(error.option, 'cgroup');
    assert.match(error.message, /procsock serve --cgroup/);
    return true;
  };

  test('run(), an exec, connect() and Shell.start()', async () => {
    const marker = files.path('ran');
    const argv = ['sh', '-c', `echo > ${marker}`];
    const options = { socket: daemon.path, contain: true, cgroup: '/sys/fs/cgroup/x' };
    await assert.rejects(run(argv, options), refused);
    await assert.rejects(createExec({ socket: daemon.path }, { cgroup: '/x' })(argv), refused);
    await assert.rejects(connect({ socket: daemon.path }, { cgroup: '/x' }), refused);
    const shell = Shell.posix({ program: 'sh', cgroup: '/x', transport: { socket: daemon.path } });
    await assert.rejects(shell.start(10_000), refused);
    assert.equal(existsSync(marker), false);
  });

  test("a daemon run's usage has memoryPeak too (null: the daemon's run has no memory controller here, or is plain)", async () => {
    const result = await run(['true'], { socket: daemon.path, protocol: 'procsock' });
    assert.ok(result.usage);
    assertUsageShape(result.usage);
  });
});

test("memoryPeak from the daemon's usage reaches the result, in KiB as maxRSS", async () => {
  // A fake procsock daemon: greets, and ends every run with a usage carrying memoryPeak.
  const dir = tempDir('procsock-fake-mempeak-');
  const path = dir.path('fake.sock');
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    const usage = 'maxRSS=1500 memoryPeak=2048 wallTime=3';
    socket.end(`8:procsock,1:1,6:reason,4:exit,5:usage,${usage.length}:${usage},8:exitcode,1:0,`);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  try {
    const result = await run(['true'], { socket: path, protocol: 'procsock' });
    assert.deepEqual(result.usage, {
      userCPUTime: null,
      systemCPUTime: null,
      maxRSS: 1500,
      memoryPeak: 2048,
      wallTime: 3,
    });
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    dir.cleanup();
  }
});

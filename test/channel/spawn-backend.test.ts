/**
 * Both spawn backends (native addon, child_process) must start programs identically and
 * report the same things: argv intact, env/cwd honoured, exit codes and signals, exec
 * failures, only 0/1/2 inherited, process groups, no leaks. Each test runs on each backend.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { after, describe, test } from 'node:test';
import { LocalChannel, type LocalChannelOptions } from '../../src/channel/local.js';
import { resolveSpawnBackend, spawnBackendInUse } from '../../src/channel/spawn/index.js';
import type { ExitStatus } from '../../src/core/output.js';
import { ArgumentError } from '../../src/errors.js';
import { addonAvailable, addonLoadError } from '../../src/native/addon.js';
import {
  childrenOf,
  isAlive,
  openFdCount,
  processInfo,
  tempDir,
  waitUntil,
} from '../helpers/process.js';

const requireNative = process.env.PROCSOCK_REQUIRE_NATIVE === '1';
const nativeSkip =
  !requireNative && !addonAvailable() && `native addon not built: ${addonLoadError()?.message}`;

interface Run {
  status: ExitStatus | null;
  stdout: Buffer;
  stderr: Buffer;
  channel: LocalChannel;
}

async function run(
  argv: string[],
  options: LocalChannelOptions = {},
  stdin?: Buffer | string,
  closeStdin = true,
): Promise<Run> {
  const channel = new LocalChannel(argv, { killTimeout: 200, ...options });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  channel.on('output', ({ type, data }) => (type === 'stdout' ? out : err).push(data));
  if (stdin !== undefined) channel.write(stdin);
  if (closeStdin) channel.end();
  const status = await channel.done();
  return { status, stdout: Buffer.concat(out), stderr: Buffer.concat(err), channel };
}

/** This process's descriptors without O_CLOEXEC: any exec'd child inherits those. */
function inheritableFds(): string[] {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      const flags = /flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
      return flags !== null && (Number.parseInt(flags[1]!, 8) & 0o2000000) === 0;
    } catch {
      return false;
    }
  });
}

const scratch = tempDir('procsock-spawn-');
after(() => scratch.cleanup());

for (const backend of ['native', 'child_process'] as const) {
  describe(`spawn backend: ${backend}`, { skip: backend === 'native' && nativeSkip }, () => {
    const opts = (more: LocalChannelOptions = {}): LocalChannelOptions => ({
      spawnBackend: backend,
      ...more,
    });

    test('the backend asked for is the one used', () => {
      assert.equal(spawnBackendInUse(backend), backend);
      assert.equal(resolveSpawnBackend(backend).name, backend);
    });

    test('argv arrives intact: spaces, quotes, unicode, empty strings, newlines', async () => {
      const args = ['a b', '"quoted"', "it's", 'ünïcødé ✓', '', 'line\nbreak', '$HOME', '*'];
      const { status, stdout } = await run(
        ['sh', '-c', 'printf "%s\\0" "$0" "$@"', 'zero', ...args],
        opts(),
      );
      assert.deepEqual(status, { exitCode: 0, termSignal: null });
      assert.deepEqual(stdout.toString().split('\0').slice(0, -1), ['zero', ...args]);
    });

    test('env is exactly the one given, and cwd is honoured', async () => {
      const env = { FOO: 'bar baz', EMPTY: '', UNI: 'ü', PATH: process.env.PATH };
      const { stdout } = await run(['env'], opts({ env, cwd: scratch.dir }));
      assert.deepEqual(stdout.toString().trim().split('\n').sort(), [
        'EMPTY=',
        'FOO=bar baz',
        `PATH=${process.env.PATH}`,
        'UNI=ü',
      ]);
      const pwd = await run(['pwd'], opts({ cwd: scratch.dir }));
      assert.equal(pwd.stdout.toString(), `${scratch.dir}\n`);
    });

    test("the program is looked up in the PATH of the child's env", async () => {
      const bin = scratch.path(`bin-${backend}`);
      spawnSync('mkdir', ['-p', bin]);
      writeFileSync(`${bin}/only-here`, '#!/bin/sh\necho found "$@"\n');
      chmodSync(`${bin}/only-here`, 0o755);
      const found = await run(['only-here', 'x'], opts({ env: { PATH: `/nonexistent:${bin}` } }));
      assert.equal(found.stdout.toString(), 'found x\n');
      const missing = await run(['only-here'], opts());
      assert.deepEqual(missing.status, { exitCode: 127, termSignal: null });
    });

    test('a script without #! runs through /bin/sh, as execvp does', async () => {
      const script = scratch.path(`plain-${backend}`);
      writeFileSync(script, 'echo "$0" plain script "$#" "$1" "$2"\n');
      chmodSync(script, 0o755);
      // sh gets the script's path as $0 and the arguments after argv[0] as they were.
      const { status, stdout } = await run([script, 'ok', 'two words'], opts());
      assert.deepEqual(status, { exitCode: 0, termSignal: null });
      assert.equal(stdout.toString(), `${script} plain script 2 ok two words\n`);
    });

    test('file: executes that file, with argv[0] passed as given', async () => {
      const { stdout } = await run(['custom-zero', '-c', 'echo "$0"'], opts({ file: '/bin/sh' }));
      assert.equal(stdout.toString(), 'custom-zero\n');
    });

    test('rlimits: set before exec on native; refused at once on child_process', async () => {
      if (backend === 'child_process') {
        assert.throws(
          () => new LocalChannel(['true'], opts({ rlimits: { openFiles: 77 } })),
          ArgumentError,
        );
        return;
      }
      const { stdout } = await run(['sh', '-c', 'ulimit -n'], opts({ rlimits: { openFiles: 77 } }));
      assert.equal(stdout.toString(), '77\n');
    });

    test('uid and gid: the program runs as that user and group', {
      skip: process.getuid?.() !== 0 && 'needs root',
    }, async () => {
      const { stdout } = await run(['id', '-u'], opts({ uid: 65534, gid: 65534 }));
      const groups = await run(['id', '-G'], opts({ uid: 65534, gid: 65534 }));
      assert.equal(stdout.toString(), '65534\n');
      assert.equal(groups.stdout.toString(), '65534\n', 'supplementary groups dropped');
    });

    test('exit codes and signal names', async () => {
      for (const code of [0, 1, 3, 255]) {
        const { status } = await run(['sh', '-c', `exit ${code}`], opts());
        assert.deepEqual(status, { exitCode: code, termSignal: null });
      }
      for (const signal of ['TERM', 'KILL', 'INT', 'PIPE']) {
        const { status } = await run(['sh', '-c', `kill -${signal} $$`], opts());
        assert.deepEqual(status, { exitCode: null, termSignal: signal });
      }
    });

    test('no signal is ignored or blocked in the child (SIGPIPE included)', async () => {
      // Node ignores SIGPIPE; a child that inherited that would loop on EPIPE in `yes | head`.
      const { stdout } = await run(['grep', '-E', '^Sig(Ign|Blk)', '/proc/self/status'], opts());
      assert.equal(stdout.toString(), 'SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n');
    });

    test('exec failures: 127 not found, 126 not executable, identical messages', async () => {
      const notFound = await run(['no-such-program-xyz', 'arg'], opts());
      assert.deepEqual(notFound.status, { exitCode: 127, termSignal: null });
      assert.equal(
        notFound.stderr.toString(),
        'procsock: no-such-program-xyz: command not found\n',
      );
      assert.equal(notFound.channel.pid, undefined);

      const plain = scratch.path(`not-executable-${backend}`);
      writeFileSync(plain, 'data\n');
      const notExecutable = await run([plain], opts());
      assert.deepEqual(notExecutable.status, { exitCode: 126, termSignal: null });
      assert.equal(notExecutable.stderr.toString(), `procsock: ${plain}: permission denied\n`);

      const directory = await run([scratch.dir], opts());
      assert.deepEqual(directory.status, { exitCode: 126, termSignal: null });

      const badCwd = await run(['true'], opts({ cwd: scratch.path('no-such-dir') }));
      // A cwd that cannot be entered is the daemon's answer too: 126 and why (8d2db65).
      assert.deepEqual(badCwd.status, { exitCode: 126, termSignal: null });
      assert.match(badCwd.stderr.toString(), /no such directory/);

      const nul = await run(['echo', 'a\0b'], opts());
      assert.deepEqual(nul.status, { exitCode: 126, termSignal: null });
      assert.match(nul.stderr.toString(), /^procsock: echo: invalid argument/);
    });

    test('stopped before its exec failure is known, a program leaves no kill timer', async () => {
      // The native backend learns of an exec failure when it reaps the process that tried.
      const timers = () =>
        process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length;
      const before = timers();
      const channel = new LocalChannel(['no-such-program-xyz'], opts({ killTimeout: 600_000 }));
      channel.terminate();
      const status = (await channel.done())!;
      // The native child may take the TERM before it even tries to exec.
      if (status.termSignal === null) {
        assert.equal(status.exitCode, 127);
        assert.equal(channel.pid, undefined);
      } else {
        assert.equal(backend, 'native');
        assert.equal(status.termSignal, 'TERM');
      }
      assert.equal(timers(), before, 'the TERM-then-KILL timer went with the failure');
    });

    test("the child inherits only 0, 1 and 2: no listening socket, no other child's pipes", async () => {
      const server = createServer().listen(scratch.path(`listen-${backend}.sock`));
      await new Promise((resolve) => server.once('listening', resolve));
      const other = new LocalChannel(['cat'], opts());
      const { stdout } = await run(['sh', '-c', 'ls -l /proc/$$/fd'], opts());
      other.end();
      await other.done();
      server.close();
      const fds = stdout
        .toString()
        .trim()
        .split('\n')
        .filter((line) => line.includes(' -> '))
        .map((line) => line.replace(/^.* (\d+) -> (.*)$/, '$1 $2'));
      const numbers = fds.map((line) => line.split(' ')[0]!);
      // Node's own spawn cannot help passing on what the test harness left open without
      // O_CLOEXEC (so would a fork anywhere); the native backend closes everything above 2.
      const allowed = backend === 'native' ? [] : inheritableFds();
      assert.deepEqual(
        numbers.filter((fd) => !['0', '1', '2'].includes(fd) && !allowed.includes(fd)),
        [],
        fds.join('; '),
      );
      for (const fd of ['0', '1', '2']) assert.ok(numbers.includes(fd), fds.join('; '));
      for (const line of fds.slice(0, 3)) assert.match(line, / (pipe|socket):\[\d+\]$/);
    });

    test('a process group: the group is the child, and kill reaches grandchildren', async () => {
      const channel = new LocalChannel(
        ['sh', '-c', 'sleep 30 & echo $!; wait'],
        opts({ processGroup: true, killTimeout: 200 }),
      );
      const grandchild = await new Promise<number>((resolve) => {
        channel.once('output', ({ data }) => resolve(Number(data.toString().trim())));
      });
      const pid = channel.pid!;
      assert.equal(processInfo(pid)?.pgid, pid);
      assert.equal(processInfo(grandchild)?.pgid, pid);
      channel.kill('SIGTERM');
      assert.deepEqual(await channel.done(), { exitCode: null, termSignal: 'TERM' });
      await waitUntil(() => !isAlive(grandchild), 'the grandchild is gone');
    });

    test('a process group: a TERM sent at once after the spawn reaches the group', async () => {
      // The native backend's parent makes the group too (setpgid(pid, pid) after clone): else
      // a kill(-pid) before the child's own setpgid found no group and the TERM was lost.
      for (let i = 0; i < 20; i++) {
        const channel = new LocalChannel(
          ['sleep', '30'],
          opts({ processGroup: true, killTimeout: 60_000 }),
        );
        channel.kill('SIGTERM');
        assert.deepEqual(await channel.done(), { exitCode: null, termSignal: 'TERM' }, `run ${i}`);
      }
    });

    test('terminate: TERM, then KILL after killTimeout for a program that ignores TERM', async () => {
      const term = new LocalChannel(['sleep', '30'], opts({ killTimeout: 200 }));
      term.terminate();
      assert.deepEqual(await term.done(), { exitCode: null, termSignal: 'TERM' });

      const stubborn = new LocalChannel(
        ['sh', '-c', 'trap "" TERM; echo ready; while :; do sleep 0.05; done'],
        opts({ killTimeout: 200 }),
      );
      await new Promise<void>((resolve) => stubborn.once('output', () => resolve()));
      stubborn.terminate();
      assert.deepEqual(await stubborn.done(), { exitCode: null, termSignal: 'KILL' });
    });

    test('large output and large stdin flow with back-pressure, intact', async () => {
      const big = await run(['head', '-c', String(32 * 1024 * 1024), '/dev/zero'], opts());
      assert.equal(big.stdout.length, 32 * 1024 * 1024);

      const data = randomBytes(8 * 1024 * 1024);
      const channel = new LocalChannel(['cat'], opts());
      const hash = createHash('sha256');
      let received = 0;
      channel.on('output', ({ data: chunk }) => {
        hash.update(chunk);
        received += chunk.length;
      });
      for (let offset = 0; offset < data.length; offset += 256 * 1024) {
        if (!channel.write(data.subarray(offset, offset + 256 * 1024))) {
          await new Promise<void>((resolve) => channel.once('drain', () => resolve()));
        }
      }
      channel.end();
      assert.deepEqual(await channel.done(), { exitCode: 0, termSignal: null });
      assert.equal(received, data.length);
      assert.equal(hash.digest('hex'), createHash('sha256').update(data).digest('hex'));
    });

    test('pause stops output until resume (the program blocks on its full pipe)', async () => {
      const channel = new LocalChannel(
        ['head', '-c', String(4 * 1024 * 1024), '/dev/zero'],
        opts(),
      );
      let received = 0;
      channel.on('output', ({ data }) => {
        received += data.length;
        if (received > 0) channel.pause();
      });
      await waitUntil(() => received > 0, 'first output');
      const pausedAt = received;
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(received, pausedAt);
      assert.equal(channel.exitStatus, null);
      channel.removeAllListeners('output');
      channel.on('output', ({ data }) => {
        received += data.length;
      });
      channel.resume();
      assert.deepEqual(await channel.done(), { exitCode: 0, termSignal: null });
      assert.equal(received, 4 * 1024 * 1024);
    });

    test('lendOutput: copied chunks are intact, also when the consumer pauses between them', async () => {
      const data = randomBytes(3 * 1024 * 1024 + 17);
      const file = scratch.path(`lend-${backend}.bin`);
      writeFileSync(file, data);
      // stdout carries the file; stderr a short line, which must not clobber stdout's chunks.
      const channel = new LocalChannel(
        ['sh', '-c', 'echo start >&2; cat "$0"; echo end >&2', file],
        opts({ lendOutput: true }),
      );
      channel.end();
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let chunks = 0;
      channel.on('output', ({ type, data: chunk }) => {
        (type === 'stdout' ? out : err).push(Buffer.from(chunk));
        // A slow consumer now and then: nothing may be read while it holds the channel paused.
        if (++chunks % 3 === 0) {
          channel.pause();
          setTimeout(() => channel.resume(), 5);
        }
      });
      assert.deepEqual(await channel.done(), { exitCode: 0, termSignal: null });
      assert.equal(Buffer.concat(err).toString(), 'start\nend\n');
      assert.ok(Buffer.concat(out).equals(data), 'stdout arrives intact');
    });

    test('lendOutput: a chunk kept while paused survives other programs reading meanwhile', async () => {
      // The daemon's case: a big chunk queued on a slow socket, the channel paused until it
      // drains, while other connections' programs keep writing.
      const keeper = new LocalChannel(
        ['head', '-c', '65536', '/dev/zero'],
        opts({ lendOutput: true }),
      );
      keeper.end();
      const kept = await new Promise<Buffer>((resolve) => {
        keeper.once('output', ({ data }) => {
          keeper.pause();
          resolve(data); // a view, not a copy: valid until resume()
        });
      });
      const snapshot = Buffer.from(kept);
      for (let i = 0; i < 3; i++) {
        const other = new LocalChannel(
          ['head', '-c', '300000', '/dev/urandom'],
          opts({ lendOutput: true }),
        );
        other.end();
        let bytes = 0;
        other.on('output', ({ data }) => {
          bytes += data.length;
        });
        await other.done();
        assert.equal(bytes, 300_000);
      }
      assert.ok(kept.equals(snapshot), 'the kept chunk is untouched');
      keeper.resume();
      assert.deepEqual(await keeper.done(), { exitCode: 0, termSignal: null });
    });

    test('many spawns leave no zombie, no child and no descriptor behind', async () => {
      // Warm up first: lazily created handles (the addon, libuv's signal pipe) are not leaks.
      await run(['true'], opts());
      await run(['no-such-program-xyz'], opts());
      const fdsBefore = openFdCount();
      const childrenBefore = childrenOf().length;
      let next = 0;
      const worker = async () => {
        while (next < 300) {
          const i = next++;
          const argv = i % 10 === 9 ? ['no-such-program-xyz'] : ['true'];
          // Half of them never close stdin: the channel must release it at exit all the same.
          const { status } = await run(argv, opts(), undefined, i % 2 === 0);
          assert.equal(status?.exitCode, i % 10 === 9 ? 127 : 0);
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
      // Handles close a turn of the loop after 'close'; a stdin left open would hold its pipe.
      await waitUntil(() => openFdCount() <= fdsBefore, 'descriptors are released', 1000);
      assert.equal(childrenOf().length, childrenBefore, 'no zombie or stray child');
    });
  });
}

describe('choosing the backend', () => {
  test('an unknown choice is an ArgumentError, from the option or PROCSOCK_SPAWN', () => {
    assert.throws(
      () => new LocalChannel(['true'], { spawnBackend: 'fork' as never }),
      ArgumentError,
    );
    const saved = process.env.PROCSOCK_SPAWN;
    process.env.PROCSOCK_SPAWN = 'posix';
    try {
      assert.throws(() => spawnBackendInUse(), /unknown spawn backend "posix"/);
    } finally {
      if (saved === undefined) delete process.env.PROCSOCK_SPAWN;
      else process.env.PROCSOCK_SPAWN = saved;
    }
  });

  test('auto takes native when the addon is built', () => {
    assert.equal(spawnBackendInUse('auto'), addonAvailable() ? 'native' : 'child_process');
  });

  test('resource limits, user and group (native backend)', { skip: nativeSkip }, async () => {
    const { nativeBackend } = await import('../../src/channel/spawn/native.js');
    const child = nativeBackend.spawn({
      argv: ['sh', '-c', 'ulimit -n; id -u; id -g'],
      processGroup: false,
      rlimits: { openFiles: 77 },
      ...(process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {}),
    });
    child.stdin!.end();
    const chunks: Buffer[] = [];
    child.stdout!.on('data', (data: Buffer) => chunks.push(data));
    const closed = new Promise((resolve) => child.stdout!.on('close', () => resolve(undefined)));
    const code = await new Promise((resolve) => child.on('exit', (exitCode) => resolve(exitCode)));
    await closed;
    const expectedIds = process.getuid?.() === 0 ? '65534' : String(process.getuid?.());
    assert.equal(code, 0);
    const [limit, uid] = Buffer.concat(chunks).toString().trim().split('\n');
    assert.equal(limit, '77');
    assert.equal(uid, expectedIds);
  });

  test('without pidfd the addon learns of exits from SIGCHLD', { skip: nativeSkip }, () => {
    // The exit watch is chosen when the addon loads, so this needs a process of its own.
    const script = `
      import { LocalChannel } from './src/channel/local.js';
      import { addonExitWatch } from './src/native/addon.js';
      import { spawn } from 'node:child_process';
      const statuses = await Promise.all(
        ['true', 'false', 'no-such-program-xyz'].map((p) =>
          new LocalChannel([p], { spawnBackend: 'native' }).done()),
      );
      const spawnedByChildProcess = new Promise((resolve) =>
        spawn('true').on('exit', resolve));
      console.log(JSON.stringify([addonExitWatch(), statuses, await spawnedByChildProcess]));
    `;
    const result = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      {
        env: { ...process.env, PROCSOCK_NATIVE_PIDFD: '0' },
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), [
      'sigchld',
      [
        { exitCode: 0, termSignal: null },
        { exitCode: 1, termSignal: null },
        { exitCode: 127, termSignal: null },
      ],
      0,
    ]);
  });
});

/**
 * The parent died before the parent-death signal was set: the child (the native backend's,
 * before its exec) and procsock's reaper (before it starts the program) compare getppid()
 * with the parent they were started by, and end without running the program. Made
 * deterministic by a test hook (built with PROCSOCK_TEST_HOOKS; inert unless its variable is
 * set): the child reads a FIFO the test holds to its end just before the prctl, so the test
 * can SIGKILL the parent while the child waits there, then let it go on. The program would
 * create a marker file: it must not exist, and the child must be gone.
 *
 * The reaper's case compiles a hooked reaper of its own with cc and starts it from a shell;
 * the native child's needs an addon built with the hooks (scripts/test-sanitizers.sh builds
 * and runs it so). The parent's pipes are this test's, so they keep a reader when the
 * parent dies: a child that went on would run the program, not die of a SIGPIPE first.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, existsSync, openSync, readdirSync, readlinkSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { spawnBackendInUse } from '../../src/channel/local.js';
import { isAlive, tempDir, waitUntil } from '../helpers/process.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/parent-race.ts', import.meta.url));
const REAPER_SOURCE = fileURLToPath(new URL('../../native/reaper.c', import.meta.url));
const cc = process.env.CC || 'cc';
const hasCompiler = spawnSync(cc, ['--version'], { stdio: 'ignore' }).status === 0;

/** Whether `pid` has `path` open: then it is in the hook, before its prctl. */
function holds(pid: number, path: string): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === path;
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

/**
 * Starts the parent (`parentArgv(marker)`: a process that starts the child and prints its
 * pid), waits until that child is in the hook, SIGKILLs the parent, lets the child go on,
 * and checks that the program (which would create the marker) never ran and the child ended.
 */
async function parentDiesFirst(
  parentArgv: (marker: string) => string[],
  hold: string,
): Promise<void> {
  const files = tempDir('procsock-parent-race-');
  try {
    const fifo = files.path('hold');
    const marker = files.path('ran');
    execFileSync('mkfifo', [fifo]);
    // Opened read-write: the child's open for reading does not wait, and its read ends only
    // once this descriptor is closed.
    const writer = openSync(fifo, 'r+');
    let child = 0;
    try {
      const [command, ...args] = parentArgv(marker) as [string, ...string[]];
      // stdout, stderr and a descriptor 3 of this process's: the parent's children keep
      // readers when it dies.
      const parent = spawn(command, args, {
        stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
        env: { ...process.env, [hold]: fifo },
      });
      let line = '';
      parent.stdout!.setEncoding('utf8').on('data', (text: string) => {
        line += text;
      });
      parent.stderr!.resume();
      (parent.stdio[3] as Readable).resume();
      try {
        await waitUntil(() => line.includes('\n'), 'the parent has started its child', 30_000);
        child = Number(line.trim());
        await waitUntil(() => holds(child, fifo), 'the child waits in the hook', 30_000);
      } finally {
        parent.kill('SIGKILL');
        await once(parent, 'exit');
      }
    } finally {
      closeSync(writer); // the child goes on: prctl, then getppid() is no longer its parent's
    }
    await waitUntil(() => !isAlive(child), 'the child has ended by itself');
    assert.equal(existsSync(marker), false, 'the program must not have run');
  } finally {
    files.cleanup();
  }
}

describe('the parent died before the parent-death signal was set', () => {
  test('the reaper ends without starting the program', {
    skip: !hasCompiler && `no C compiler (${cc}) to build a hooked reaper`,
  }, async () => {
    const dir = tempDir('procsock-hooked-reaper-');
    try {
      const reaper = dir.path('procsock_reaper');
      execFileSync(cc, ['-DPROCSOCK_TEST_HOOKS', '-O2', '-std=gnu11', '-o', reaper, REAPER_SOURCE]);
      // The reaper's parent: a shell that starts it (its own pid as the parent, 100 ms exit
      // grace, 1 s kill timeout, no group), prints its pid, then sleeps.
      await parentDiesFirst(
        (marker) => [
          'sh',
          '-c',
          `"$0" $$ 100 1000 0 sh sh -c 'touch "$1"' sh "$1" & echo $!; exec sleep 300`,
          reaper,
          marker,
        ],
        'PROCSOCK_TEST_HOLD_REAPER',
      );
    } finally {
      dir.cleanup();
    }
  });

  test('the native child ends before its exec', {
    skip:
      spawnBackendInUse() !== 'native'
        ? 'the native backend only (child_process has no pre-exec hook)'
        : process.env.PROCSOCK_TEST_HOOKS !== '1' &&
          'needs the addon built with PROCSOCK_TEST_HOOKS (scripts/test-sanitizers.sh)',
  }, async () => {
    // A Node parent that starts `touch MARKER` natively, with the parent-death signal.
    await parentDiesFirst(
      (marker) => [process.execPath, '--import', 'tsx', FIXTURE, marker],
      'PROCSOCK_TEST_HOLD_SPAWN',
    );
  });
});

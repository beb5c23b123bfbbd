/**
 * `npm run serve` (scripts/serve.mjs): "serving on" only once the socket listens; SIGTERM or
 * SIGINT sent to npm's PID stops the daemon too and removes its socket (npm forwards the
 * signal to its child, which is the daemon itself); a failed start prints no "serving on".
 */
import { strict as assert } from 'node:assert';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { isListening } from '../helpers/daemon.js';
import { REPO } from '../helpers/package.js';
import { isAlive, processGroupMembers, tempDir, waitUntil } from '../helpers/process.js';

const skip =
  process.env.PROCSOCK_SPAWN === 'child_process' && 'backend-independent: runs in the native pass';
const dir = tempDir('procsock-serve-script-');
after(() => dir.cleanup());

function npmRunServe(socket: string): ChildProcess {
  // Its own process group, so that whatever it leaves behind can be found (and is not).
  return spawn('npm', ['run', 'serve'], {
    cwd: REPO,
    env: { ...process.env, PROCSOCK_SOCKET: socket },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
}

function exited(child: ChildProcess): Promise<{ code: number | null; stderr: string }> {
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  child.stdout!.resume();
  // 'exit', not 'close': a daemon left behind would hold the pipes open forever.
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stderr })));
}

describe('npm run serve', { skip }, () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`${signal} to npm's PID stops the daemon and removes its socket`, async () => {
      const socket = dir.path(`${signal}.sock`);
      const npm = npmRunServe(socket);
      const done = exited(npm);
      let listeningWhenSaid: boolean | undefined;
      npm.stderr!.on('data', (text: string) => {
        if (listeningWhenSaid === undefined && text.includes(`serving on ${socket}`)) {
          listeningWhenSaid = isListening(socket);
        }
      });
      await waitUntil(() => listeningWhenSaid !== undefined, '"serving on" is printed', 60_000);
      assert.equal(listeningWhenSaid, true, '"serving on" comes after the socket listens');
      const group = processGroupMembers(npm.pid!);
      assert.ok(group.length >= 2, 'npm and the daemon');
      process.kill(npm.pid!, signal);
      const { code, stderr } = await done;
      try {
        await waitUntil(
          () => group.every((member) => !isAlive(member.pid)),
          'every process of npm run serve is gone',
          10_000,
        );
      } finally {
        // Whatever is left (only when the test fails) must not outlive it.
        if (group.some((member) => isAlive(member.pid))) process.kill(-npm.pid!, 'SIGKILL');
      }
      assert.equal(code, 0, stderr);
      assert.equal(existsSync(socket), false, 'the socket file is removed');
    });
  }

  test('a daemon that cannot start never says it is serving', async () => {
    const file = dir.path('not-a-socket');
    writeFileSync(file, 'keep me');
    const { code, stderr } = await exited(npmRunServe(file));
    assert.notEqual(code, 0);
    assert.match(stderr, /fatal/);
    assert.doesNotMatch(stderr, /serving on/);
    assert.equal(existsSync(file), true);
  });
});

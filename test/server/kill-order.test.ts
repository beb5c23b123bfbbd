/**
 * The end of a stopped run, in the order things happen rather than as timers racing: the
 * daemon's "KILL sent" log line comes from the KILL the channel (or a contained run's reaper)
 * actually sent, and a client still reading is never dropped while a KILLed program is being
 * reaped, however long that takes. Each case holds up one process with SIGSTOP past the time
 * the old timers fired, which a loaded machine does by accident (both failed in CI at load 17).
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { reaperAvailable } from '../../src/channel/contain.js';
import { spawnBackendInUse } from '../../src/channel/local.js';
import { startDaemon } from '../helpers/daemon.js';
import { isAlive, processInfo, tempDir, waitUntil } from '../helpers/process.js';
import { RawClient, request } from '../helpers/raw-client.js';

const files = tempDir('procsock-kill-order-');
after(() => files.cleanup());

const IGNORE_TERM = new URL('../fixtures/ignore-term.sh', import.meta.url).pathname;
const skip = reaperAvailable() ? false : 'containment needs procsock_reaper';

function readSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Starts the TERM-ignoring fixture; resolves with its pid once it runs. */
async function startIgnoringTerm(path: string, record: string): Promise<[RawClient, number]> {
  const client = await RawClient.connect(path);
  client.send(request(['sh', IGNORE_TERM, record], [], false));
  await client.waitForStdout('\n');
  const pid = Number((await client.waitForPairs(1))[0]![1].trim());
  assert.ok(pid > 0);
  return [client, pid];
}

describe('a contained run', { skip }, () => {
  test('the KILL a reaper sends on its own clock is logged, as sent', async () => {
    const record = files.path('reaper-kill.log');
    const d = await startDaemon({ contain: true, timeout: 0, killTimeout: 300, collectLog: true });
    try {
      const [client, pid] = await startIgnoringTerm(d.path, record);
      const reaper = processInfo(pid)!.ppid;
      // A TERM to the reaper from outside (an operator's kill, a parent-death signal) stops the
      // run on the reaper's own clock: TERM to the tree, KILL 300 ms later, with no timer of
      // the daemon's. Before, the daemon logged a KILL only from a timer of its own, beside
      // the channel's: a KILL the reaper sent first (a busy daemon) went unlogged.
      process.kill(reaper, 'SIGTERM');
      const reply = await client.reply();
      assert.deepEqual(reply.exit, ['termsig', 'KILL']);
      assert.ok(readSafe(record) !== '', 'the program got TERM first');
      await waitUntil(() => d.server.connections === 0, 'the connection closed');
      assert.match(
        d.log.join('\n'),
        new RegExp(`pid ${pid} outlived the grace: KILL sent \\(by its reaper\\)`),
      );
    } finally {
      await d.close();
    }
  });

  test('a client reading its reply gets the exit pair however late the KILL is reaped', async () => {
    const record = files.path('late-reap.log');
    const d = await startDaemon({
      contain: true,
      timeout: 300,
      killTimeout: 300,
      collectLog: true,
    });
    try {
      const [client, pid] = await startIgnoringTerm(d.path, record);
      const reaper = processInfo(pid)!.ppid;
      await waitUntil(() => readSafe(record) !== '', 'the deadline TERMed the program');
      // The reaper takes nothing now: the daemon's KILL waits for it, past the old drop (2 k).
      process.kill(reaper, 'SIGSTOP');
      try {
        await waitUntil(() => d.log.some((line) => /KILL sent/.test(line)), 'KILL was sent');
        // No event says "nothing was dropped": wait past the time the old timer dropped it.
        await delay(3 * 300);
        assert.ok(isAlive(pid), 'the KILL is not reaped yet');
      } finally {
        process.kill(reaper, 'SIGCONT');
      }
      const reply = await client.reply();
      assert.deepEqual(reply.exit, ['termsig', 'KILL'], d.log.join('\n'));
      assert.doesNotMatch(d.log.join('\n'), /did not take its reply/);
    } finally {
      await d.close();
    }
  });
});

/** Whether `pid` has signal `signal` pending (a stopped process keeps it until continued). */
function pending(pid: number, signal: number): boolean {
  const status = readSafe(`/proc/${pid}/status`);
  const mask = (name: string) =>
    BigInt(`0x${new RegExp(`^${name}:\\s*([0-9a-f]+)$`, 'm').exec(status)?.[1] ?? '0'}`);
  return ((mask('SigPnd') | mask('ShdPnd')) & (1n << BigInt(signal - 1))) !== 0n;
}

const nativeSkip =
  skip ||
  (spawnBackendInUse() !== 'native'
    ? 'the native path needs the native spawn backend'
    : process.env.PROCSOCK_DAEMON_NATIVE === '0'
      ? 'PROCSOCK_DAEMON_NATIVE=0: the daemon serves on the JS path'
      : false);

describe('a contained run served natively (no log: native/conn.c)', { skip: nativeSkip }, () => {
  test('a client reading its reply gets the exit pair however late the KILL is reaped', async () => {
    const record = files.path('late-reap-native.log');
    const d = await startDaemon({ contain: true, timeout: 300, killTimeout: 300 });
    try {
      assert.ok(d.server.nativeConnections, 'served by native/conn.c');
      const [client, pid] = await startIgnoringTerm(d.path, record);
      const reaper = processInfo(pid)!.ppid;
      await waitUntil(() => readSafe(record) !== '', 'the deadline TERMed the program');
      process.kill(reaper, 'SIGSTOP');
      try {
        // The daemon's KILL of the tree (signal 40 to the reaper) waits, pending, for it.
        await waitUntil(() => pending(reaper, 40), 'KILL was sent');
        await delay(3 * 300);
      } finally {
        process.kill(reaper, 'SIGCONT');
      }
      assert.deepEqual((await client.reply()).exit, ['termsig', 'KILL']);
    } finally {
      await d.close();
    }
  });
});

test('a client that reads nothing while its run is stopped is still dropped', async () => {
  const d = await startDaemon({ timeout: 300, killTimeout: 300, collectLog: true });
  try {
    const client = await RawClient.connect(d.path);
    client.send(request(['sh', '-c', `trap '' TERM; echo $$; exec yes`], [], false));
    await client.waitForStdout('\n');
    const pid = Number((await client.waitForPairs(1))[0]![1].split('\n')[0]);
    client.socket.pause(); // takes nothing more: the daemon's socket fills
    await waitUntil(() => d.server.connections === 0, 'the client was dropped');
    assert.match(d.log.join('\n'), /did not take its reply in time/);
    assert.ok(!isAlive(pid), 'the program was KILLed');
    client.destroy();
  } finally {
    await d.close();
  }
});

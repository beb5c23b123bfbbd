/**
 * A client that hangs up while the daemon is not reading it. A program that does not read its
 * stdin fills its pipe, and the daemon stops reading the client's socket (back-pressure); the
 * client's end of file then sits unread behind its stdin, so before native/hangup.c (the JS
 * Connection) and the EPOLLHUP registration in native/conn.c (the native path) a client gone
 * meanwhile left its program running until it ended or -t (with -t 0, for ever).
 *
 * A full close is a hang-up: the program is stopped (TERM), reaped, nothing is left running,
 * and the audit log says hangup. A half-close is not (the client may still read its reply, and
 * its stdin is delivered first, as when the daemon reads): the program runs on and the reply
 * arrives. Each case runs on the daemon as tests start it (contained unless
 * PROCSOCK_TEST_CONTAIN=0), uncontained (served by native/conn.c on the native backend), and
 * uncontained in JavaScript (PROCSOCK_DAEMON_NATIVE=0).
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, writeSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { addonAvailable } from '../../src/native/addon.js';
import type { ServeOptions } from '../../src/server/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { childrenOf, isAlive, tempDir, waitUntil } from '../helpers/process.js';
import { ns, RawClient, request } from '../helpers/raw-client.js';

const files = tempDir('procsock-paused-hangup-');
after(() => files.cleanup());

const skip = addonAvailable() ? false : 'the hang-up watch needs the native addon';

/** A daemon with a -t of 0 (no deadline ends the program for us); `js`: never the native path. */
async function daemon(options: Partial<ServeOptions>, js: boolean): Promise<TestDaemon> {
  const saved = process.env.PROCSOCK_DAEMON_NATIVE;
  if (js) process.env.PROCSOCK_DAEMON_NATIVE = '0';
  try {
    return await startDaemon({ timeout: 0, ...options });
  } finally {
    if (saved === undefined) delete process.env.PROCSOCK_DAEMON_NATIVE;
    else process.env.PROCSOCK_DAEMON_NATIVE = saved;
  }
}

/** 2 MiB of stdin in 32 KiB pieces: far more than the pipe and the daemon hold. */
const STDIN = Buffer.concat(Array.from({ length: 64 }, () => ns(Buffer.alloc(32 * 1024, 'a'))));

/**
 * A point where the daemon (in this process, on this loop) has taken every event ready: an
 * exchange needs several loop turns, and a daemon reading a client reads what the kernel holds
 * of it at each. (An empty program name: refused without a spawn.)
 */
async function daemonTurned(path: string): Promise<void> {
  const reply = await RawClient.exchange(path, request(['']));
  assert.deepEqual(reply.exit, ['exitcode', '127']);
}

/**
 * Sends stdin straight to the client's descriptor (not through its Socket's buffer) until the
 * kernel takes no more and the daemon, turning, reads none of it: it has stopped reading the
 * client (the program's stdin is full), and everything sent is in the kernel, so a shutdown
 * of the client goes out at once.
 */
async function fillUntilPaused(client: RawClient, path: string): Promise<void> {
  const fd = (client.socket as unknown as { _handle: { fd: number } })._handle.fd;
  let offset = 0;
  let turned = false;
  for (;;) {
    const before = offset;
    try {
      while (offset < STDIN.length) offset += writeSync(fd, STDIN, offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
    }
    if (offset === STDIN.length)
      assert.fail('the daemon took 2 MiB of stdin the program never read');
    if (offset === before && turned) return;
    await daemonTurned(path);
    turned = true;
  }
}

/** The program prints its pid, then waits: for ever, or for a line in `fifo`. */
async function startProgram(path: string, script: string): Promise<[RawClient, number]> {
  const client = await RawClient.connect(path);
  client.send(request(['sh', '-c', `echo $$; ${script}`], [], false));
  await client.waitForStdout('\n');
  const pid = Number((await client.waitForPairs(1))[0]![1].trim());
  assert.ok(pid > 0);
  return [client, pid];
}

function auditRecords(
  path: string,
): { argv: string[]; reason: string; termSignal: string | null; error: string }[] {
  return readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
}

/** Our children but the test runner's own helpers (tsx's esbuild service). */
function programs() {
  return childrenOf().filter((child) => child.command !== 'esbuild');
}

const daemons: [string, Partial<ServeOptions>, boolean][] = [
  ['the default daemon', {}, false],
  ['an uncontained daemon', { contain: false }, false],
  ['an uncontained daemon serving in JavaScript', { contain: false }, true],
];

for (const [name, options, js] of daemons) {
  describe(name, { skip }, () => {
    test('a full close while the client is not read stops the program: nothing is left', async () => {
      const audit = files.path(`hangup-${name.replaceAll(' ', '-')}.jsonl`);
      const d = await daemon({ ...options, policy: { audit } }, js);
      const before = programs().length;
      try {
        const [client, pid] = await startProgram(d.path, 'exec sleep 300');
        await fillUntilPaused(client, d.path);
        client.destroy();
        await waitUntil(() => !isAlive(pid), 'the program was stopped');
        await waitUntil(() => d.server.connections === 0, 'the connection is closed');
        assert.equal(programs().length, before, 'nothing left running');
      } finally {
        await d.close();
      }
      const record = auditRecords(audit).find((entry) => entry.argv[0] === 'sh');
      assert.equal(record?.reason, 'hangup');
      assert.equal(record?.termSignal, 'TERM');
      assert.equal(record?.error, 'the client closed its end');
    });

    test('a half-close while the client is not read is no hang-up: the program runs on', async () => {
      const fifo = files.path(`go-${name.replaceAll(' ', '-')}`);
      execFileSync('mkfifo', [fifo]);
      const d = await daemon(options, js);
      try {
        const [client, pid] = await startProgram(
          d.path,
          `read line < '${fifo}'; echo "$line"; exit 3`,
        );
        await fillUntilPaused(client, d.path);
        client.socket.end(); // nothing is left buffered here: the shutdown goes out now
        // The daemon's loop turns (this exchange needs several) with the half-close reported.
        await daemonTurned(d.path);
        assert.ok(isAlive(pid), 'the program runs on after the half-close');
        writeFileSync(fifo, 'go\n');
        // The program exits without reading its stdin. Which the daemon learns first — that
        // exit, or the half-close behind the stdin it then discards — is a race of the kernel's:
        // sockexec's rule makes the second a hang-up (the client closed while its program
        // ran), and a contained run's exit comes later (through the reaper). Either way the
        // program ended by itself and the connection closes; a reply that came is whole.
        const reply = await client.reply();
        await waitUntil(() => !isAlive(pid), 'the program ended');
        if (reply.exit !== undefined) {
          assert.equal(reply.stdout, `${pid}\ngo\n`);
          assert.deepEqual(reply.exit, ['exitcode', '3']);
        }
        await waitUntil(() => d.server.connections === 0, 'the connection is closed');
      } finally {
        await d.close();
      }
    });
  });
}

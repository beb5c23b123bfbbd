/**
 * A client that hangs up while the daemon is not reading it. A program that does not read its
 * stdin fills its pipe, and the daemon stops reading the client's socket (back-pressure); the
 * client's end of file then sits unread behind its stdin, so before native/hangup.c (the JS
 * Connection) and the EPOLLHUP registration in native/conn.c (the native path) a client gone
 * meanwhile left its program running until it ended or -t (with -t 0, for ever).
 *
 * A close is a hang-up, full or half (sockexec's rule while the program runs, and so whatever
 * stdin waits before it): the program is stopped (TERM), reaped, nothing is left running, and
 * the audit log says hangup. Each case runs on the daemon as tests start it (contained unless
 * PROCSOCK_TEST_CONTAIN=0), uncontained (served by native/conn.c on the native backend), and
 * uncontained in JavaScript (PROCSOCK_DAEMON_NATIVE=0).
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { addonAvailable } from '../../src/native/addon.js';
import type { ServeOptions } from '../../src/server/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { childrenOf, isAlive, tempDir, waitUntil } from '../helpers/process.js';
import { args, extendedRequest, ns, RawClient, request } from '../helpers/raw-client.js';

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
const PIECE = Buffer.alloc(32 * 1024, 'a');
const STDIN = Buffer.concat(Array.from({ length: 64 }, () => ns(PIECE)));
/** The same in the protocol extension's `stdin` messages. */
const EXTENDED_STDIN = Buffer.concat(
  Array.from({ length: 64 }, () => Buffer.concat([ns('stdin'), ns(PIECE)])),
);

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
async function fillUntilPaused(client: RawClient, path: string, stdin = STDIN): Promise<void> {
  const fd = (client.socket as unknown as { _handle: { fd: number } })._handle.fd;
  let offset = 0;
  let turned = false;
  for (;;) {
    const before = offset;
    try {
      while (offset < stdin.length) offset += writeSync(fd, stdin, offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
    }
    if (offset === stdin.length)
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

    test('a half-close while the client is not read is a hang-up, at once, as sockexec’s', async () => {
      const fifo = files.path(`go-${name.replaceAll(' ', '-')}`);
      execFileSync('mkfifo', [fifo]);
      const audit = files.path(`half-${name.replaceAll(' ', '-')}.jsonl`);
      const d = await daemon({ ...options, policy: { audit } }, js);
      try {
        // The program would exit by itself, without reading its stdin, once told to: it is not.
        // Before, the half-close was judged only once the daemon got to it behind that stdin —
        // after the program had exited (a reply) or not yet (a hang-up): a race.
        const [client, pid] = await startProgram(
          d.path,
          `read line < '${fifo}'; echo "$line"; exit 3`,
        );
        await fillUntilPaused(client, d.path);
        client.socket.end(); // nothing is left buffered here: the shutdown goes out now
        await waitUntil(() => !isAlive(pid), 'the program was stopped');
        const reply = await client.reply();
        assert.equal(reply.exit, undefined, 'no exit pair after a hang-up');
        await waitUntil(() => d.server.connections === 0, 'the connection is closed');
      } finally {
        await d.close();
      }
      const record = auditRecords(audit).find((entry) => entry.argv[0] === 'sh');
      assert.equal(record?.reason, 'hangup');
      assert.equal(record?.termSignal, 'TERM');
    });
  });
}

/**
 * Messages of the protocol extension behind stdin the program does not read: the daemon reads
 * ahead of a full stdin (a bounded queue, README "Limits"), so a `stop` (or a signal) that
 * follows a few hundred KiB of stdin is seen at once — before, it waited behind that stdin
 * for ever (the call hung up 5 s later, and only the hang-up watch then stopped the program).
 */
for (const [name, options, js] of daemons) {
  describe(`${name}: messages behind unread stdin`, () => {
    test('a stop behind 256 KiB of unread stdin is answered at once, the stdin dropped', async () => {
      // A deadline far enough that a stop it does not see ends as 'deadline' instead of hanging.
      const d = await daemon({ ...options, timeout: 20_000 }, js);
      try {
        const client = await RawClient.connect(d.path);
        client.send(
          extendedRequest(
            [...args(['sh', '-c', 'echo $$; exec sleep 300']), ['kill-timeout', '5000']],
            [],
          ),
        );
        await client.waitForStdout('\n');
        const pid = Number((await client.waitForPairs(2))[1]![1].trim());
        const stdin = EXTENDED_STDIN.subarray(0, 8 * (PIECE.length + 15));
        client.send(Buffer.concat([stdin, ns('stop'), ns('abort')]));
        const reply = await client.reply();
        assert.deepEqual(
          reply.pairs.filter(([type]) => type === 'stopping' || type === 'reason'),
          [
            ['stopping', '5000'],
            ['reason', 'abort'],
          ],
        );
        assert.deepEqual(reply.exit, ['termsig', 'TERM']);
        assert.ok(pid > 0 && !isAlive(pid));
      } finally {
        await d.close();
      }
    });

    test('a signal behind unread stdin reaches the program at once', async () => {
      const d = await daemon({ ...options, timeout: 20_000 }, js);
      try {
        const client = await RawClient.connect(d.path);
        client.send(
          extendedRequest(
            args([
              'sh',
              '-c',
              "trap 'echo got INT; exit 7' INT; echo ready; while :; do sleep 0.05; done",
            ]),
            [],
          ),
        );
        await client.waitForStdout('ready\n');
        const stdin = EXTENDED_STDIN.subarray(0, 8 * (PIECE.length + 15));
        client.send(Buffer.concat([stdin, ns('signal'), ns('INT')]));
        const reply = await client.reply();
        assert.equal(reply.stdout, 'ready\ngot INT\n');
        assert.deepEqual(reply.exit, ['exitcode', '7']);
      } finally {
        await d.close();
      }
    });
  });
}

/**
 * The call's own stops — `timeout`, `idleTimeout`, `maxBuffer` and an AbortSignal — end with
 * the program's real end in `error.result`, locally and through a procsock daemon: the status
 * (TERM, or KILL for a program that ignores TERM, after the kill grace), the call's cause as
 * the reason, usage, and the output collected so far. Through a daemon in the protocol
 * extension the call sends `stop` with its cause and waits for the daemon's reply; a plain
 * sockexec session can only hang up, and its result says so (the cause, no status, no usage).
 * Real programs, real daemons on real sockets; run on both spawn backends.
 */
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { daemonSpeaksExtension } from '../../src/channel/socket.js';
import type { EndReason } from '../../src/channel/usage.js';
import { type RunOptions, run } from '../../src/client/exec.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { assertUsageShape, failure } from '../helpers/outcome.js';
import { childrenOf, openFdCount, tempDir, waitUntil } from '../helpers/process.js';

const IGNORE_TERM = new URL('../fixtures/ignore-term.sh', import.meta.url).pathname;
const files = tempDir('procsock-stops-');
/**
 * The kill grace: longer than a second, so a call that gave up on the daemon a second after
 * its stop (as it did) would see no end; the daemon's `stopping` tells it to wait this long.
 */
const GRACE = 1500;

let daemon: TestDaemon;
let plain: TestDaemon;
before(async () => {
  [daemon, plain] = await Promise.all([
    startDaemon({ timeout: 60_000, killTimeout: GRACE, collectLog: true }),
    startDaemon({ timeout: 60_000, killTimeout: GRACE, extension: false }),
  ]);
});
after(async () => {
  await Promise.all([daemon.close(), plain.close()]);
  files.cleanup();
});

/** The four causes: options made per call (an AbortSignal.timeout counts from its making). */
const CAUSES: [EndReason, string, () => RunOptions][] = [
  ['timeout', 'PROCSOCK_TIMEOUT', () => ({ timeout: 200 })],
  ['idle-timeout', 'PROCSOCK_TIMEOUT', () => ({ idleTimeout: 200 })],
  ['abort', 'PROCSOCK_ABORTED', () => ({ signal: AbortSignal.timeout(200) })],
  // The fixture prints its pid first: more than 2 bytes.
  ['output-limit', 'PROCSOCK_LIMIT', () => ({ maxBuffer: 2 })],
];

const WHERE: Record<string, () => RunOptions> = {
  local: () => ({ killTimeout: GRACE }),
  'a procsock daemon': () => ({ socket: daemon.path, protocol: 'procsock' }),
};

for (const [where, options] of Object.entries(WHERE)) {
  describe(`the call's own stops, ${where}`, () => {
    test('a program that ignores TERM: KILL after the grace, for every cause', async () => {
      // The fixture sets its TERM trap, then prints its pid. An abort on that first output and
      // a maxBuffer below it stop a program that ignores TERM; the timers may fire before it
      // got that far (a slow start), and then TERM is its end — either way the result tells
      // the end it really had, which a call that hung up too early would not know.
      const controller = () => {
        const abort = new AbortController();
        return { signal: abort.signal, stdout: () => abort.abort() };
      };
      const causes: [EndReason, string, () => RunOptions, boolean][] = [
        ['timeout', 'PROCSOCK_TIMEOUT', () => ({ timeout: 300 }), false],
        ['idle-timeout', 'PROCSOCK_TIMEOUT', () => ({ idleTimeout: 300 }), false],
        ['abort', 'PROCSOCK_ABORTED', controller, true],
        ['output-limit', 'PROCSOCK_LIMIT', () => ({ maxBuffer: 2 }), true],
      ];
      await Promise.all(
        causes.map(async ([reason, code, extra, afterTrap]) => {
          const record = files.path(`${where}-${reason}.log`);
          const [error, result] = await failure(
            run(['sh', IGNORE_TERM, record], { ...options(), ...extra() }),
          );
          assert.equal(error.code, code, reason);
          const survivedTerm = existsSync(record) && /^TERM$/m.test(readFileSync(record, 'utf8'));
          assert.ok(survivedTerm || !afterTrap, `${reason}: the trap was set, TERM came`);
          assert.deepEqual(
            [result.reason, result.exitCode, result.termSignal],
            [reason, null, survivedTerm ? 'KILL' : 'TERM'],
            `${reason}: ${error.message}`,
          );
          assertUsageShape(result.usage!);
        }),
      );
    });

    test('the output collected before the stop is in the result', async () => {
      const [, result] = await failure(
        run(['sh', '-c', 'echo before; exec sleep 30'], { ...options(), idleTimeout: 300 }),
      );
      assert.deepEqual(
        [result.stdout, result.reason, result.termSignal],
        ['before\n', 'idle-timeout', 'TERM'],
      );
    });

    test('a stop while a callback holds the output back still learns the end', async () => {
      const controller = new AbortController();
      let release!: () => void;
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      controller.signal.addEventListener('abort', () => setImmediate(release));
      let chunks = 0;
      const call = run(['yes'], {
        ...options(),
        signal: controller.signal,
        // The first chunk pauses the program until the call was aborted.
        stdout: () => {
          if (chunks++ === 0) {
            setImmediate(() => controller.abort());
            return held;
          }
        },
      });
      const [error, result] = await failure(call);
      assert.equal(error.code, 'PROCSOCK_ABORTED');
      assert.deepEqual([result.reason, result.termSignal], ['abort', 'TERM']);
      assertUsageShape(result.usage!);
    });

    test('nothing is left behind: no child, no descriptor', async () => {
      const fds = openFdCount();
      for (const [reason, , extra] of CAUSES) {
        const [, result] = await failure(
          run(['sh', '-c', 'echo 0123456789; exec sleep 30'], { ...options(), ...extra() }),
        );
        assert.equal(result.reason, reason);
      }
      await waitUntil(
        () => childrenOf().filter((child) => child.command === 'sleep').length === 0,
        'every sleep is gone',
      );
      await waitUntil(() => openFdCount() <= fds, 'every descriptor is closed');
    });
  });
}

test("the daemon's log says the client stopped the run, and why", async () => {
  await failure(run(['sleep', '30'], { socket: daemon.path, protocol: 'procsock', timeout: 100 }));
  assert.ok(
    daemon.log.some((line) => /the client stopped the run \(timeout\): sending TERM/.test(line)),
    daemon.log.join('\n'),
  );
});

describe('a plain sockexec daemon: a stop can only hang up, and the result says so', () => {
  test('every cause: the reason, but no status and no usage', async () => {
    await Promise.all(
      CAUSES.map(async ([reason, code, extra]) => {
        const [error, result] = await failure(
          run(['sh', '-c', 'echo 0123456789; exec sleep 30'], {
            socket: plain.path,
            ...extra(),
          }),
        );
        assert.equal(error.code, code);
        assert.deepEqual(
          [result.reason, result.exitCode, result.termSignal, result.usage],
          [reason, null, null, null],
        );
      }),
    );
  });
});

describe('a daemon that does not carry out the stop: the call still ends, and says it does not know', () => {
  /** A fake procsock daemon: greets, then on `stop` either closes (a daemon from before `stop`) or says nothing. */
  async function fakeDaemon(
    onStop: 'close' | 'ignore',
  ): Promise<{ path: string; close(): Promise<void> }> {
    const dir = tempDir('procsock-fake-daemon-');
    const path = dir.path('fake.sock');
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
      socket.write('8:procsock,1:1,');
      let seen = '';
      socket.on('data', (chunk) => {
        seen += chunk.toString('latin1');
        if (onStop === 'close' && seen.includes('4:stop,')) socket.destroy();
      });
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    return {
      path,
      async close() {
        for (const socket of sockets) socket.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        dir.cleanup();
      },
    };
  }

  for (const behaviour of ['close', 'ignore'] as const) {
    test(`it ${behaviour === 'close' ? 'closes the connection at the stop' : 'never answers'}`, async () => {
      const fake = await fakeDaemon(behaviour);
      try {
        const [error, result] = await failure(
          run(['sleep', '30'], { socket: fake.path, protocol: 'procsock', timeout: 100 }),
        );
        assert.equal(error.code, 'PROCSOCK_TIMEOUT');
        assert.deepEqual(
          [result.reason, result.exitCode, result.termSignal, result.usage],
          ['timeout', null, null, null],
        );
      } finally {
        await fake.close();
      }
    });
  }
});

describe("protocol 'auto': a call with a limit of its own uses the extension where the daemon speaks it", () => {
  test('through a procsock daemon: its stop has the real end without asking for the extension', async () => {
    const [, result] = await failure(run(['sleep', '30'], { socket: daemon.path, timeout: 200 }));
    assert.deepEqual([result.reason, result.termSignal], ['timeout', 'TERM']);
    assertUsageShape(result.usage!);
    assert.equal(daemonSpeaksExtension(daemon.path), true);
    // A call with the default limits only stays plain: the daemon tells it no usage.
    assert.equal((await run(['true'], { socket: daemon.path })).usage, null);
  });

  test('a daemon without it turns the opening down before running anything: the call runs plain, once, stdin and all', async () => {
    const refusing = await startDaemon({ timeout: 60_000, extension: false, collectLog: true });
    try {
      const marker = files.path('ran-once');
      async function* stdin() {
        yield 'streamed ';
        await new Promise((resolve) => setImmediate(resolve));
        yield 'stdin';
      }
      // The daemon logs each connection under its number, before it answers.
      const connections = () =>
        new Set(refusing.log.map((line) => /^connection (\d+):/.exec(line)?.[1]).filter(Boolean))
          .size;
      const argv = ['sh', '-c', `echo ran >> ${marker}; cat`];
      const result = await run(argv, { socket: refusing.path, timeout: 30_000, stdin: stdin() });
      assert.deepEqual([result.stdout, result.exitCode], ['streamed stdin', 0]);
      assert.equal(readFileSync(marker, 'utf8'), 'ran\n', 'the program ran once');
      assert.equal(connections(), 2, 'the opening turned down, then the plain request');
      assert.equal(daemonSpeaksExtension(refusing.path), false, 'the answer is remembered');
      // Known now: the next call goes plain at once (one connection), and its stop hangs up.
      const [, stopped] = await failure(
        run(['sh', '-c', 'echo 0123456789; exec sleep 30'], {
          socket: refusing.path,
          maxBuffer: 4,
        }),
      );
      assert.deepEqual(
        [stopped.reason, stopped.termSignal, stopped.usage],
        ['output-limit', null, null],
      );
      assert.equal(connections(), 3);
    } finally {
      await refusing.close();
    }
  });

  test('more stdin than is kept for a replay before the refusal: a ClosedError saying to retry, nothing run', async () => {
    const refusing = await startDaemon({ timeout: 60_000, extension: false });
    try {
      const marker = files.path('never-ran');
      const argv = ['sh', '-c', `echo ran >> ${marker}; wc -c`];
      // Written in the call's first tick, before any answer: 2 MiB, more than the 1 MiB kept.
      const stdin = Buffer.alloc(2 * 1024 * 1024, 'x');
      await assert.rejects(run(argv, { socket: refusing.path, timeout: 30_000, stdin }), {
        code: 'PROCSOCK_CLOSED',
        message: /more stdin had been sent than is kept for a plain retry; nothing was run/,
      });
      assert.equal(existsSync(marker), false, 'nothing ran');
      // As it says: the retry goes plain, and runs.
      const retried = await run(argv, { socket: refusing.path, timeout: 30_000, stdin });
      assert.equal(retried.stdout.trim(), String(stdin.length));
    } finally {
      await refusing.close();
    }
  });
});

/**
 * One result shape across transports: `reason`, `usage` and `descendantsStopped` on an
 * ExecResult, on the result an error carries (`error.result`), on a Session's exit and
 * `wait()`, and in the daemon's audit record — with the same words locally and through a
 * procsock daemon (the protocol extension, which ez-mode asks for with `protocol:
 * 'procsock'`), and nothing made up where a transport cannot know (a plain sockexec daemon).
 * Real programs, real daemons on real sockets; run on both spawn backends.
 */
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { reaperAvailable } from '../../src/channel/contain.js';
import { spawnBackendInUse } from '../../src/channel/local.js';
import type { EndReason } from '../../src/channel/usage.js';
import { createExec, type RunOptions, run } from '../../src/client/exec.js';
import { connect } from '../../src/client/session.js';
import { UnsupportedOptionError } from '../../src/errors.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import {
  assertUsageShape,
  DAEMON_DESCENDANTS_STOPPED,
  failure,
  withoutUsage,
} from '../helpers/outcome.js';
import { childrenOf, tempDir, waitUntil } from '../helpers/process.js';

const files = tempDir('procsock-outcome-');
const KILL = 300;
/** A shell's own arithmetic: CPU time the program itself spends (no clock involved). */
const BUSY = 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done';

let open: TestDaemon;
let contained: TestDaemon;
let plain: TestDaemon;
let limited: TestDaemon;
let deadline: TestDaemon;
before(async () => {
  [open, plain, limited, deadline] = await Promise.all([
    startDaemon({ timeout: 60_000, killTimeout: KILL }),
    startDaemon({ timeout: 60_000, killTimeout: KILL, extension: false }),
    startDaemon({
      timeout: 60_000,
      killTimeout: KILL,
      policy: {
        allow: ['/usr/bin/cat', '/usr/bin/yes', '/usr/bin/true'],
        maxOutputBytes: 1000,
        maxStdinBytes: 4,
      },
    }),
    startDaemon({ timeout: 400, killTimeout: KILL }),
  ]);
  if (reaperAvailable()) {
    contained = await startDaemon({
      timeout: 60_000,
      killTimeout: KILL,
      contain: true,
      policy: { audit: files.path('audit.jsonl') },
    });
  }
});
after(async () => {
  await Promise.all([open, plain, limited, deadline, contained].map((daemon) => daemon?.close()));
  files.cleanup();
});

const local = (options: RunOptions = {}): RunOptions => ({ killTimeout: KILL, ...options });
const extended =
  (daemon: () => TestDaemon) =>
  (options: RunOptions = {}): RunOptions => ({
    socket: daemon().path,
    protocol: 'procsock',
    ...options,
  });

const WHERE = {
  local: local,
  'a procsock daemon (protocol: procsock)': extended(() => open),
} as const;

for (const [where, options] of Object.entries(WHERE)) {
  // A local run() is not contained by default; a daemon's runs are (where the reaper is built).
  const descendantsStopped = where === 'local' ? null : DAEMON_DESCENDANTS_STOPPED;
  describe(`the end of a run, ${where}`, () => {
    test('exit: the status, reason exit, and the wall time in usage', async () => {
      const result = await run(['sh', '-c', 'echo out; exit 3'], options());
      assert.deepEqual(withoutUsage(result), {
        argv: ['sh', '-c', 'echo out; exit 3'],
        stdout: 'out\n',
        stderr: '',
        unknown: '',
        exitCode: 3,
        termSignal: null,
        reason: 'exit',
        descendantsStopped,
      });
      assert.ok(result.usage, 'a program that ran has a usage');
      if (spawnBackendInUse() === 'child_process' && descendantsStopped === null) {
        // Node's spawn reaps with waitpid: the CPU and memory of an uncontained run are unknown.
        assert.deepEqual(
          [result.usage.userCPUTime, result.usage.systemCPUTime, result.usage.maxRSS],
          [null, null, null],
        );
      }
    });

    test('signal: a signal it did not handle', async () => {
      const result = await run(['sh', '-c', 'kill -USR1 $$'], options());
      assert.deepEqual([result.termSignal, result.reason], ['USR1', 'signal']);
    });

    test('spawn-failure: no such program is a 127 that never ran (no usage)', async () => {
      const result = await run(['procsock-no-such-program'], options());
      assert.deepEqual(
        [result.exitCode, result.reason, result.usage],
        [127, 'spawn-failure', null],
      );
    });

    test("the call's own causes are the reason of its error's result", async () => {
      // Options made per call: an AbortSignal.timeout starts counting when it is made.
      const causes: [EndReason, () => RunOptions, string, string[]][] = [
        ['timeout', () => ({ timeout: 200 }), 'PROCSOCK_TIMEOUT', ['sleep', '30']],
        ['idle-timeout', () => ({ idleTimeout: 200 }), 'PROCSOCK_TIMEOUT', ['sleep', '30']],
        [
          'abort',
          () => ({ signal: AbortSignal.timeout(200) }),
          'PROCSOCK_ABORTED',
          ['sleep', '30'],
        ],
        [
          'output-limit',
          () => ({ maxBuffer: 10 }),
          'PROCSOCK_LIMIT',
          ['sh', '-c', 'echo 0123456789abc; exec sleep 30'],
        ],
      ];
      for (const [reason, extra, code, argv] of causes) {
        const [error, result] = await failure(run(argv, options(extra())));
        assert.equal(error.code, code);
        assert.equal(result.reason, reason, `${reason}: ${error.message}`);
        // A local child is reaped even though the call gave up on it; through a daemon in the
        // extension the call sends `stop` with its cause, and the daemon stops the program and
        // replies with its end: either way the end is known.
        assert.deepEqual([result.exitCode, result.termSignal], [null, 'TERM'], reason);
        assertUsageShape(result.usage!);
        assert.equal(result.descendantsStopped, descendantsStopped, reason);
      }
    });

    test('a Session says the same at its exit and in wait()', async () => {
      const session = await connect(
        where === 'local' ? 'local' : open.path,
        where === 'local' ? {} : { protocol: 'procsock' },
      );
      session.sendArgs(['sh', '-c', 'exit 5']);
      const items = [];
      for await (const item of session) items.push(item);
      const outcome = { exitCode: 5, termSignal: null, reason: 'exit', descendantsStopped };
      assert.equal(items.length, 1);
      assert.deepEqual(withoutUsage(items[0] as Extract<(typeof items)[0], { type: 'exit' }>), {
        type: 'exit',
        ...outcome,
      });
      const waited = await session.wait();
      assert.deepEqual(withoutUsage(waited), outcome);
      assert.notEqual(waited!.usage, null);
      await session.close();
    });
  });
}

describe("the daemon's own causes reach an ez-mode call (protocol: procsock)", () => {
  test('deadline: the daemon -t stopped it', async () => {
    const result = await run(['sleep', '30'], extended(() => deadline)());
    assert.deepEqual([result.termSignal, result.reason], ['TERM', 'deadline']);
  });

  test('output-limit, stdin-limit and policy-refused', async () => {
    const options = extended(() => limited);
    const output = await run(['yes'], options());
    assert.equal(output.reason, 'output-limit');
    assert.equal(output.stdout.length, 1000);
    const stdin = await run(['cat'], options({ stdin: 'too much' }));
    assert.equal(stdin.reason, 'stdin-limit');
    const refused = await run(['sh', '-c', 'true'], options());
    assert.deepEqual(
      [refused.exitCode, refused.reason, refused.usage],
      [126, 'policy-refused', null],
    );
  });

  test('shutdown: the daemon is stopping', async () => {
    const stopping = await startDaemon({ timeout: 60_000, killTimeout: KILL });
    let closed: Promise<void> | undefined;
    const result = await run(['sh', '-c', 'echo ready; exec sleep 30'], {
      socket: stopping.path,
      protocol: 'procsock',
      // The program runs: now stop the daemon.
      stdout: () => {
        closed ??= stopping.close();
      },
    });
    await closed;
    assert.deepEqual([result.termSignal, result.reason], ['TERM', 'shutdown']);
  });

  test('an exec may hold protocol as a default, and a call may override it', async () => {
    const exec = createExec(open.path, { protocol: 'procsock' });
    assert.equal(exec.protocol, 'procsock');
    assert.notEqual((await exec('true')).usage, null, 'extended: the daemon reports usage');
    assert.equal((await exec('true', { protocol: 'auto' })).usage, null, 'plain: it cannot');
    await assert.rejects(exec('true', { protocol: 'sockexec' as 'auto' }), {
      code: 'PROCSOCK_ARGUMENT',
    });
  });
});

describe('a plain sockexec daemon tells no more than the status', () => {
  test("protocol 'auto' (default): exit or signal, no usage, no count", async () => {
    const exit = await run(['sh', '-c', 'exit 3'], { socket: open.path });
    assert.deepEqual(
      [exit.exitCode, exit.reason, exit.usage, exit.descendantsStopped],
      [3, 'exit', null, null],
    );
    const deadlined = await run(['sleep', '30'], { socket: deadline.path });
    // The plain protocol cannot tell the deadline's TERM from any other.
    assert.deepEqual([deadlined.termSignal, deadlined.reason], ['TERM', 'signal']);
  });

  test("protocol 'procsock' against a daemon without the extension: typed error, nothing run", async () => {
    const marker = files.path('must-not-exist');
    await assert.rejects(
      run(['touch', marker], { socket: plain.path, protocol: 'procsock' }),
      (error: Error) => {
        assert.ok(error instanceof UnsupportedOptionError, String(error));
        assert.equal(error.option, 'protocol');
        assert.match(error.message, /does not speak the procsock protocol extension/);
        return true;
      },
    );
    assert.equal(existsSync(marker), false, 'nothing ran');
    // Plain calls still work there.
    assert.equal((await run(['echo', 'plain'], { socket: plain.path })).stdout, 'plain\n');
  });
});

describe('contained runs: CPU, memory and descendants, locally and through the daemon', {
  skip: reaperAvailable() ? false : 'the reaper is not built',
}, () => {
  for (const [where, options] of [
    ['local', () => local({ contain: true })],
    ['a contained procsock daemon', () => extended(() => contained)()],
  ] as const) {
    test(`${where}: the reaper's usage and the descendants it stopped`, async () => {
      const busy = await run(['sh', '-c', BUSY], options());
      assert.equal(busy.reason, 'exit');
      assert.ok(busy.usage, 'usage');
      assertUsageShape(busy.usage);
      assert.ok(busy.usage.userCPUTime! + busy.usage.systemCPUTime! > 0, 'it used CPU');
      assert.ok(busy.usage.maxRSS! > 0, 'it had memory');
      assert.equal(busy.descendantsStopped, 0);
      const left = await run(['sh', '-c', 'sleep 300 & exit 0'], options());
      assert.deepEqual([left.exitCode, left.descendantsStopped], [0, 1]);
    });
  }

  test('the audit record has reason, usage and descendantsStopped — a hang-up too', async () => {
    const audit = files.path('audit.jsonl');
    const exitedArgv = ['sh', '-c', 'sleep 300 & exit 4'];
    const hungUpArgv = ['sh', '-c', 'echo ready; exec sleep 300'];
    await run(exitedArgv, { socket: contained.path });
    const session = await connect(contained.path);
    session.sendArgs(hungUpArgv);
    assert.equal((await session.receive()).type, 'stdout');
    await session.close();
    // Records are written as connections close, in that order: find each by its argv.
    const find = (argv: string[]) =>
      readFileSync(audit, 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line))
        .find((record) => JSON.stringify(record.argv) === JSON.stringify(argv));
    await waitUntil(() => find(exitedArgv) && find(hungUpArgv), 'both runs are audited');
    const [exited, hungUp] = [find(exitedArgv), find(hungUpArgv)];
    assert.deepEqual([exited.exitCode, exited.reason, exited.descendantsStopped], [4, 'exit', 1]);
    assertUsageShape(exited.usage);
    assert.ok(exited.usage.userCPUTime !== null, 'CPU from the reaper');
    // Nobody was left to tell, but the program was reaped: the record knows how it ended.
    assert.deepEqual([hungUp.termSignal, hungUp.reason], ['TERM', 'hangup']);
    assertUsageShape(hungUp.usage);
    assert.notEqual(hungUp.pid, null);
    assert.equal(childrenOf().filter((child) => child.command === 'sleep').length, 0);
  });
});

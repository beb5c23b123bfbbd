/**
 * `killSignal` (Node's option of the same name): the signal a stop sends first — the call's
 * `timeout`, `idleTimeout`, `maxBuffer`, an abort — with KILL after `killTimeout` as always.
 * Locally on both backends (the runner sets PROCSOCK_SPAWN), contained or not; a daemon stops
 * its programs with TERM and the protocol has no field for another signal, so through a
 * daemon anything but TERM is refused with a typed error, nothing run (TERM asks for nothing
 * and stays a plain request).
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import { reaperAvailable } from '../../src/channel/contain.js';
import { type RunOptions, run } from '../../src/client/exec.js';
import { connect } from '../../src/client/session.js';
import { ArgumentError, UnsupportedOptionError } from '../../src/errors.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { failure } from '../helpers/outcome.js';
import { tempDir } from '../helpers/process.js';

/** Exits 2 at INT, 15 at TERM (its output after a stop is not collected); prints "ready" once its traps are set. */
const TRAPS = [
  'sh',
  '-c',
  "trap 'exit 2' INT; trap 'exit 15' TERM; echo ready; while :; do sleep 0.05; done",
];

let daemon: TestDaemon;
const files = tempDir('procsock-kill-signal-');
before(async () => {
  daemon = await startDaemon({ timeout: 60_000 });
});
after(async () => {
  await daemon.close();
  files.cleanup();
});

const LOCAL: Record<string, RunOptions> = { uncontained: {} };
if (reaperAvailable()) LOCAL.contained = { contain: true };

for (const [how, base] of Object.entries(LOCAL)) {
  describe(`killSignal, locally (${how})`, () => {
    test('a timeout sends it instead of TERM: the program sees INT and ends as it chooses', async () => {
      const [error, result] = await failure(
        run(TRAPS, { ...base, killSignal: 'SIGINT', timeout: 300 }),
      );
      assert.equal(error.code, 'PROCSOCK_TIMEOUT');
      assert.deepEqual([result.stdout, result.exitCode, result.reason], ['ready\n', 2, 'timeout']);
      // The control: without it, TERM.
      const [, term] = await failure(run(TRAPS, { ...base, timeout: 300 }));
      assert.equal(term.exitCode, 15);
    });

    test('an abort and maxBuffer too; a number or a bare name as well', async () => {
      const aborted = new AbortController();
      const call = run(TRAPS, {
        ...base,
        killSignal: 2,
        signal: aborted.signal,
        stdout: (chunk) => {
          if (chunk.includes('ready')) aborted.abort();
        },
      });
      const [, result] = await failure(call);
      assert.deepEqual([result.exitCode, result.reason], [2, 'abort']);
      const [, limited] = await failure(
        run(['sh', '-c', "trap 'exit 7' USR1; while :; do echo yyyyyyyyyyyyyyyy; done"], {
          ...base,
          killSignal: 'USR1',
          maxBuffer: 1000,
        }),
      );
      assert.deepEqual([limited.exitCode, limited.reason], [7, 'output-limit']);
    });

    test("KILL: at once, the program's traps never run", async () => {
      const [, result] = await failure(run(TRAPS, { ...base, killSignal: 'KILL', timeout: 300 }));
      assert.deepEqual([result.termSignal, result.stdout], ['KILL', 'ready\n']);
    });

    test('a program that ignores it still ends: KILL after killTimeout', async () => {
      const stubborn = ['sh', '-c', "trap '' INT; echo ready; while :; do sleep 0.05; done"];
      const [, result] = await failure(
        run(stubborn, { ...base, killSignal: 'INT', killTimeout: 200, timeout: 200 }),
      );
      assert.equal(result.termSignal, 'KILL');
    });
  });
}

test('a signal this system does not have is an ArgumentError, nothing run', async () => {
  for (const bad of ['SIGNOPE', 'nope', 999, '', null]) {
    await assert.rejects(run(['true'], { killSignal: bad as never }), ArgumentError);
  }
});

describe('killSignal through a daemon', () => {
  test('anything but TERM is refused (run, connect), naming the option; nothing runs', async () => {
    const marker = files.path('ran');
    const refused = (error: unknown) => {
      assert.ok(error instanceof UnsupportedOptionError, String(error));
      assert.equal(error.option, 'killSignal');
      assert.match(error.message, /stops its programs with TERM/);
      return true;
    };
    await assert.rejects(
      run(['sh', '-c', `echo > ${marker}`], { socket: daemon.path, killSignal: 'INT' }),
      refused,
    );
    await assert.rejects(connect({ socket: daemon.path }, { killSignal: 'KILL' }), refused);
    const { existsSync } = await import('node:fs');
    assert.equal(existsSync(marker), false);
  });

  test('TERM asks for nothing: the call runs', async () => {
    for (const term of ['TERM', 'SIGTERM', 15] as const) {
      const result = await run(['echo', 'hi'], { socket: daemon.path, killSignal: term });
      assert.equal(result.stdout, 'hi\n');
    }
  });
});

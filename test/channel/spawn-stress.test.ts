/**
 * The spawn backends under the conditions that broke the native one (issue 12), each on
 * each backend: the environment changed right after every spawn, worker threads spawning
 * together and terminated with children alive, and a spawn with no descriptors left.
 * Worker and descriptor scenarios run in a node process of their own (test/fixtures/
 * spawn-*.mjs, from dist/: `npm test` builds first), so a crash is that process's exit
 * status, and a full descriptor table is nobody else's problem.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LocalChannel } from '../../src/channel/local.js';
import { nativeAvailable, nativeLoadError } from '../../src/channel/spawn/native.js';
import { childrenOf, tempDir } from '../helpers/process.js';

const requireNative = process.env.PROCSOCK_REQUIRE_NATIVE === '1';
const nativeSkip =
  !requireNative && !nativeAvailable() && `native addon not built: ${nativeLoadError()?.message}`;

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));

interface Scenario {
  status: number | string;
  stdout: string;
  stderr: string;
}

/** Runs `node FIXTURE ARGS…` to its end. */
function scenario(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Scenario> {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ status: code ?? signal ?? -1, stdout, stderr }));
  });
}

/** The scenario's JSON line, after checking it ended well and printed nothing else. */
function report<T>(result: Scenario): T {
  // A crash (SIGSEGV), a warning ("closed but not opened in unmanaged mode"), anything.
  assert.equal(result.status, 0, `the scenario ended with ${result.status}: ${result.stderr}`);
  assert.equal(result.stderr, '', 'the scenario wrote to stderr');
  return JSON.parse(result.stdout) as T;
}

const STORM_SPAWNS = 1500;
const STORM_IN_FLIGHT = 32;

// Heavy: each pass of the suite (PROCSOCK_SPAWN set by scripts/run-tests.mjs) runs its own
// backend only; alone, the file runs both.
const chosen = process.env.PROCSOCK_SPAWN;
const backends = (['native', 'child_process'] as const).filter((name) =>
  chosen !== 'native' && chosen !== 'child_process' ? true : name === chosen,
);

for (const backend of backends) {
  describe(`spawn under stress: ${backend}`, { skip: backend === 'native' && nativeSkip }, () => {
    test(`environment storm: ${STORM_SPAWNS} spawns, process.env rewritten right after each`, async () => {
      // Each spawn is followed at once by writes that make the C library reallocate the
      // environ array: the child, not yet exec'd, must have its own copy of the environment.
      const before = childrenOf().length;
      let wrong = 0;
      const failures: string[] = [];
      const batch: Promise<void>[] = [];
      try {
        for (let i = 0; i < STORM_SPAWNS; i++) {
          const expected = `storm-${i}`;
          process.env.PROCSOCK_STORM = expected;
          const channel = new LocalChannel(['printenv', 'PROCSOCK_STORM'], {
            spawnBackend: backend,
          });
          const out: Buffer[] = [];
          const err: Buffer[] = [];
          channel.on('output', ({ type, data }) =>
            (type === 'stdout' ? out : err).push(Buffer.from(data)),
          );
          channel.end();
          for (let k = 0; k < 4; k++) {
            process.env[`PROCSOCK_STORM_${i}_${k}`] = 'x'.repeat(40);
            delete process.env[`PROCSOCK_STORM_${i - 1}_${k}`];
          }
          batch.push(
            channel.done().then((status) => {
              const stdout = Buffer.concat(out).toString();
              if (status?.exitCode !== 0 || stdout !== `${expected}\n`) {
                wrong++;
                if (failures.length < 5) {
                  failures.push(`${JSON.stringify(status)} ${stdout} ${Buffer.concat(err)}`);
                }
              }
            }),
          );
          if (batch.length === STORM_IN_FLIGHT) await Promise.all(batch.splice(0));
        }
        await Promise.all(batch);
      } finally {
        delete process.env.PROCSOCK_STORM;
        for (let k = 0; k < 4; k++) delete process.env[`PROCSOCK_STORM_${STORM_SPAWNS - 1}_${k}`];
      }
      assert.equal(wrong, 0, `wrong environments: ${failures.join(' | ')}`);
      assert.equal(childrenOf().length, before, 'every child reaped');
    });

    test('workers terminated with children alive: no crash, no warning, all stopped and reaped', async () => {
      // 3 workers terminated as soon as they are online (mid-spawn), 6 after starting a
      // sleep and a TERM-ignoring script (killTimeout 300 ms) and while still spawning.
      const scratch = tempDir('procsock-workers-');
      try {
        const termLog = scratch.path('term.log');
        const result = report<{
          wrong: number;
          pids: number[];
          left: unknown[];
          stillAlive: number[];
        }>(await scenario([fixture('spawn-workers.mjs'), 'terminate', backend, termLog]));
        assert.equal(result.wrong, 0, 'programs printed the wrong thing');
        assert.equal(result.pids.length, 12);
        assert.ok(
          result.pids.every((pid) => Number.isInteger(pid)),
          'every live child was started',
        );
        assert.deepEqual(result.left, [], 'no child (nor zombie) of the scenario is left');
        assert.deepEqual(result.stillAlive, []);
        // Each TERM-ignoring script recorded its TERM: stopped as an aborted run, TERM then KILL.
        assert.equal(readFileSync(termLog, 'utf8'), 'TERM\n'.repeat(6));
      } finally {
        scratch.cleanup();
      }
    });

    test('spawn storm from 8 workers and the main thread at once', async () => {
      const result = report<{ wrong: number; runs: number; left: unknown[] }>(
        await scenario([fixture('spawn-workers.mjs'), 'storm', backend]),
      );
      assert.equal(result.runs, 540);
      assert.equal(result.wrong, 0, 'programs printed the wrong thing or failed');
      assert.deepEqual(result.left, []);
    });

    test('out of descriptors at spawn: a SpawnError (PROCSOCK_SPAWN, EMFILE), nothing leaked', async () => {
      interface Attempt {
        status?: { exitCode: number | null };
        error?: { name: string; code: string; reason: string; syscall: string; errno: number };
        output: string[];
      }
      const result = report<{
        starved: Attempt;
        starvedRun: { error?: Attempt['error'] };
        after: Attempt;
        leaked: number;
      }>(await scenario([fixture('spawn-emfile.mjs'), '3'], { PROCSOCK_SPAWN: backend }));
      // Not "the program ran and exited 126": no exit status, no output, a typed error.
      assert.equal(result.starved.status, undefined);
      assert.deepEqual(result.starved.output, []);
      assert.equal(result.starved.error?.name, 'SpawnError');
      assert.equal(result.starved.error?.code, 'PROCSOCK_SPAWN');
      assert.equal(result.starved.error?.reason, 'EMFILE');
      assert.equal(result.starved.error?.errno, -24);
      assert.equal(result.starved.error?.syscall, backend === 'native' ? 'pipe2' : 'spawn');
      assert.deepEqual(result.starvedRun.error, result.starved.error, 'run() rejects the same');
      assert.deepEqual(result.after.status, { exitCode: 0, termSignal: null });
      assert.deepEqual(result.after.output, ['stdout:ran\n']);
      assert.ok(result.leaked <= 0, `${result.leaked} descriptors leaked`);
    });
  });
}

/**
 * A program that cannot be started is a result, not an error, and says the same locally (on
 * both spawn backends: the runner sets PROCSOCK_SPAWN, contained or not) and through a procsock
 * daemon: one stderr line naming what was wrong, 127 for a program not found, 126 for anything
 * else, reason `spawn-failure`, no usage. A working directory that cannot be entered is named as
 * such — the kernel says ENOENT for a missing cwd as for a missing program, and a local run
 * used to call it "command not found" (127) while the daemon said "no such directory" (126).
 */
import { strict as assert } from 'node:assert';
import { chmodSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { reaperAvailable } from '../../src/channel/contain.js';
import { type RunOptions, run } from '../../src/client/exec.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { childrenOf, openFds, tempDir, waitUntil } from '../helpers/process.js';

const files = tempDir('procsock-spawn-failures-');
const script = files.path('no-exec.sh');
writeFileSync(script, '#!/bin/sh\necho ran\n');
chmodSync(script, 0o644);
const missing = files.path('missing');

let daemon: TestDaemon;
before(async () => {
  daemon = await startDaemon({ timeout: 60_000 });
});
after(async () => {
  await daemon.close();
  files.cleanup();
});

/** [what, argv, options, exit code, stderr line]. */
const CASES: [string, string[], RunOptions, number, string][] = [
  [
    'no such program',
    ['procsock-no-such-program'],
    {},
    127,
    'procsock: procsock-no-such-program: command not found\n',
  ],
  ['not executable', [script], {}, 126, `procsock: ${script}: permission denied\n`],
  ['a directory', [files.path('')], {}, 126, `procsock: ${files.path('')}: permission denied\n`],
  ['no such cwd', ['pwd'], { cwd: missing }, 126, `procsock: cwd ${missing}: no such directory\n`],
  [
    'a cwd that is a file',
    ['pwd'],
    { cwd: script },
    126,
    `procsock: cwd ${script}: not a directory\n`,
  ],
  [
    'no such cwd and no such program',
    ['procsock-no-such-program'],
    { cwd: missing },
    126,
    `procsock: cwd ${missing}: no such directory\n`,
  ],
];

const WHERE: Record<string, () => RunOptions> = {
  locally: () => ({}),
  'locally, contained': () => ({ contain: true }),
  'through a procsock daemon': () => ({ socket: daemon.path, protocol: 'procsock' }),
};

for (const [where, options] of Object.entries(WHERE)) {
  describe(`a program that cannot start, ${where}`, {
    skip: where.includes('contained') && !reaperAvailable() && 'procsock_reaper is not built',
  }, () => {
    for (const [what, argv, extra, exitCode, line] of CASES) {
      test(what, async () => {
        const result = await run(argv, { ...options(), ...extra });
        assert.deepEqual(
          [
            result.exitCode,
            result.termSignal,
            result.stderr,
            result.stdout,
            result.reason,
            result.usage,
          ],
          [exitCode, null, line, '', 'spawn-failure', null],
        );
      });
    }
  });
}

test('failed starts leave no child and no descriptor behind', async () => {
  await run(['true']); // the first spawn of the process sets up what every later one uses
  const before = openFds();
  for (let i = 0; i < 20; i++) {
    await run(['pwd'], { cwd: missing });
    await run(['procsock-no-such-program']);
  }
  assert.deepEqual(
    childrenOf().filter((child) => child.command !== 'esbuild'),
    [],
  );
  // The native backend closes a run's pipes and pidfd in the loop's close phase, just after
  // the call settles (reported to its owner); so waited for, not read at once.
  const left = () => openFds().filter((fd) => !before.includes(fd));
  await waitUntil(() => left().length === 0, 'no descriptor left', 5000).catch(() => {
    assert.deepEqual(left(), []);
  });
});

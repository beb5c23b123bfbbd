import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { startDaemon } from '../helpers/daemon.js';
import { RawClient, request } from '../helpers/raw-client.js';

test('uname -a with the terminator in the same write: stdout, then exitcode 0', async () => {
  const daemon = await startDaemon();
  try {
    const reply = await RawClient.exchange(daemon.path, request(['uname', '-a']));
    const expected = execFileSync('uname', ['-a'], { encoding: 'utf8' });
    assert.deepEqual(reply.pairs, [
      ['stdout', expected],
      ['exitcode', '0'],
    ]);
    assert.equal(reply.trailing.length, 0);
  } finally {
    await daemon.close();
  }
});

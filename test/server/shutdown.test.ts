/**
 * SPEC §2 point 8 through the API: `server.close()` stops accepting, closes waiting
 * clients, TERMs every program (KILL after the grace), reaps all, removes the socket file.
 * (The CLI's SIGTERM/SIGINT → exit 0 is in test/cli/serve.test.ts.)
 */
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, test } from 'node:test';
import { startDaemon } from '../helpers/daemon.js';
import { childrenOf, isAlive, openFdCount, tempDir, waitUntil } from '../helpers/process.js';
import { RawClient, request } from '../helpers/raw-client.js';

const files = tempDir('procsock-shutdown-');
after(() => files.cleanup());
const IGNORE_TERM = new URL('../fixtures/ignore-term.sh', import.meta.url).pathname;

async function pidOf(client: RawClient): Promise<number> {
  const [first] = await client.waitForPairs(1);
  return Number(/^(\d+)\n/.exec(first![1])![1]);
}

test('close(): programs TERMed then KILLed, waiting clients closed, socket removed; idempotent', async () => {
  // Warm up: what Node opens once for good (signal pipes, thread pool) is not a leak.
  const warmUp = await startDaemon();
  await RawClient.exchange(warmUp.path, request(['true']));
  await warmUp.close();
  const fdsBefore = openFdCount();
  const daemon = await startDaemon({ maxConnections: 2, killTimeout: 300, collectLog: true });
  const record = files.path('term.log');
  const stubborn = await RawClient.connect(daemon.path);
  stubborn.send(request(['sh', IGNORE_TERM, record], [], false));
  const stubbornPid = await pidOf(stubborn);
  const polite = await RawClient.connect(daemon.path);
  polite.send(request(['sh', '-c', 'echo $$; exec sleep 30'], [], false));
  const politePid = await pidOf(polite);
  const waiting = await RawClient.connect(daemon.path);
  waiting.send(request(['echo', 'never']));
  await waitUntil(() => daemon.server.queued === 1, 'the third client waits');

  const closing = daemon.server.close();
  assert.equal(daemon.server.close(), closing, 'the same promise');
  assert.equal(daemon.server.state, 'closing');
  await closing;

  assert.equal(daemon.server.state, 'closed');
  assert.equal(existsSync(daemon.path), false, 'socket file removed');
  assert.equal(isAlive(stubbornPid), false);
  assert.equal(isAlive(politePid), false);
  assert.deepEqual(
    childrenOf().filter((child) => [stubbornPid, politePid].includes(child.pid)),
    [],
  );
  assert.match(readFileSync(record, 'utf8'), /TERM/);
  assert.deepEqual((await polite.reply()).exit, ['termsig', 'TERM']);
  assert.deepEqual((await stubborn.reply()).exit, ['termsig', 'KILL']);
  assert.deepEqual((await waiting.reply()).pairs, [], 'the waiting client is closed unserved');
  assert.equal(daemon.server.connections, 0);
  // No new client is accepted.
  await assert.rejects(
    new Promise((resolve, reject) =>
      connect(daemon.path).on('connect', resolve).on('error', reject),
    ),
    { code: 'ENOENT' },
  );
  await daemon.close();
  assert.equal(openFdCount(), fdsBefore, 'every descriptor of the daemon is closed');
});

test('close() with nothing running resolves at once and removes the socket', async () => {
  const daemon = await startDaemon();
  await daemon.server.close();
  assert.equal(existsSync(daemon.path), false);
  await daemon.close();
});

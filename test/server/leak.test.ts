/**
 * Leak proof: thousands of mixed connections (normal, stdin, malformed, early disconnect
 * before and after the program started, deadline, exec failure) against `procsock serve`
 * in a separate process; afterwards its descriptors are back to their baseline and it has
 * no child left, alive or zombie.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { daemonChildren, startDaemonProcess } from '../helpers/daemon.js';
import { openFdCount, openFds, waitUntil } from '../helpers/process.js';
import { RawClient, request } from '../helpers/raw-client.js';

const CONNECTIONS = 2500;
const CONCURRENCY = 16;

type Kind =
  | 'normal'
  | 'stdin'
  | 'exec-failure'
  | 'malformed'
  | 'disconnect-in-request'
  | 'disconnect-while-running'
  | 'deadline';

/** One round of the mix; deadlines are rare since each holds a client for the whole -t. */
const KINDS: Kind[] = [
  ...Array<Kind>(8).fill('normal'),
  'stdin',
  'stdin',
  'exec-failure',
  'exec-failure',
  'malformed',
  'malformed',
  'disconnect-in-request',
  'disconnect-in-request',
  'disconnect-while-running',
  'disconnect-while-running',
  'disconnect-while-running',
  'deadline',
];

async function connection(path: string, kind: Kind): Promise<void> {
  const client = await RawClient.connect(path);
  switch (kind) {
    case 'normal': {
      client.send(request(['true']));
      assert.deepEqual((await client.reply()).pairs, [['exitcode', '0']]);
      return;
    }
    case 'stdin': {
      client.send(request(['cat'], ['abc', 'def']));
      const reply = await client.reply();
      assert.equal(reply.stdout, 'abcdef');
      assert.deepEqual(reply.exit, ['exitcode', '0']);
      return;
    }
    case 'exec-failure': {
      client.send(request(['/nonexistent/procsock-leak']));
      assert.deepEqual((await client.reply()).exit, ['exitcode', '127']);
      return;
    }
    case 'malformed': {
      client.send('1:1,4:true;');
      assert.deepEqual((await client.reply()).pairs, []);
      return;
    }
    case 'disconnect-in-request': {
      client.send('1:2,5:sl');
      await new Promise((resolve) => client.socket.write('', resolve));
      client.destroy();
      await client.closed;
      return;
    }
    case 'disconnect-while-running': {
      client.send(request(['sh', '-c', 'echo started; exec sleep 30'], [], false));
      await client.waitForStdout('started');
      client.destroy();
      await client.closed;
      return;
    }
    case 'deadline': {
      client.send(request(['sleep', '30']));
      assert.deepEqual((await client.reply()).pairs, [['termsig', 'TERM']]);
      return;
    }
  }
}

async function runMany(path: string, count: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      await connection(path, KINDS[i % KINDS.length]!);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

test(`${CONNECTIONS} mixed connections leave no descriptor and no child behind`, async () => {
  // -t 1: long enough that a loaded machine does not turn a normal request into a deadline.
  const daemon = await startDaemonProcess(['-t', '1', '-k', '1']);
  try {
    // Warm up, so what Node opens once (thread pool, signal pipes…) is in the baseline.
    await runMany(daemon.path, 100);
    await waitUntil(() => daemonChildren(daemon.pid).length === 0, 'the warm-up is reaped');
    const baseline = openFdCount(daemon.pid);
    const baselineFds = openFds(daemon.pid);

    await runMany(daemon.path, CONNECTIONS);

    await waitUntil(
      () => daemonChildren(daemon.pid).length === 0,
      `no child is left (${JSON.stringify(daemonChildren(daemon.pid))})`,
    );
    await waitUntil(
      () => openFdCount(daemon.pid) <= baseline,
      `the descriptors are back to ${baseline}:\n${openFds(daemon.pid).join('\n')}\nwas:\n${baselineFds.join('\n')}`,
    );
    // At most, not exactly: the baseline may still count a warm-up socket closed a moment later.
    assert.ok(openFdCount(daemon.pid) <= baseline);
    // Still serving after all that.
    const reply = await RawClient.exchange(daemon.path, request(['echo', 'fine']));
    assert.equal(reply.stdout, 'fine\n');
  } finally {
    assert.equal(await daemon.stop(), 0);
    daemon.cleanup();
  }
  assert.equal(daemon.stderr(), '');
});

/**
 * One behavioural suite, run against both process channels — a local child and a real
 * daemon session — so the two cannot drift apart: bulk data, flow control, stopping a
 * program without leaks, exec failure.
 */
import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { ProcessChannel } from '../../src/channel/channel.js';
import { createExec } from '../../src/client/exec.js';
import { drained } from '../../src/client/execute.js';
import { AbortError, TimeoutError } from '../../src/errors.js';
import { openFdCount, openFds, tempDir, waitUntil } from '../helpers/process.js';
import {
  childrenNamed,
  openTarget,
  stuckProducer,
  TARGET_KINDS,
  type TestTarget,
} from './targets.js';

const MiB = 1024 * 1024;

for (const kind of TARGET_KINDS) {
  describe(`process channel: ${kind}`, () => {
    let target: TestTarget;
    before(async () => {
      target = await openTarget(kind);
    });
    after(() => target.close());

    test('100 MB through cat arrive intact, written and read at once', async () => {
      const channel = await target.open(['cat']);
      const block = randomBytes(MiB);
      const sent = createHash('sha256');
      const received = createHash('sha256');
      let receivedBytes = 0;
      channel.on('output', ({ type, data }) => {
        assert.equal(type, 'stdout');
        received.update(data);
        receivedBytes += data.length;
      });
      for (let i = 0; i < 100; i++) {
        // Each block differs from the others, so a lost or repeated block changes the hash.
        const chunk = Buffer.from(block);
        chunk.writeUInt32BE(i, 0);
        sent.update(chunk);
        if (!channel.write(chunk)) await drained(channel);
      }
      channel.end();
      assert.deepEqual(await channel.done(), { exitCode: 0, termSignal: null });
      assert.equal(receivedBytes, 100 * MiB);
      assert.equal(received.digest('hex'), sent.digest('hex'));
    });

    test('a paused consumer blocks the program instead of buffering its output', async () => {
      const total = 256 * MiB;
      const rssBefore = process.memoryUsage().rss;
      const channel = await target.open(['head', '-c', String(total), '/dev/zero']);
      channel.pause();
      let receivedBytes = 0;
      channel.on('output', ({ data }) => {
        receivedBytes += data.length;
      });
      const stuckAt = await stuckProducer('head');
      assert.ok(stuckAt < 16 * MiB, `head wrote ${stuckAt} bytes while nobody read them`);
      const growth = process.memoryUsage().rss - rssBefore;
      assert.ok(growth < 64 * MiB, `memory grew by ${growth} bytes while paused`);
      channel.resume();
      assert.deepEqual(await channel.done(), { exitCode: 0, termSignal: null });
      assert.equal(receivedBytes, total);
    });

    test('a program that cannot be found: exit 127 and the same message', async () => {
      const exec = createExec(target.target);
      const result = await exec('procsock-no-such-program');
      assert.equal(result.exitCode, 127);
      assert.equal(result.termSignal, null);
      assert.equal(result.stderr, 'procsock: procsock-no-such-program: command not found\n');
      assert.equal(result.stdout, '');
    });

    test('a program found but not executable: exit 126', async () => {
      const dir = tempDir();
      try {
        const path = dir.path('not-executable');
        writeFileSync(path, 'echo never\n', { mode: 0o644 });
        const result = await createExec(target.target)(path);
        assert.equal(result.exitCode, 126);
        assert.equal(result.stderr, `procsock: ${path}: permission denied\n`);
      } finally {
        dir.cleanup();
      }
    });

    /** Runs `stop` against a `sleep` and checks that nothing of it is left: no child, no fd. */
    async function assertStopsCleanly(
      stop: (exec: ReturnType<typeof createExec>) => Promise<unknown>,
      expected: new (...args: never[]) => Error,
    ): Promise<void> {
      const fdsBefore = openFdCount();
      const fdListBefore = openFds();
      assert.equal(childrenNamed('sleep').length, 0);
      const exec = createExec(target.target);
      await assert.rejects(stop(exec), expected);
      if (kind === 'local') {
        // Locally the call settles only once the child is reaped.
        assert.deepEqual(childrenNamed('sleep'), []);
      }
      await waitUntil(() => childrenNamed('sleep').length === 0, 'the program is reaped', 5000);
      await waitUntil(() => openFdCount() <= fdsBefore, 'descriptors are back', 5000).catch(
        (error: Error) => {
          throw new Error(
            `${error.message}: before: ${fdListBefore.join(', ')}; now: ${openFds().join(', ')}`,
          );
        },
      );
    }

    test('a fatal timeout stops the program and leaves no child or descriptor', async () => {
      await assertStopsCleanly(
        (exec) => exec({ argv: ['sleep', '30'], timeout: 100 }),
        TimeoutError,
      );
    });

    test('aborting stops the program and leaves no child or descriptor', async () => {
      await assertStopsCleanly(async (exec) => {
        const controller = new AbortController();
        const call = exec({ argv: ['sleep', '30'], signal: controller.signal });
        await waitUntil(() => childrenNamed('sleep').length === 1, 'sleep has started', 5000);
        controller.abort();
        return call;
      }, AbortError);
    });

    test('a program killed by a signal reports the signal name, not an exit code', async () => {
      const exec = createExec(target.target);
      const result = await exec('sh', '-c', 'echo before; kill -TERM $$');
      assert.equal(result.stdout, 'before\n');
      assert.equal(result.exitCode, null);
      assert.equal(result.termSignal, 'TERM');
    });

    test('output then exit, in order, for a program that closes stdout first', async () => {
      const channel: ProcessChannel = await target.open([
        'sh',
        '-c',
        'exec 1>&-; echo late >&2; exit 0',
      ]);
      const events: string[] = [];
      channel.on('output', ({ type, data }) => events.push(`${type}:${data}`));
      channel.on('exit', (status) => events.push(`exit:${status.exitCode}`));
      channel.end();
      await channel.done();
      assert.deepEqual(events, ['stderr:late\n', 'exit:0']);
    });
  });
}

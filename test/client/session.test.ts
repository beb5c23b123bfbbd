/**
 * The duplex session on a local child and through a real daemon: a conversation with
 * cat, receive outcomes, misuse that is refused without harm, async iteration, and the
 * Node streams with back-pressure.
 */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { getEventListeners } from 'node:events';
import { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, afterEach, before, describe, test } from 'node:test';
import { connect, type ReceivedExit, type Session } from '../../src/client/session.js';
import { AbortError, ArgumentError, StateError } from '../../src/errors.js';
import {
  childrenNamed,
  openTarget,
  stuckProducer,
  TARGET_KINDS,
  type TestTarget,
} from '../channel/targets.js';
import { withoutUsage } from '../helpers/outcome.js';
import { openFdCount, waitUntil } from '../helpers/process.js';

const MiB = 1024 * 1024;
/** `true`'s end, on every target here: uncontained, so descendants are not counted. */
const OUTCOME_0 = { exitCode: 0, termSignal: null, reason: 'exit', descendantsStopped: null };
const EXIT_0 = { type: 'exit', ...OUTCOME_0 };

/** The next item, which must be the exit. */
async function receiveExit(session: Session): Promise<ReceivedExit> {
  const item = await session.receive();
  assert.equal(item.type, 'exit', `expected the exit, got ${JSON.stringify(item)}`);
  return item as ReceivedExit;
}

/** Receives stdout until `length` bytes came (chunk boundaries carry no meaning). */
async function receiveStdout(session: Session, length: number): Promise<string> {
  const pieces: Buffer[] = [];
  let received = 0;
  while (received < length) {
    const item = await session.receive({ timeout: 5000 });
    assert.equal(item.type, 'stdout', `expected stdout, got ${JSON.stringify(item)}`);
    if (item.type !== 'stdout') break;
    pieces.push(item.data);
    received += item.data.length;
  }
  return Buffer.concat(pieces).toString();
}

for (const kind of TARGET_KINDS) {
  describe(`duplex session: ${kind}`, () => {
    let target: TestTarget;
    before(async () => {
      target = await openTarget(kind);
    });
    after(() => target.close());
    // Whatever a failed test left running is stopped before the next one starts.
    const opened: Session[] = [];
    afterEach(() => Promise.all(opened.splice(0).map((session) => session.close())));
    const open = async () => {
      const session = await connect(target.target);
      opened.push(session);
      return session;
    };

    test('a conversation with cat: send, receive, send, close stdin, exit, closed', async () => {
      const session = await open();
      assert.equal(session.state, 'connected');
      session.sendArgs(['cat']);
      assert.equal(session.state, 'running');
      await session.send('hello there');
      assert.equal(await receiveStdout(session, 11), 'hello there');
      await session.sendData(Buffer.from('hey this cat process is still running'));
      assert.equal(await receiveStdout(session, 37), 'hey this cat process is still running');
      session.sendClose();
      assert.deepEqual(withoutUsage(await receiveExit(session)), EXIT_0);
      assert.deepEqual(await session.receive(), { type: 'closed' });
      assert.deepEqual(await session.receive(), { type: 'closed' });
      assert.equal(session.state, 'finished');
      await session.close();
      assert.equal(session.state, 'closed');
    });

    test('misuse is refused with a typed error and does not disturb the program', async () => {
      const session = await open();
      await assert.rejects(session.send('too early'), StateError);
      assert.throws(() => session.sendClose(), StateError);
      await assert.rejects(session.receive(), StateError);
      assert.throws(() => session.sendArgs([]), ArgumentError);
      assert.throws(() => session.sendArgs(['']), ArgumentError);
      assert.throws(() => session.sendArgs('cat' as unknown as string[]), ArgumentError);
      session.sendArgs(['cat']);
      assert.throws(() => session.sendArgs(['cat']), StateError);
      await assert.rejects(session.send(42 as unknown as string), ArgumentError);
      await session.send('still fine');
      const waiting = session.receive();
      await assert.rejects(session.receive(), StateError, 'one receive at a time');
      const first = await waiting;
      assert.equal(first.type, 'stdout');
      const rest = await receiveStdout(
        session,
        10 - (first.type === 'stdout' ? first.data.length : 0),
      );
      assert.equal(`${first.type === 'stdout' ? first.data : ''}${rest}`, 'still fine');
      session.sendClose();
      session.sendClose();
      await assert.rejects(session.send('after close'), StateError);
      assert.deepEqual(withoutUsage(await receiveExit(session)), EXIT_0);
      await session.close();
      await session.close();
      assert.throws(() => session.sendArgs(['cat']), StateError);
      await assert.rejects(session.send('x'), StateError);
      await assert.rejects(session.receive(), StateError);
    });

    test('a program that cannot be found: the message, then exit 127', async () => {
      const session = await open();
      session.sendArgs(['procsock-no-such-program']);
      const items = [];
      for await (const item of session) items.push(item);
      assert.deepEqual(items, [
        {
          type: 'stderr',
          data: Buffer.from('procsock: procsock-no-such-program: command not found\n'),
        },
        {
          type: 'exit',
          exitCode: 127,
          termSignal: null,
          // The plain sockexec protocol cannot tell an exec failure from an exit.
          reason: kind === 'local' ? 'spawn-failure' : 'exit',
          usage: null,
          descendantsStopped: null,
        },
      ]);
    });

    test('receive times out without harming the program', async () => {
      const session = await open();
      session.sendArgs(['cat']);
      assert.deepEqual(await session.receive({ timeout: 50 }), { type: 'timeout' });
      await session.send('later');
      assert.equal(await receiveStdout(session, 5), 'later');
      session.sendClose();
      assert.equal((await session.receive()).type, 'exit');
      await session.close();
    });

    test('for await yields the output, then the exit, and ends', async () => {
      const session = await open();
      session.sendArgs(['sh', '-c', 'echo out; echo err >&2; exit 4']);
      const texts = { stdout: '', stderr: '', unknown: '' };
      let exit: unknown = null;
      for await (const item of session) {
        if (item.type === 'exit') exit = item;
        else texts[item.type] += item.data.toString();
      }
      assert.deepEqual(texts, { stdout: 'out\n', stderr: 'err\n', unknown: '' });
      const outcome = { exitCode: 4, termSignal: null, reason: 'exit', descendantsStopped: null };
      assert.deepEqual(withoutUsage(exit as ReceivedExit), { type: 'exit', ...outcome });
      assert.deepEqual(withoutUsage(await session.wait()), outcome);
      await session.close();
    });

    test('close() stops a running program and leaves nothing behind', async () => {
      const fdsBefore = openFdCount();
      const session = await open();
      session.sendArgs(['sleep', '30']);
      await waitUntil(() => childrenNamed('sleep').length === 1, 'sleep has started', 5000);
      const waiting = session.receive({ timeout: 0 });
      await session.close();
      assert.deepEqual(await waiting, { type: 'closed' });
      await waitUntil(() => childrenNamed('sleep').length === 0, 'sleep is reaped', 5000);
      await waitUntil(() => openFdCount() <= fdsBefore, 'descriptors are released', 5000);
    });

    test('output nobody receives yet blocks the program instead of piling up', async () => {
      const total = 128 * MiB;
      const session = await open();
      session.sendArgs(['head', '-c', String(total), '/dev/zero']);
      const stuckAt = await stuckProducer('head');
      assert.ok(stuckAt < 16 * MiB, `head wrote ${stuckAt} bytes nobody received`);
      let bytes = 0;
      for await (const item of session) if (item.type === 'stdout') bytes += item.data.length;
      assert.equal(bytes, total);
      await session.close();
    });

    test('data for a program that has already ended is dropped, not an error', async () => {
      const session = await open();
      session.sendArgs(['true']);
      assert.deepEqual(withoutUsage(await receiveExit(session)), EXIT_0);
      assert.deepEqual(await session.receive(), { type: 'closed' });
      await session.send('nobody reads this');
      session.sendClose();
      await session.close();
    });

    test('aborting the session signal stops the program and closes the session', async () => {
      const controller = new AbortController();
      const session = await connect(target.target, { signal: controller.signal });
      opened.push(session);
      session.sendArgs(['sleep', '30']);
      await waitUntil(() => childrenNamed('sleep').length === 1, 'sleep has started', 5000);
      const waiting = session.receive({ timeout: 0 });
      controller.abort();
      await assert.rejects(waiting, AbortError);
      await session.close();
      assert.equal(session.state, 'closed');
      await waitUntil(() => childrenNamed('sleep').length === 0, 'sleep is reaped', 5000);
    });

    test('a finished session lets go of its signal, closed or not (one signal for many sessions)', async () => {
      const controller = new AbortController();
      for (let i = 0; i < 12; i++) {
        const session = await connect(target.target, { signal: controller.signal });
        session.sendArgs(['true']);
        session.sendClose();
        await session.wait();
        if (i % 2 === 0) await session.close();
      }
      assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
    });

    test('the underlying socket is there for a daemon session, a pid for a local one', async () => {
      const session = await open();
      if (kind === 'socket') assert.ok(session.socket instanceof Socket);
      else assert.equal(session.socket, null);
      session.sendArgs(['true']);
      if (kind === 'local') assert.equal(typeof session.pid, 'number');
      else assert.equal(session.pid, undefined);
      await session.wait();
      await session.close();
    });

    test('stdin and stdout as Node streams carry 32 MB intact', async () => {
      const session = await open();
      session.sendArgs(['cat']);
      const sent = createHash('sha256');
      const received = createHash('sha256');
      async function* data() {
        for (let i = 0; i < 32; i++) {
          const chunk = Buffer.alloc(MiB, i);
          sent.update(chunk);
          yield chunk;
        }
      }
      let bytes = 0;
      await Promise.all([
        pipeline(Readable.from(data()), session.stdin),
        (async () => {
          for await (const chunk of session.stdout) {
            received.update(chunk);
            bytes += chunk.length;
          }
        })(),
      ]);
      assert.equal(bytes, 32 * MiB);
      assert.equal(received.digest('hex'), sent.digest('hex'));
      assert.deepEqual(withoutUsage(await session.wait()), OUTCOME_0);
      await assert.rejects(session.receive(), StateError, 'streams and receive() do not mix');
      await session.close();
    });

    test('an unread stdout stream blocks the program; reading it lets it finish', async () => {
      const total = 128 * MiB;
      const session = await open();
      session.sendArgs(['head', '-c', String(total), '/dev/zero']);
      const stdout = session.stdout;
      const stuckAt = await stuckProducer('head');
      assert.ok(stuckAt < 16 * MiB, `head wrote ${stuckAt} bytes nobody read`);
      let bytes = 0;
      for await (const chunk of stdout) bytes += chunk.length;
      assert.equal(bytes, total);
      assert.deepEqual(withoutUsage(await session.wait()), OUTCOME_0);
      await session.close();
    });

    test('a stdin stream to a program that does not read fills up and says so', async () => {
      const session = await open();
      session.sendArgs(['sleep', '30']);
      const chunk = Buffer.alloc(64 * 1024);
      let written = 0;
      while (session.stdin.write(chunk)) {
        written += chunk.length;
        if (written > 64 * MiB) break;
        // Let the transport move what it can, so only real back-pressure stops the loop.
        await new Promise((resolve) => setImmediate(resolve));
      }
      assert.ok(written < 16 * MiB, `${written} bytes were accepted for a program that reads none`);
      await session.close();
    });
  });
}

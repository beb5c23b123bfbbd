/**
 * A raw sockexec-protocol client sees exactly the bytes it saw before the protocol
 * extension existed: each request below is replayed against the daemon and the reply,
 * byte for byte (and how the connection ended), compared with the recording in
 * test/fixtures/plain-replies.json, made from main before the extension was added.
 * Requests are chosen so their replies are deterministic (one write per stream).
 *
 *   PROCSOCK_RECORD=1 node scripts/run-tests.mjs test/server/plain-bytes.test.ts   # re-record
 */
import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { ns, request } from '../helpers/raw-client.js';

const FIXTURE = new URL('../fixtures/plain-replies.json', import.meta.url);
const RECORD = process.env.PROCSOCK_RECORD === '1';

/** name → the request's bytes, written in the given pieces. */
const CASES: Record<string, (string | Buffer)[]> = {
  'echo hello': [request(['echo', 'hello'])],
  'printf without a newline': [request(['printf', '%s', 'no newline'])],
  'exit status 3 with stdout': [request(['sh', '-c', 'echo out; exit 3'])],
  'stderr only, exit 1': [request(['sh', '-c', 'echo err >&2; exit 1'])],
  'cat with stdin in a later write': [request(['cat'], [], false), ns('abcdef'), ns('')],
  'killed by TERM': [request(['sh', '-c', 'kill -TERM $$'])],
  'command not found': [request(['procsock-no-such-program-16'])],
  'not executable': [request(['/etc/passwd'])],
  'empty program name': [request([''])],
  'request split one byte at a time': [...request(['echo', 'split'])].map((byte) =>
    Buffer.from([byte]),
  ),
  'argument count 0': [Buffer.from('1:0,')],
  'non-decimal argument count': [Buffer.from('3:abc,')],
  'malformed first netstring': [Buffer.from('x:,')],
  'binary stdin through cat': [request(['cat'], [Buffer.from([0, 1, 2, 255, 44, 58])])],
};

interface Recorded {
  /** The reply's bytes, base64. */
  reply: string;
  ended: 'end' | 'error';
}

async function replay(path: string, pieces: (string | Buffer)[]): Promise<Recorded> {
  const socket = connect(path);
  const chunks: Buffer[] = [];
  let ended: 'end' | 'error' = 'end';
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {
    ended = 'error';
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  for (const piece of pieces) {
    if (socket.destroyed) break;
    await new Promise<void>((resolve) => socket.write(piece, () => resolve()));
  }
  await closed;
  return { reply: Buffer.concat(chunks).toString('base64'), ended };
}

let daemon: TestDaemon;
before(async () => {
  daemon = await startDaemon({ timeout: 30_000, killTimeout: 1000 });
});
after(() => daemon.close());

test('every plain request gets the recorded reply, byte for byte', async () => {
  const replies: Record<string, Recorded> = {};
  for (const [name, pieces] of Object.entries(CASES)) {
    replies[name] = await replay(daemon.path, pieces);
  }
  if (RECORD) {
    writeFileSync(FIXTURE, `${JSON.stringify(replies, null, 2)}\n`);
    return;
  }
  const recorded = JSON.parse(readFileSync(FIXTURE, 'utf8')) as Record<string, Recorded>;
  assert.deepEqual(Object.keys(replies).sort(), Object.keys(recorded).sort());
  for (const [name, reply] of Object.entries(replies)) {
    const expected = recorded[name]!;
    assert.equal(
      Buffer.from(reply.reply, 'base64').toString('latin1'),
      Buffer.from(expected.reply, 'base64').toString('latin1'),
      name,
    );
    // A violation is answered by closing; whether the client then sees a reset is timing.
    if (expected.reply !== '') assert.equal(reply.ended, expected.ended, `${name}: ended`);
  }
});

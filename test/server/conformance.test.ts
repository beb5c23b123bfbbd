/**
 * SPEC §5: each conformance scenario, against a real daemon on a real socket, through a
 * raw netstring client (test/helpers/raw-client.ts), asserting the exact reply pairs.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { isAlive, tempDir, waitUntil } from '../helpers/process.js';
import { ns, RawClient, request } from '../helpers/raw-client.js';

const IGNORE_TERM = new URL('../fixtures/ignore-term.sh', import.meta.url).pathname;
// Long enough for sh to start and set its trap even on a loaded machine.
const TIMEOUT = 600;
const KILL_TIMEOUT = 300;

// Scenarios about the deadline use a short one; the others a long one, so that a loaded
// machine cannot turn them into deadline scenarios.
let daemon: TestDaemon;
let deadlineDaemon: TestDaemon;
const files = tempDir('procsock-conformance-');
before(async () => {
  daemon = await startDaemon({ timeout: 60_000, killTimeout: KILL_TIMEOUT });
  deadlineDaemon = await startDaemon({ timeout: TIMEOUT, killTimeout: KILL_TIMEOUT });
});
after(async () => {
  await daemon.close();
  await deadlineDaemon.close();
  files.cleanup();
});

test('uname -a with the terminator in the same write: stdout, then exitcode 0', async () => {
  const reply = await RawClient.exchange(daemon.path, Buffer.from('1:2,5:uname,2:-a,0:,'));
  const expected = execFileSync('uname', ['-a'], { encoding: 'utf8' });
  assert.deepEqual(reply.pairs, [
    ['stdout', expected],
    ['exitcode', '0'],
  ]);
  assert.equal(reply.trailing.length, 0);
  assert.equal(reply.ended, 'end');
});

test('cat as an echo server: first line echoed, later second line and terminator', async () => {
  const client = await RawClient.connect(daemon.path);
  client.send(request(['cat'], ['first line'], false));
  await client.waitForStdout('first line');
  client.send(Buffer.concat([ns('second line'), ns('')]));
  const reply = await client.reply();
  assert.equal(reply.stdout, 'first linesecond line');
  assert.deepEqual(reply.exit, ['exitcode', '0']);
  assert.ok(reply.pairs.slice(0, -1).every(([type]) => type === 'stdout'));
});

test('bash fed a script on stdin in several writes: hi on stdout, the trace on stderr', async () => {
  const client = await RawClient.connect(daemon.path);
  // The request itself arrives in pieces, one netstring split across writes.
  client.send('1:1,4:ba');
  client.send('sh,');
  client.send(ns('set -x\n'));
  client.send(ns('echo hi\n'));
  await client.waitForStdout('hi\n');
  client.send(ns('exit 0\n'));
  client.send(ns(''));
  const reply = await client.reply();
  assert.equal(reply.stdout, 'hi\n');
  assert.equal(reply.stderr, '+ echo hi\n+ exit 0\n');
  assert.deepEqual(reply.exit, ['exitcode', '0']);
});

test('a program that sleeps past -t: termsig TERM, no exitcode', async () => {
  const reply = await RawClient.exchange(deadlineDaemon.path, request(['sleep', '30']));
  assert.deepEqual(reply.pairs, [['termsig', 'TERM']]);
});

test('a program that ignores TERM, past -t: TERM first, then termsig KILL', async () => {
  const record = files.path('deadline-term.log');
  const reply = await RawClient.exchange(deadlineDaemon.path, request(['sh', IGNORE_TERM, record]));
  // Contained, its `sleep` got TERM too, and sh may say so ("Terminated") on stderr.
  reply.pairs = reply.pairs.filter(
    ([type, data]) => !(type === 'stderr' && data === 'Terminated\n'),
  );
  assert.equal(reply.pairs.length, 2);
  assert.equal(reply.pairs[0]![0], 'stdout');
  assert.match(reply.pairs[0]![1], /^\d+\n$/);
  assert.deepEqual(reply.pairs[1], ['termsig', 'KILL']);
  // It survived a TERM before the KILL came.
  assert.match(readFileSync(record, 'utf8'), /^(TERM\n)+$/);
});

test('a client that disconnects early from a TERM-ignoring program: TERM, later KILL; the daemon keeps serving', async () => {
  const record = files.path('disconnect-term.log');
  const client = await RawClient.connect(daemon.path);
  client.send(request(['sh', IGNORE_TERM, record], [], false));
  const [[, pidLine]] = (await client.waitForPairs(1)) as [[string, string]];
  const pid = Number(pidLine.trim());
  client.destroy();
  await waitUntil(() => existsSync(record), 'the program got TERM');
  // It got TERM and is still alive: the KILL waits for the grace.
  assert.equal(isAlive(pid), true);
  await waitUntil(() => !isAlive(pid), 'the program is KILLed after the grace');
  const reply = await RawClient.exchange(daemon.path, request(['echo', 'still serving']));
  assert.deepEqual(reply.pairs, [
    ['stdout', 'still serving\n'],
    ['exitcode', '0'],
  ]);
});

test('a program that closes stdin and writes one line to each of stdout and stderr', async () => {
  const reply = await RawClient.exchange(
    daemon.path,
    request(['sh', '-c', 'exec 0<&-; echo out; echo err >&2'], ['ignored input']),
  );
  assert.equal(reply.pairs.length, 3);
  assert.deepEqual(reply.pairs.slice(0, 2).sort(), [
    ['stderr', 'err\n'],
    ['stdout', 'out\n'],
  ]);
  assert.deepEqual(reply.exit, ['exitcode', '0']);
});

test('a program that closes stderr early then writes to stdout without a newline: lasts until it exits', async () => {
  const flag = files.path('stderr-closed.flag');
  const client = await RawClient.connect(daemon.path);
  client.send(
    request([
      'sh',
      '-c',
      `exec 2>&-; echo closed; while [ ! -e '${flag}' ]; do sleep 0.01; done; printf done`,
    ]),
  );
  await client.waitForStdout('closed\n');
  writeFileSync(flag, '');
  const reply = await client.reply();
  assert.equal(reply.stdout, 'closed\ndone');
  assert.deepEqual(reply.exit, ['exitcode', '0']);
  assert.ok(reply.pairs.every(([type]) => type !== 'stderr'));
});

test('a program that closes stdout first, then writes to stderr and exits 0', async () => {
  const reply = await RawClient.exchange(
    daemon.path,
    request(['sh', '-c', 'exec 1>&-; echo late >&2; exit 0']),
  );
  assert.deepEqual(reply.pairs, [
    ['stderr', 'late\n'],
    ['exitcode', '0'],
  ]);
});

test('a program that closes its stdin while the client is still sending: the rest is dropped, it carries on', async () => {
  const flag = files.path('stdin-closed.flag');
  const client = await RawClient.connect(daemon.path);
  client.send(
    request(
      [
        'sh',
        '-c',
        `head -c 5; exec 0<&-; echo; while [ ! -e '${flag}' ]; do sleep 0.01; done; echo carried on`,
      ],
      [],
      false,
    ),
  );
  // Far more than any pipe or socket buffer holds: the daemon must keep reading to take it.
  const piece = ns(Buffer.alloc(64 * 1024, '1'));
  for (let i = 0; i < 128; i++) client.send(piece);
  await new Promise<void>((resolve) => client.socket.write(ns(''), () => resolve()));
  // Every byte was taken by the daemon: only now may the program finish.
  writeFileSync(flag, '');
  const reply = await client.reply();
  assert.equal(reply.stdout, '11111\ncarried on\n');
  assert.deepEqual(reply.exit, ['exitcode', '0']);
});

test('tail -f style endless output: streams until the deadline', async () => {
  const reply = await RawClient.exchange(
    deadlineDaemon.path,
    request(['sh', '-c', 'while :; do echo tick; sleep 0.01; done']),
  );
  const last = reply.pairs.at(-1);
  assert.deepEqual(last, ['termsig', 'TERM']);
  assert.ok(reply.pairs.slice(0, -1).every(([type]) => type === 'stdout'));
  // Chunk boundaries carry no meaning: count the lines, not the pairs.
  assert.match(reply.stdout, /^(tick\n){2,}$/);
});

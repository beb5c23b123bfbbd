/**
 * The native connection path (native/conn.c, src/server/native-connections.ts): an
 * uncontained daemon without a debug log serves plain connections in native code. Each
 * behaviour the JS Connection has is checked here on that path — the same replies, byte for
 * byte, as a daemon serving the same requests in JavaScript (PROCSOCK_DAEMON_NATIVE=0), the
 * handoff of what the native path leaves to JS, the deadline, the kill timeout, the process
 * group, hang-ups, back-pressure both ways, the queue, the audit record, shutdown, and no
 * descriptor or child left behind.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { reaperAvailable } from '../../src/channel/contain.js';
import { addonAvailable } from '../../src/native/addon.js';
import type { ServeOptions } from '../../src/server/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { childrenOf, isAlive, openFdCount, tempDir, waitUntil } from '../helpers/process.js';
import { args, extendedRequest, ns, RawClient, request } from '../helpers/raw-client.js';
import { fixture, report, scenario } from '../helpers/scenario.js';

const native = addonAvailable() && process.env.PROCSOCK_SPAWN !== 'child_process';
const skip = native ? false : 'the native path needs the native spawn backend';
const skipContained = skip || (reaperAvailable() ? false : 'containment needs procsock_reaper');
const files = tempDir('procsock-native-conn-');

/** A daemon that serves natively (`js`: the same options, served in JavaScript). */
async function daemon(options: Partial<ServeOptions> = {}, js = false): Promise<TestDaemon> {
  const saved = process.env.PROCSOCK_DAEMON_NATIVE;
  if (js) process.env.PROCSOCK_DAEMON_NATIVE = '0';
  try {
    const started = await startDaemon({ contain: false, ...options });
    assert.equal(started.server.nativeConnections, !js, 'served natively or not, as asked');
    return started;
  } finally {
    if (saved === undefined) delete process.env.PROCSOCK_DAEMON_NATIVE;
    else process.env.PROCSOCK_DAEMON_NATIVE = saved;
  }
}

/** Sends `pieces` one write at a time (each taken by the kernel first); every byte of the reply. */
async function replay(path: string, pieces: (string | Buffer)[]): Promise<Buffer> {
  const socket = connect({ path });
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {
    // (a reset after a violation: what was received is the reply)
  });
  const closed = new Promise((resolve) => socket.once('close', resolve));
  await new Promise((resolve) => socket.once('connect', resolve));
  for (const piece of pieces) {
    if (socket.destroyed) break;
    await new Promise<void>((resolve) => socket.write(piece, () => resolve()));
  }
  await closed;
  return Buffer.concat(chunks);
}

/** Our children but the test runner's own helpers (tsx's esbuild service). */
function programs() {
  return childrenOf().filter((child) => child.command !== 'esbuild');
}

let nat: TestDaemon;
let js: TestDaemon;

before(async () => {
  if (!native) return;
  nat = await daemon();
  js = await daemon({}, true);
});

after(async () => {
  await nat?.close();
  await js?.close();
  files.cleanup();
});

test('which daemons serve natively: no log, no output or stdin limit, contained only as sockexec', {
  skip,
}, async () => {
  for (const options of [
    { collectLog: true },
    { contain: true, policy: { cwd: '/' } },
    { policy: { maxOutputBytes: 10 } },
    { policy: { maxStdinBytes: 10 } },
  ] as Partial<ServeOptions>[]) {
    const started = await startDaemon({ contain: false, ...options });
    assert.equal(started.server.nativeConnections, false, JSON.stringify(options));
    await started.close();
  }
});

const CASES: Record<string, (string | Buffer)[]> = {
  'echo hello': [request(['echo', 'hello'])],
  'exit status 3 with stdout and stderr': [request(['sh', '-c', 'echo out; echo err >&2; exit 3'])],
  'killed by TERM': [request(['sh', '-c', 'kill -TERM $$'])],
  'killed by KILL': [request(['sh', '-c', 'kill -KILL $$'])],
  'command not found': [request(['procsock-no-such-program-20'])],
  'not executable': [request(['/etc/passwd'])],
  'a directory': [request(['/tmp'])],
  'empty program name': [request([''])],
  'argument count 0': [Buffer.from('1:0,')],
  'leading zero in the argument count': [Buffer.from('2:01,4:true,0:,')],
  'non-decimal argument count': [Buffer.from('3:abc,')],
  'malformed first netstring': [Buffer.from('x:,')],
  'missing comma after argv[0]': [Buffer.from('1:1,4:true;0:,')],
  'a NUL byte in an argument': [request(['echo', 'a\0b'])],
  'unicode arguments': [request(['printf', '%s|', 'héllo', '日本', '🙂'])],
  'request split one byte at a time': [...request(['echo', 'split'])].map((byte) =>
    Buffer.from([byte]),
  ),
  'stdin in later writes': [request(['cat'], [], false), ns('abc'), ns('def'), ns('')],
  // (conn.c gives a program whose stdin ended with its request a shared pipe at end of file)
  'stdin ended with the request: a pipe at end of file': [
    request(['sh', '-c', 'test -p /dev/stdin && cat && wc -c']),
  ],
  'stdin ended with the request, then garbage': [
    Buffer.concat([request(['sh', '-c', 'wc -c']), Buffer.from('zz,1:x,')]),
  ],
  'binary stdin': [request(['cat'], [Buffer.from([0, 1, 2, 255, 44, 58])])],
  'stdin after the terminator is ignored': [request(['cat'], ['x']), 'garbage, not a netstring'],
  'a malformed stdin netstring': [request(['cat'], [], false), 'x:,'],
  'a stdin netstring with leading zeros': [request(['cat'], [], false), '01:a,'],
  'an argument over the length limit (handed off)': [request(['echo', 'x'.repeat(140_000)])],
};

test('the same reply bytes as the JS path, request by request', { skip }, async () => {
  for (const [name, pieces] of Object.entries(CASES)) {
    const [a, b] = [await replay(nat.path, pieces), await replay(js.path, pieces)];
    assert.equal(a.toString('latin1'), b.toString('latin1'), name);
  }
});

/** An argument that is not UTF-8: printf's format `%s` and the bytes ff c3. */
const NOT_UTF8 = Buffer.concat([
  ns('2'),
  ns('printf'),
  ns(Buffer.from([0x25, 0x73, 0xff, 0xc3])),
  ns(''),
]);

test('an argument that is not UTF-8 is run as its bytes, as the C sockexec runs it', {
  skip,
}, async () => {
  const reply = await replay(nat.path, [NOT_UTF8]);
  assert.equal(reply.toString('latin1'), '6:stdout,2:\xff\xc3,8:exitcode,1:0,');
});

test('the JS path runs an argument that is not UTF-8 as its bytes too', {
  skip,
  todo: 'the JS path decodes argv as UTF-8 (U+FFFD for each bad byte), and child_process cannot exec bytes: see BOARD.md 05:15',
}, async () => {
  const reply = await replay(js.path, [NOT_UTF8]);
  assert.equal(reply.toString('latin1'), '6:stdout,2:\xff\xc3,8:exitcode,1:0,');
});

test('the extension is handed off to the JS path, which serves it', { skip }, async () => {
  const reply = await RawClient.exchange(
    nat.path,
    extendedRequest([
      ['arg', 'echo'],
      ['arg', 'extended'],
    ]),
  );
  assert.equal(reply.stdout, 'extended\n');
  assert.deepEqual(reply.pairs[0], ['procsock', '1']);
  assert.deepEqual(reply.exit, ['exitcode', '0']);
});

test('large output and stdin arrive whole, through back-pressure both ways', { skip }, async () => {
  // 4 MiB out to a reader that pauses; 3 MiB in to a program that reads only after a while.
  const out = await RawClient.connect(nat.path);
  out.socket.pause();
  out.send(request(['head', '-c', String(4 * 1024 * 1024), '/dev/zero']));
  await new Promise((resolve) => setTimeout(resolve, 200)); // let the daemon's queue fill
  out.socket.resume();
  const reply = await out.reply();
  assert.equal(reply.stdout.length, 4 * 1024 * 1024);
  assert.deepEqual(reply.exit, ['exitcode', '0']);

  const piece = Buffer.alloc(256 * 1024, 'y');
  const pieces = Array.from({ length: 12 }, () => piece);
  const client = await RawClient.connect(nat.path);
  client.send(request(['sh', '-c', 'sleep 0.3; wc -c'], pieces));
  const counted = await client.reply();
  assert.equal(counted.stdout.trim(), String(12 * piece.length));
  assert.deepEqual(counted.exit, ['exitcode', '0']);
});

test('the deadline TERMs the program, KILL after the kill timeout', { skip }, async () => {
  const d = await daemon({ timeout: 300, killTimeout: 300 });
  try {
    const polite = await RawClient.exchange(d.path, request(['sleep', '30']));
    assert.deepEqual(polite.exit, ['termsig', 'TERM']);
    const stubborn = await RawClient.exchange(
      d.path,
      request(['sh', '-c', "trap '' TERM; echo ready; exec sleep 30"]),
    );
    assert.equal(stubborn.stdout, 'ready\n');
    assert.deepEqual(stubborn.exit, ['termsig', 'KILL']);
  } finally {
    await d.close();
  }
});

test('--kill-group: the deadline stops the whole process group', { skip }, async () => {
  const d = await daemon({ timeout: 400, killTimeout: 300, processGroup: true });
  try {
    const client = await RawClient.connect(d.path);
    client.send(request(['sh', '-c', 'sleep 30 & echo $!; wait']));
    const [[, pid]] = (await client.waitForPairs(1)) as [[string, string]];
    const background = Number(pid.trim());
    const reply = await client.reply();
    assert.deepEqual(reply.exit, ['termsig', 'TERM']);
    await waitUntil(() => !isAlive(background), 'the background job ended with its group');
  } finally {
    await d.close();
  }
});

test('an exit whose descendant holds the pipes ends after the exit grace', { skip }, async () => {
  const reply = await RawClient.exchange(nat.path, request(['sh', '-c', 'echo hi; sleep 3 &']));
  assert.equal(reply.stdout, 'hi\n');
  assert.deepEqual(reply.exit, ['exitcode', '0']);
});

test('a hang-up TERMs the program, which is reaped; the audit log says hangup', {
  skip,
}, async () => {
  const audit = files.path('hangup.jsonl');
  const d = await daemon({ policy: { audit } });
  try {
    const client = await RawClient.connect(d.path);
    client.send(request(['sh', '-c', 'echo $$; exec sleep 30'], [], false));
    await client.waitForStdout('\n');
    const pid = Number((await client.waitForPairs(1))[0]![1].trim());
    client.socket.end();
    await waitUntil(() => !isAlive(pid), 'the program was stopped');
    await waitUntil(() => d.server.connections === 0, 'the connection is closed');
  } finally {
    await d.close();
  }
  const [record] = readFileSync(audit, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
  assert.equal(record.reason, 'hangup');
  assert.equal(record.termSignal, 'TERM');
  assert.equal(record.error, 'the client closed its end');
  assert.deepEqual(record.argv, ['sh', '-c', 'echo $$; exec sleep 30']);
});

test('the audit record has the JS path’s shape and values', { skip }, async () => {
  const records: Record<string, unknown>[] = [];
  for (const asJs of [false, true]) {
    const audit = files.path(`audit-${asJs}.jsonl`);
    const d = await daemon({ policy: { audit } }, asJs);
    try {
      await RawClient.exchange(d.path, request(['sh', '-c', 'cat; echo done; exit 4'], ['abc']));
      await RawClient.exchange(d.path, request(['procsock-no-such-program-20']));
    } finally {
      await d.close();
    }
    records.push(
      ...readFileSync(audit, 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line)),
    );
  }
  const comparable = (record: Record<string, unknown>) => {
    const { time, durationMs, pid, usage, ...rest } = record;
    assert.equal(typeof time, 'string');
    assert.equal(typeof durationMs, 'number');
    assert.equal(typeof pid, 'number');
    const shape =
      usage === null
        ? null
        : Object.fromEntries(Object.entries(usage as object).map(([k, v]) => [k, typeof v]));
    return { ...rest, usage: shape };
  };
  assert.equal(records.length, 4);
  assert.deepEqual(comparable(records[0]!), comparable(records[2]!));
  assert.deepEqual(comparable(records[1]!), comparable(records[3]!));
  assert.equal(records[0]!.exitCode, 4);
  assert.equal(records[0]!.bytesIn, 3);
  assert.equal(records[0]!.bytesOut, 8);
  assert.equal(records[1]!.reason, 'spawn-failure');
});

test('maxConnections: a further client waits for a free slot', { skip }, async () => {
  const d = await daemon({ maxConnections: 1 });
  try {
    const first = await RawClient.connect(d.path);
    first.send(request(['cat'], [], false));
    await waitUntil(() => d.server.connections === 1, 'the first client is served');
    const second = await RawClient.connect(d.path);
    second.send(request(['echo', 'second']));
    await waitUntil(() => d.server.queued === 1, 'the second client waits');
    first.send(ns(''));
    assert.deepEqual((await first.reply()).exit, ['exitcode', '0']);
    const reply = await second.reply();
    assert.equal(reply.stdout, 'second\n');
  } finally {
    await d.close();
  }
});

test('a handed-off client keeps its slot; the queue is held and bounded natively', {
  skip,
}, async () => {
  const d = await daemon({ maxConnections: 1, backlog: 1 });
  try {
    // The extension is served by a JS Connection: in the native listener's slot.
    const first = await RawClient.connect(d.path);
    first.send(extendedRequest(args(['sh', '-c', 'read line; echo got $line']), []));
    await waitUntil(() => d.server.connections === 1, 'the first client is served (in JS)');
    const second = await RawClient.connect(d.path);
    second.send(request(['echo', 'second']));
    await waitUntil(() => d.server.queued === 1, 'the second client waits');
    const third = await RawClient.connect(d.path);
    await third.closed; // beyond the queue: closed at once, unread
    assert.deepEqual((await third.reply()).pairs, []);
    assert.equal(d.server.queued, 1, 'the second still waits');
    first.send(Buffer.concat([ns('stdin'), ns('one\n'), ns('stdin'), ns('')]));
    assert.equal((await first.reply()).stdout, 'got one\n');
    assert.equal((await second.reply()).stdout, 'second\n', 'served once the slot was free');
    await waitUntil(() => d.server.connections === 0, 'no connection left');
  } finally {
    await d.close();
  }
});

test('shutdown closes the waiting clients and ends once the served one has', {
  skip,
}, async () => {
  const fdsBefore = openFdCount();
  const d = await daemon({ maxConnections: 1, killTimeout: 300 });
  const running = await RawClient.connect(d.path);
  running.send(request(['sleep', '30'], [], false));
  await waitUntil(() => programs().length === 1, 'the program runs');
  const waiting = await RawClient.connect(d.path);
  waiting.send(request(['echo', 'never']));
  await waitUntil(() => d.server.queued === 1, 'the second client waits');
  await d.close();
  assert.deepEqual((await running.reply()).exit, ['termsig', 'TERM']);
  assert.deepEqual((await waiting.reply()).pairs, [], 'the waiting client is closed, unserved');
  assert.deepEqual(programs(), [], 'no child is left');
  await waitUntil(() => openFdCount() <= fdsBefore, 'every descriptor is closed');
});

test('the request timeout closes a client that never finishes its request', { skip }, async () => {
  const d = await daemon({ requestTimeout: 200, timeout: 0 });
  try {
    const client = await RawClient.connect(d.path);
    client.send('2:2,4:echo,');
    const reply = await client.reply();
    assert.deepEqual(reply.pairs, []);
  } finally {
    await d.close();
  }
});

test('shutdown: a running program is TERMed and its client told; nothing is left', {
  skip,
}, async () => {
  const fdsBefore = openFdCount();
  const d = await daemon({ killTimeout: 300 });
  const running = await RawClient.connect(d.path);
  running.send(request(['sh', '-c', 'echo $$; exec sleep 30'], [], false));
  const pid = Number((await running.waitForPairs(1))[0]![1].trim());
  const reading = await RawClient.connect(d.path);
  reading.send('1:1,');
  await waitUntil(() => d.server.connections === 2, 'both clients are served');
  await d.close();
  assert.deepEqual((await running.reply()).exit, ['termsig', 'TERM'], 'the running client is told');
  assert.deepEqual((await reading.reply()).pairs, [], 'the reading client is closed');
  assert.equal(isAlive(pid), false, 'the program is gone');
  assert.deepEqual(programs(), [], 'no child is left');
  await waitUntil(() => openFdCount() <= fdsBefore, 'every descriptor is closed');
});

test('a process that ends with a group kill pending tears the native path down cleanly', {
  skip,
}, async () => {
  // conn.c's close callbacks ran after the hub's (libuv closes newest first) and read the freed
  // hub: under the ASan build (scripts/test-sanitizers.sh) that was a use-after-free report and
  // the scenario's exit status 1.
  const { member } = report<{ member: number }>(await scenario([fixture('conn-teardown.mjs')]));
  await waitUntil(() => !isAlive(member), 'the group was TERMed when its leader exited');
});

test('many runs, hang-ups and violations leave no descriptor, child or group behind', {
  skip,
}, async () => {
  const d = await daemon({ timeout: 2000, killTimeout: 200, processGroup: true });
  try {
    await RawClient.exchange(d.path, request(['true']));
    const fdsBefore = openFdCount();
    const runs = Array.from({ length: 40 }, async (_, i) => {
      const client = await RawClient.connect(d.path);
      if (i % 4 === 0) {
        client.send(request(['sleep', '5'], [], false));
        await client.waitForPairs(0);
        setTimeout(() => client.destroy(), 20);
      } else if (i % 4 === 1) {
        client.send(Buffer.concat([request(['cat'], [], false), Buffer.from('zz')]));
      } else {
        client.send(request(['sh', '-c', 'echo $$'], ['x']));
      }
      await client.closed;
    });
    await Promise.all(runs);
    await waitUntil(() => d.server.connections === 0, 'every connection is closed');
    await waitUntil(() => programs().length === 0, 'every child is reaped');
    await waitUntil(() => openFdCount() <= fdsBefore, 'every descriptor is closed');
  } finally {
    await d.close();
  }
});

test('contained under sockexec’s policy: served natively, the same reply bytes as the JS path', {
  skip: skipContained,
}, async () => {
  const inside = await daemon({ contain: true });
  const insideJs = await daemon({ contain: true }, true);
  try {
    for (const [name, pieces] of Object.entries(CASES)) {
      const [a, b] = [await replay(inside.path, pieces), await replay(insideJs.path, pieces)];
      assert.equal(a.toString('latin1'), b.toString('latin1'), name);
    }
  } finally {
    await inside.close();
    await insideJs.close();
  }
});

test('contained natively: what a run leaves behind, a hang-up and the deadline stop the whole tree', {
  skip: skipContained,
}, async () => {
  const d = await daemon({ contain: true, timeout: 1500, killTimeout: 300 });
  try {
    await RawClient.exchange(d.path, request(['true']));
    const fdsBefore = openFdCount();
    // Out of the group's reach (its own session): the reaper stops it after the exit grace.
    const left = await RawClient.exchange(
      d.path,
      request(['sh', '-c', 'setsid sleep 30 & echo $!']),
    );
    assert.deepEqual(left.exit, ['exitcode', '0']);
    const orphan = Number(left.stdout.trim());
    await waitUntil(() => !isAlive(orphan), 'what the run left running was stopped');
    // A hang-up while the program runs: the program and what it started are stopped.
    const client = await RawClient.connect(d.path);
    client.send(request(['sh', '-c', 'sleep 30 & echo $$ $!; wait'], [], false));
    const [[, pids]] = (await client.waitForPairs(1)) as [[string, string]];
    client.destroy();
    for (const pid of pids.trim().split(' ').map(Number)) {
      await waitUntil(() => !isAlive(pid), `${pid} was stopped at the hang-up`);
    }
    // The deadline: TERM, then KILL after the kill timeout for a program that ignores TERM.
    const stubborn = await RawClient.exchange(
      d.path,
      request(['sh', '-c', "trap '' TERM; echo ready; exec sleep 30"]),
    );
    assert.equal(stubborn.stdout, 'ready\n');
    assert.deepEqual(stubborn.exit, ['termsig', 'KILL']);
    await waitUntil(() => d.server.connections === 0, 'every connection is closed');
    await waitUntil(() => programs().length === 0, 'every child (each run’s reaper) is reaped');
    await waitUntil(() => openFdCount() <= fdsBefore, 'every descriptor is closed');
  } finally {
    await d.close();
  }
});

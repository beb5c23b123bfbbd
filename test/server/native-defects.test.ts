/**
 * Defects a review found in native/conn.c (and LocalChannel's contained kill), each shown
 * against a daemon serving natively (and, where the daemon runs it so, the JS path): the
 * shared end-of-file stdin pipe, the TERM to a reaped leader's group, the accept backoff
 * that let the loop go empty, and the TERM to a contained program's pid after its reaper
 * reaped it. The pid-reuse ones place a newcomer at the pid with ns_last_pid (root only).
 */
import { strict as assert } from 'node:assert';
import { type ChildProcess, execFileSync, spawn as spawnProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { reaperAvailable } from '../../src/channel/contain.js';
import { addonAvailable } from '../../src/native/addon.js';
import { startDaemon, startDaemonProcess, type TestDaemon } from '../helpers/daemon.js';
import { isAlive, tempDir, waitUntil } from '../helpers/process.js';
import { RawClient, request } from '../helpers/raw-client.js';

const IGNORE_TERM = new URL('../fixtures/ignore-term.sh', import.meta.url).pathname;

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

/** Whether pid `pid` is in use. */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Runs `argv` (which prints its pid first) and resolves with that pid. */
async function printedPid(client: RawClient, argv: string[]): Promise<number> {
  client.send(request(argv));
  await client.waitForStdout('\n');
  const pairs = await client.waitForPairs(0);
  return Number(
    pairs
      .filter(([type]) => type === 'stdout')
      .map(([, data]) => data)
      .join(''),
  );
}

/** Once `pid` is free (reaped), starts `argv` where the kernel gives the next pid: `pid`, mostly. */
async function newcomerAt(pid: number, argv: string[]): Promise<ChildProcess> {
  while (isRunning(pid)) await new Promise((r) => setTimeout(r, 5));
  writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
  return spawnProcess(argv[0]!, argv.slice(1), { stdio: 'ignore' });
}

test("the TERM to a reaped leader's group after the exit grace spares a newcomer that took its id", {
  skip: skip || (process.getuid?.() !== 0 ? 'needs root (ns_last_pid)' : false),
  timeout: 30_000,
}, async () => {
  const d = await startDaemon({ contain: false, processGroup: true, killTimeout: 3000 });
  try {
    for (let attempt = 0; attempt < 10; attempt++) {
      // The leader prints its pid and exits; a descendant in a session of its own holds stdout
      // open, so the group's TERM waits for the exit grace (1 s), after the leader was reaped.
      const socket = await RawClient.connect(d.path);
      const pid = await printedPid(socket, ['sh', '-c', 'echo $$; setsid sleep 2 & exit 0']);
      // Once it is reaped (the pid is free), a newcomer takes pid and leads group `pid`.
      const newcomer = await newcomerAt(pid, ['setsid', 'sleep', '5']);
      if (newcomer.pid !== pid) {
        newcomer.kill('SIGKILL');
        socket.destroy();
        continue;
      }
      const died = new Promise<string | null>((resolve) =>
        newcomer.once('exit', (_code, signal) => resolve(signal)),
      );
      // After the grace the daemon signals the group whose id the newcomer now leads.
      const outcome = await Promise.race([
        died,
        new Promise<string>((r) => setTimeout(() => r('alive'), 2500)),
      ]);
      newcomer.kill('SIGKILL');
      socket.destroy();
      assert.equal(
        outcome,
        'alive',
        `the newcomer (pid ${pid}, leading group ${pid}) got ${outcome}`,
      );
      return;
    }
    assert.fail('could not place a newcomer at the reaped pid in 10 attempts');
  } finally {
    await d.close();
  }
});

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

test('contained: a hang-up after the program exited (its tree still running) spares a newcomer at its pid', {
  skip: skip || (process.getuid?.() !== 0 ? 'needs root (ns_last_pid)' : false),
  timeout: 30_000,
}, async () => {
  const d = await startDaemon({ contain: true, processGroup: false });
  assert.equal(d.server.nativeConnections, process.env.PROCSOCK_DAEMON_NATIVE !== '0');
  try {
    for (let attempt = 0; attempt < 10; attempt++) {
      // The program prints its pid and exits; what it started keeps the reaper (and the run) alive.
      const socket = await RawClient.connect(d.path);
      const pid = await printedPid(socket, [
        'sh',
        '-c',
        'echo $$; sleep 3 >/dev/null 2>&1 & exit 0',
      ]);
      const newcomer = await newcomerAt(pid, ['sleep', '5']); // once the reaper reaped it
      if (newcomer.pid !== pid) {
        newcomer.kill('SIGKILL');
        socket.destroy();
        await new Promise((r) => setTimeout(r, 1500));
        continue;
      }
      const died = new Promise<string | null>((resolve) =>
        newcomer.once('exit', (_code, signal) => resolve(signal)),
      );
      socket.destroy(); // the client hangs up while the run (the reaper) is still on
      const outcome = await Promise.race([
        died,
        new Promise<string>((r) => setTimeout(() => r('alive'), 1500)),
      ]);
      newcomer.kill('SIGKILL');
      assert.equal(outcome, 'alive', `the newcomer at the program's old pid ${pid} got ${outcome}`);
      return;
    }
    assert.fail('could not place a newcomer at the reaped pid in 10 attempts');
  } finally {
    await d.close();
  }
});

test('contained: a stop still TERMs the program (through its reaper), KILLs it after the kill timeout, and says which', {
  skip: containSkip,
  timeout: 30_000,
}, async () => {
  const files = tempDir('procsock-native-defects-');
  const d = await startDaemon({ contain: true, timeout: 1500, killTimeout: 300 });
  try {
    // A program that ignores TERM: the deadline's TERM reaches it (recorded), then the KILL.
    const record = files.path('term.log');
    const client = await RawClient.connect(d.path);
    client.send(request(['sh', IGNORE_TERM, record], [], false));
    await client.waitForStdout('\n'); // its trap is set
    const reply = await client.reply();
    assert.deepEqual(reply.exit, ['termsig', 'KILL']);
    assert.equal(readFileSync(record, 'utf8'), 'TERM\n', 'the program got TERM first, once');
    // One that does not: it dies of the TERM, and the reply says so.
    const plain = await RawClient.exchange(d.path, request(['sleep', '30']));
    assert.deepEqual(plain.exit, ['termsig', 'TERM']);
  } finally {
    await d.close();
    files.cleanup();
  }
});

// review #0: watch_set disarmed a paused one-shot output pipe with a MOD to no events, which
// the kernel arms for EPOLLHUP: the program's exit was then read as the pipe's end, unread.
test('a reader that pauses loses no output: a pipe held back by back-pressure is not armed for its hang-up', {
  skip,
}, async () => {
  for (const d of contained ? [nat, contained] : [nat]) {
    const scratch = tempDir('procsock-paused-');
    try {
      const pids = scratch.path('pids');
      const go = scratch.path('go');
      execFileSync('mkfifo', [go]);
      const client = await RawClient.connect(d.path);
      client.socket.pause();
      // A background writer fills stdout (its stderr elsewhere); once the daemon holds the
      // pipes back, sh writes its last words on stderr and exits: that pipe hangs up unread.
      client.send(
        request([
          'sh',
          '-c',
          'head -c 4000000 /dev/zero 2>/dev/null & echo $! $$ > "$0"; read x < "$1"; echo the-stderr-tail >&2',
          pids,
          go,
        ]),
      );
      await waitUntil(
        () => existsSync(pids) && readFileSync(pids, 'utf8').endsWith('\n'),
        'the program started',
      );
      const [head, sh] = readFileSync(pids, 'utf8').trim().split(' ').map(Number) as [
        number,
        number,
      ];
      // The writer blocks in a full pipe: the client's socket is full, the daemon holds back.
      await waitUntil(() => /pipe_write/.test(wchan(head)), 'stdout is held back');
      writeFileSync(go, 'go\n');
      await waitUntil(() => !isAlive(sh), 'the program exited');
      client.socket.resume();
      const reply = await client.reply();
      assert.equal(reply.stdout.length, 4_000_000);
      assert.equal(reply.stderr, 'the-stderr-tail\n');
    } finally {
      scratch.cleanup();
    }
  }
});

function wchan(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/wchan`, 'utf8');
  } catch {
    return '';
  }
}

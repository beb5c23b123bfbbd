/**
 * A daemon that cannot start a program for want of descriptors says so: a stderr line
 * `procsock: cannot start PROG: EMFILE (too many open files)` and exit status 125 — not
 * 126/127, which say the program itself cannot be executed — and goes on serving.
 * The daemon's descriptor limit is lowered while it runs (prlimit --pid, util-linux).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { type DaemonProcess, startDaemonProcess } from '../helpers/daemon.js';
import { openFdCount } from '../helpers/process.js';
import { RawClient, request } from '../helpers/raw-client.js';

const prlimit = spawnSync('prlimit', ['--version']).status === 0;
let daemon: DaemonProcess;

/** The daemon's RLIMIT_NOFILE, [soft, hard]. */
function fileLimit(pid: number): [string, string] {
  const result = spawnSync('prlimit', ['--pid', String(pid), '--nofile', '--raw', '--noheadings']);
  const fields = result.stdout.toString().trim().split(/\s+/);
  return [fields.at(-3)!, fields.at(-2)!];
}

/** Sets the soft limit only: lowering and restoring it needs no privilege. */
function setSoftFileLimit(pid: number, soft: string, hard: string): void {
  const result = spawnSync('prlimit', ['--pid', String(pid), `--nofile=${soft}:${hard}`]);
  assert.equal(result.status, 0, `prlimit failed: ${result.stderr}`);
}

before(async () => {
  if (prlimit) daemon = await startDaemonProcess();
});
after(async () => {
  if (!daemon) return;
  await daemon.stop();
  daemon.cleanup();
});

test('out of descriptors: a stderr line and exit 125, and the daemon goes on', {
  skip: !prlimit && 'prlimit (util-linux) is not installed',
}, async () => {
  const held: RawClient[] = [];
  let failed: Awaited<ReturnType<RawClient['reply']>> | null = null;
  // Room for the first cat's socket, pipes and pidfd, not for many more.
  const [soft, hard] = fileLimit(daemon.pid);
  setSoftFileLimit(daemon.pid, String(openFdCount(daemon.pid) + 12), hard);
  try {
    while (!failed && held.length < 20) {
      const client = await RawClient.connect(daemon.path);
      // cat echoes its first stdin piece: the echo says it runs; a reply says it could not.
      client.send(request(['cat'], ['x'], false));
      const [first] = await client.waitForPairs(1);
      if (first?.[0] === 'stdout') {
        held.push(client);
      } else {
        failed = await client.reply();
      }
    }
  } finally {
    setSoftFileLimit(daemon.pid, soft, hard);
  }
  assert.ok(failed, 'a spawn failed for want of descriptors');
  assert.ok(held.length >= 1, 'the first program could start');
  assert.equal(failed.stderr, 'procsock: cannot start cat: EMFILE (too many open files)\n');
  assert.equal(failed.stdout, '');
  assert.deepEqual(failed.exit, ['exitcode', '125']);
  for (const client of held) {
    client.send('0:,'); // the terminator: cat's stdin closes and it ends
    const reply = await client.reply();
    assert.deepEqual(reply.exit, ['exitcode', '0']);
  }
  const client = await RawClient.connect(daemon.path);
  client.send(request(['echo', 'still serving']));
  const reply = await client.reply();
  assert.equal(reply.stdout, 'still serving\n');
  assert.deepEqual(reply.exit, ['exitcode', '0']);
});

/**
 * PTY mode at the channel (LocalChannel, native backend): stdin has a pipe's back-pressure on
 * a terminal (write() says when it is full, 'drain' when it took everything), a job left
 * holding the terminal gets the hang-up a closed terminal gives (the run ends; nothing is
 * waited for), a terminal's session and process group are the program's own, and a worker
 * terminated mid-run (its tty writer waiting) stops its programs and crashes nothing.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { reaperAvailable } from '../../src/channel/contain.js';
import { LocalChannel, spawnBackendInUse } from '../../src/channel/local.js';
import { isAlive, processInfo, tempDir, waitUntil } from '../helpers/process.js';
import { fixture, scenario } from '../helpers/scenario.js';

const native = spawnBackendInUse() === 'native';
const files = tempDir('procsock-channel-pty-');

function collect(channel: LocalChannel): { stdout: () => string } {
  const chunks: Buffer[] = [];
  channel.on('output', ({ type, data }) => type === 'stdout' && chunks.push(Buffer.from(data)));
  return { stdout: () => Buffer.concat(chunks).toString() };
}

describe('PTY mode on a LocalChannel', {
  skip: !native && 'the native backend only: runs in the native pass',
}, () => {
  test('stdin: write() returns false once the terminal is full; drain once the program reads', async () => {
    // The program reads nothing until USR1, then everything.
    const channel = new LocalChannel(
      ['sh', '-c', 'trap "exec cat >/dev/null" USR1; echo ready; while :; do sleep 0.05; done'],
      { pty: true },
    );
    const out = collect(channel);
    await new Promise<void>((resolve) => {
      channel.on('output', () => out.stdout().includes('ready') && resolve());
    });
    const line = Buffer.from(`${'x'.repeat(63)}\n`);
    let writes = 0;
    // The kernel's terminal buffers hold tens of KiB: a few MiB is far beyond them.
    while (channel.write(line) && writes < 65_536) writes++;
    assert.ok(writes < 65_536, 'write() said the terminal is full');
    const drained = new Promise<void>((resolve) => channel.once('drain', resolve));
    channel.signal('USR1');
    await drained;
    channel.terminate();
    await channel.done();
  });

  test('unref(): a write waiting for room on the terminal does not keep the process alive', async () => {
    // That the script ends at all is the test (bounded by the test's timeout, not a clock).
    const child = spawn(process.execPath, ['--import', 'tsx', fixture('pty-unref.ts')], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      out += text;
    });
    const [code] = await once(child, 'close');
    assert.equal(code, 0);
    const said = JSON.parse(out) as { pid: number; full: boolean };
    assert.equal(said.full, true, 'the writer was waiting');
    // The program goes with this process (the parent-death signal of an uncontained run).
    await waitUntil(() => !isAlive(said.pid), 'the program is gone');
  });

  test('the program leads its own session and process group, and the terminal is its controlling one', async () => {
    const channel = new LocalChannel(['sh', '-c', 'echo ready; exec sleep 30'], { pty: true });
    const out = collect(channel);
    await new Promise<void>((resolve) => {
      channel.on('output', () => out.stdout().includes('ready') && resolve());
    });
    const stat = readFileSync(`/proc/${channel.pid}/stat`, 'utf8');
    const [, , pgrp, session, ttyNr, tpgid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    assert.equal(Number(pgrp), channel.pid);
    assert.equal(Number(session), channel.pid);
    assert.notEqual(Number(ttyNr), 0, 'it has a controlling terminal');
    assert.equal(Number(tpgid), channel.pid, 'its group is the foreground group');
    channel.terminate();
    assert.deepEqual(await channel.done(), { exitCode: null, termSignal: 'TERM' });
  });

  test('a job left holding the terminal gets the hang-up (SIGHUP) and the run ends', async () => {
    const pidFile = files.path('job.pid');
    const channel = new LocalChannel(['sh', '-c', `sleep 30 & echo $! > ${pidFile}; echo done`], {
      pty: true,
      exitGrace: 60_000,
    });
    const out = collect(channel);
    assert.deepEqual(await channel.done(), { exitCode: 0, termSignal: null });
    assert.equal(out.stdout(), 'done\r\n');
    const job = Number(readFileSync(pidFile, 'utf8'));
    await waitUntil(() => !isAlive(job), 'the job is gone', 10_000);
    assert.ok(processInfo(job) === undefined || processInfo(job)?.state === 'Z');
  });

  test('contained: the reaper leads the session, the program has the foreground; ^C and SIGWINCH reach it once; leftovers stop', {
    skip: !reaperAvailable() && 'procsock_reaper is not built',
  }, async () => {
    const pidFile = files.path('contained-job.pid');
    const channel = new LocalChannel(
      [
        'sh',
        '-c',
        `n=0; trap 'n=$((n+1)); echo "winch $n"' WINCH; setsid sleep 30 & echo $! > ${pidFile}; ` +
          'echo ready; while :; do read -r x && [ "$x" = q ] && break; done; echo "total $n"; exec sleep 30',
      ],
      { pty: true, contain: true, killTimeout: 500 },
    );
    const out = collect(channel);
    const seen = (text: string) =>
      new Promise<void>((resolve) => {
        const check = () => out.stdout().includes(text) && resolve();
        channel.on('output', check);
        check();
      });
    await seen('ready');
    const program = channel.programPid!;
    const stat = readFileSync(`/proc/${program}/stat`, 'utf8');
    const [, , pgrp, session, , tpgid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    assert.equal(Number(session), channel.pid, 'the reaper leads the session');
    assert.equal(Number(pgrp), program, 'the program leads its group');
    assert.equal(Number(tpgid), program, "the program's group is the foreground group");
    channel.resize(100, 30);
    await seen('winch 1');
    channel.write('q\n');
    await seen('total');
    assert.match(out.stdout(), /winch 1\r\n(q\r\n)?total 1\r\n/, 'SIGWINCH came once');
    channel.write('\x03');
    assert.deepEqual(await channel.done(), { exitCode: null, termSignal: 'INT' });
    assert.equal(channel.descendantsStopped, 1, 'the setsid sleep was stopped');
    const job = Number(readFileSync(pidFile, 'utf8'));
    await waitUntil(() => !isAlive(job), 'the setsid sleep is gone', 10_000);
  });

  test('a worker terminated mid-run (its tty writer waiting) stops its programs; nothing crashes', async () => {
    const result = await scenario([fixture('pty-worker.mjs')]);
    assert.equal(result.stderr, '');
    assert.equal(result.status, 0);
    const said = JSON.parse(result.stdout) as { tty: string; left: string[] };
    assert.match(said.tty, /^\/dev\/pts\/\d+\r\n$/);
    assert.deepEqual(said.left, [], 'no child left');
  });
});

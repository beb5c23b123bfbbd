/**
 * A TERM-ignoring program whose descendants hold its pipes must not wedge its connection:
 * TERM at the deadline (or hang-up, or shutdown), KILL after the kill timeout, then the
 * pipes are closed once the program is reaped — even though a background job, a `setsid`
 * grandchild or a daemonised one still holds them. The client gets everything the program
 * wrote and then `termsig KILL`; the slot frees; the audit record is written; shutdown
 * does not wait for the descendants.
 *
 * (These daemons run uncontained, --no-contain: the descendants then outlive the connection
 * unless they share its process group, and the test kills them at the end. Contained — the
 * default — they are stopped with it: test/server/containment.test.ts.)
 */
import { strict as assert } from 'node:assert';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { startDaemon, startDaemonProcess, type TestDaemon } from '../helpers/daemon.js';
import { childrenOf, isAlive, tempDir } from '../helpers/process.js';
import { RawClient, request } from '../helpers/raw-client.js';

const files = tempDir('procsock-wedge-');
/**
 * These tests leave processes behind on purpose: a descendant holding the pipes, and the
 * foreground sleep of a program the daemon KILLed (an uncontained daemon cannot stop them:
 * that is what they show). Their sleeps carry this file's own duration, so the after hook
 * finds every one and none outlives the file.
 */
const LONG = `1000.${process.pid}`;
after(() => {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string;
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'latin1');
    } catch {
      continue; // gone meanwhile
    }
    if (argv === `sleep\0${LONG}\0`) {
      try {
        process.kill(Number(entry), 'SIGKILL');
      } catch {
        // ended meanwhile
      }
    }
  }
});
after(() => files.cleanup());

/** The first stdout line: the pid of the descendant the program left holding its pipes. */
async function descendantPid(client: RawClient): Promise<number> {
  const [first] = await client.waitForPairs(1);
  const pid = /^(\d+)\n/.exec(first?.[1] ?? '')?.[1];
  assert.ok(pid, `no pid line in ${JSON.stringify(first)}`);
  return Number(pid);
}

function auditRecords(path: string): { argv: string[]; termSignal: string | null }[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}

async function assertSlotFree(daemon: TestDaemon): Promise<void> {
  const reply = await RawClient.exchange(daemon.path, request(['echo', 'next']));
  assert.deepEqual(reply.pairs, [
    ['stdout', 'next\n'],
    ['exitcode', '0'],
  ]);
}

/**
 * Ignores TERM, leaves `sleep` holding its pipes, and writes numbered lines as fast as it can
 * until KILLed, each line first to stdout and then to `count`: the last number in `count` is
 * at most one more than the last one that reached the pipe.
 */
function busyIgnoringTerm(count: string, leave = `sleep ${LONG} &`): string[] {
  return [
    'sh',
    '-c',
    `trap "" TERM; ${leave} echo $!; exec 3>>'${count}'; i=0; while :; do i=$((i+1)); echo $i; echo $i >&3; done`,
  ];
}

/** The reply's stdout after the pid line: 1, 2, 3… with no gap; returns the last number. */
function lastOfSequence(stdout: string): number {
  const lines = stdout.split('\n').slice(1);
  const partial = lines.pop(); // the line being written when the KILL came (possibly '')
  lines.forEach((line, i) => {
    if (line !== String(i + 1)) assert.fail(`line ${i + 1} of the output is ${line}`);
  });
  assert.ok(partial === '' || String(lines.length + 1).startsWith(partial!));
  return lines.length;
}

describe('the deadline: TERM, KILL after the kill timeout, then the pipes are closed', () => {
  for (const [name, processGroup, leave] of [
    ['a background job holds the pipes', false, `sleep ${LONG} &`],
    ['--kill-group, a setsid grandchild holds the pipes', true, `setsid sleep ${LONG} &`],
  ] as const) {
    test(name, async () => {
      const audit = files.path(`deadline-${processGroup}.audit`);
      const count = files.path(`deadline-${processGroup}.count`);
      const daemon = await startDaemon({
        contain: false,
        timeout: 500,
        killTimeout: 300,
        maxConnections: 1,
        processGroup,
        collectLog: true,
        policy: { audit },
      });
      try {
        const client = await RawClient.connect(daemon.path);
        client.send(request(busyIgnoringTerm(count, leave), [], false));
        const holder = await descendantPid(client);
        const reply = await client.reply();
        assert.deepEqual(reply.exit, ['termsig', 'KILL'], daemon.log.join('\n'));
        assert.equal(reply.trailing.length, 0);
        // Everything the program wrote reached the client before the exit pair.
        const written = readFileSync(count, 'utf8').trim().split('\n').at(-1);
        const received = lastOfSequence(reply.stdout);
        assert.ok(received >= Number(written) - 1, `received ${received}, wrote ${written}`);
        assert.equal(isAlive(holder), true, 'the descendant still holds the pipes');
        await assertSlotFree(daemon);
        assert.doesNotMatch(daemon.log.join('\n'), /did not take its reply/);
      } finally {
        await daemon.close();
      }
      const records = auditRecords(audit);
      assert.equal(records.length, 2);
      assert.equal(records[0]!.termSignal, 'KILL');
    });
  }
});

describe('a hang-up with no deadline (-t 0): the slot frees after the kill timeout', () => {
  for (const [name, processGroup, leave] of [
    ['a background job holds the pipes', false, `sleep ${LONG} &`],
    ['--kill-group, a setsid grandchild holds the pipes', true, `setsid sleep ${LONG} &`],
  ] as const) {
    test(name, async () => {
      const audit = files.path(`hangup-${processGroup}.audit`);
      const daemon = await startDaemon({
        contain: false,
        timeout: 0,
        killTimeout: 300,
        maxConnections: 1,
        processGroup,
        policy: { audit },
      });
      try {
        const before = new Set(childrenOf().map((child) => child.pid));
        const client = await RawClient.connect(daemon.path);
        client.send(
          request(['sh', '-c', `trap "" TERM; ${leave} echo $!; sleep ${LONG}`], [], false),
        );
        const holder = await descendantPid(client);
        const program = childrenOf().filter((child) => !before.has(child.pid));
        assert.equal(program.length, 1);
        client.destroy();
        await assertSlotFree(daemon);
        assert.equal(isAlive(holder), true, 'the descendant still holds the pipes');
        // The program itself was reaped: no child or zombie of ours is left of it.
        assert.equal(
          childrenOf().some((child) => child.pid === program[0]!.pid),
          false,
        );
      } finally {
        await daemon.close();
      }
      const records = auditRecords(audit);
      assert.equal(records.length, 2);
      assert.deepEqual(records[0]!.argv.slice(0, 2), ['sh', '-c']);
    });
  }
});

test('SIGTERM shutdown does not wait for a daemonised grandchild holding the pipes', async () => {
  const daemon = await startDaemonProcess(['-t', '0', '-k', '1', '--no-contain']);
  try {
    const client = await RawClient.connect(daemon.path);
    // The subshell exits at once: its setsid child is reparented, a daemon of its own.
    client.send(
      request(
        ['sh', '-c', `trap "" TERM; (setsid sleep ${LONG} & echo $!); sleep ${LONG}`],
        [],
        false,
      ),
    );
    const holder = await descendantPid(client);
    assert.equal(await daemon.stop('SIGTERM'), 0, daemon.stderr());
    assert.equal(existsSync(daemon.path), false, 'the socket file is removed');
    assert.deepEqual((await client.reply()).exit, ['termsig', 'KILL']);
    assert.equal(isAlive(holder), true, 'the grandchild was not waited for');
  } finally {
    daemon.cleanup();
  }
});

/**
 * PTY mode on the wire (README, "Protocol extension"), through the raw client: the `pty`
 * fields give the program a terminal of the size asked for, stderr stays its own pairs
 * unless `pty-stderr pty`, a `window` message resizes it (SIGWINCH), and a daemon that will
 * not give one says why — its policy (`clientPty: false`), a spawn backend that cannot, or
 * containment — with the `refused pty` pair, nothing run.
 */
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { reaperAvailable } from '../../src/channel/contain.js';
import { spawnBackendInUse } from '../../src/channel/local.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { isAlive, tempDir, waitUntil } from '../helpers/process.js';
import { args, extendedRequest, ns, RawClient } from '../helpers/raw-client.js';
import { testAccount } from '../helpers/users.js';

const native = spawnBackendInUse() === 'native';
const files = tempDir('procsock-server-pty-');
let daemon: TestDaemon;
before(async () => {
  daemon = await startDaemon({ timeout: 60_000, killTimeout: 1000, collectLog: true });
});
after(async () => {
  await daemon.close();
  files.cleanup();
});

function pairsAfterHello(pairs: [string, string][]): [string, string][] {
  assert.deepEqual(pairs[0], ['procsock', '1'], 'the hello comes first');
  return pairs.slice(1).filter(([type]) => type !== 'usage');
}

describe('a daemon that gives terminals', {
  skip: !native && 'the native backend only: runs in the native pass',
}, () => {
  test('pty 1 with a size: the program has the terminal on 0 and 1, stderr apart', async () => {
    const script =
      'tty; stty size; test -t 0 && test -t 1 && echo in-out; test -t 2 || echo pipe >&2';
    const reply = await RawClient.exchange(
      daemon.path,
      extendedRequest([
        ...args(['sh', '-c', script]),
        ['pty', '1'],
        ['pty-columns', '132'],
        ['pty-rows', '43'],
      ]),
    );
    assert.match(reply.stdout, /^\/dev\/pts\/\d+\r\n43 132\r\nin-out\r\n$/);
    assert.equal(reply.stderr, 'pipe\n');
    assert.deepEqual(pairsAfterHello(reply.pairs).slice(-2), [
      ['reason', 'exit'],
      ['exitcode', '0'],
    ]);
  });

  test('pty-raw 1: the terminal starts raw (no \\r\\n, no echo of stdin)', async () => {
    const reply = await RawClient.exchange(
      daemon.path,
      extendedRequest(
        [
          ...args(['sh', '-c', 'read -r x; printf "got %s\\n" "$x"']),
          ['pty', '1'],
          ['pty-raw', '1'],
        ],
        [
          ['stdin', 'hi\n'],
          ['stdin', ''],
        ],
      ),
    );
    assert.equal(reply.stdout, 'got hi\n');
    assert.deepEqual(reply.exit, ['exitcode', '0']);
  });

  test('pty-stderr pty: stderr is the terminal too (it comes as stdout)', async () => {
    const reply = await RawClient.exchange(
      daemon.path,
      extendedRequest([
        ...args(['sh', '-c', 'test -t 2 && echo tty >&2']),
        ['pty', '1'],
        ['pty-stderr', 'pty'],
      ]),
    );
    assert.equal(reply.stdout, 'tty\r\n');
    assert.equal(reply.stderr, '');
    assert.deepEqual(reply.exit, ['exitcode', '0']);
  });

  test('max-output counts a terminal as it counts pipes', async () => {
    const reply = await RawClient.exchange(
      daemon.path,
      extendedRequest([...args(['yes']), ['pty', '1'], ['max-output', '100000']]),
    );
    assert.ok(reply.stdout.length >= 100_000, 'at least the limit arrived');
    assert.equal(reply.pairs.find(([type]) => type === 'reason')?.[1], 'output-limit');
  });

  test('a window message resizes the terminal; the program sees SIGWINCH', async () => {
    const client = await RawClient.connect(daemon.path);
    const script =
      'trap \'echo "winch $(stty size)"; exit 5\' WINCH; echo "ready $(stty size)"; while :; do sleep 0.05; done';
    client.send(extendedRequest([...args(['sh', '-c', script]), ['pty', '1']], []));
    await client.waitForStdout('ready 24 80\r\n');
    client.send(Buffer.concat([ns('window'), ns('100x30')]));
    const reply = await client.reply();
    assert.equal(reply.stdout, 'ready 24 80\r\nwinch 30 100\r\n');
    assert.deepEqual(reply.exit, ['exitcode', '5']);
    assert.ok(
      daemon.log.some((line) => /window of pid \d+ set to 100x30/.test(line)),
      'the debug log says so',
    );
  });

  test('a window message for a run without a terminal changes nothing', async () => {
    const client = await RawClient.connect(daemon.path);
    client.send(extendedRequest([...args(['sh', '-c', 'echo ready; read x; echo $x'])], []));
    await client.waitForStdout('ready\n');
    client.send(
      Buffer.concat([ns('window'), ns('100x30'), ns('stdin'), ns('go\n'), ns('stdin'), ns('')]),
    );
    const reply = await client.reply();
    assert.equal(reply.stdout, 'ready\ngo\n');
    assert.deepEqual(reply.exit, ['exitcode', '0']);
  });

  test('a malformed window message is a protocol violation: that connection closes, the daemon serves on', async () => {
    const client = await RawClient.connect(daemon.path);
    client.send(extendedRequest([...args(['sleep', '30']), ['pty', '1']], []));
    client.send(Buffer.concat([ns('window'), ns('80,24')]));
    const reply = await client.reply();
    assert.equal(reply.exit, undefined, 'no exit pair: the connection was dropped');
    const next = await RawClient.exchange(
      daemon.path,
      extendedRequest([...args(['tty']), ['pty', '1']]),
    );
    assert.match(next.stdout, /^\/dev\/pts\/\d+\r\n$/);
  });

  describe('a policy that refuses terminals (clientPty: false)', () => {
    let strict: TestDaemon;
    before(async () => {
      strict = await startDaemon({ policy: { clientPty: false } });
    });
    after(() => strict.close());

    test('pty is refused by the policy, nothing run; runs without one are served', async () => {
      const marker = files.path('policy-ran');
      const reply = await RawClient.exchange(
        strict.path,
        extendedRequest([...args(['touch', marker]), ['pty', '1']]),
      );
      assert.deepEqual(pairsAfterHello(reply.pairs), [
        [
          'stderr',
          'procsock: pty: clients may not have a terminal on this daemon (it was started with --no-client-pty)\n',
        ],
        ['refused', 'pty'],
        ['reason', 'policy-refused'],
        ['exitcode', '126'],
      ]);
      assert.equal(existsSync(marker), false);
      const plain = await RawClient.exchange(strict.path, extendedRequest([...args(['true'])]));
      assert.deepEqual(plain.exit, ['exitcode', '0']);
    });
  });

  describe('a daemon that runs programs as another user (--user)', () => {
    const account = testAccount('procsock-t-home', true);
    let asUser: TestDaemon;
    before(async () => {
      if (account) asUser = await startDaemon({ policy: { user: account.name } });
    });
    after(() => asUser?.close());

    test('the program owns its terminal, so it can reopen it by name', {
      skip: account ? false : 'needs root and useradd',
    }, async () => {
      const reply = await RawClient.exchange(
        asUser.path,
        extendedRequest([
          ...args(['sh', '-c', 'exec 3<>"$(tty)" && echo reopened; stat -c %U "$(tty)"']),
          ['pty', '1'],
        ]),
      );
      assert.equal(reply.stdout, `reopened\r\n${account!.name}\r\n`, reply.stderr);
      assert.deepEqual(reply.exit, ['exitcode', '0']);
    });
  });

  describe('a contained daemon', {
    skip: !reaperAvailable() && 'procsock_reaper is not built',
  }, () => {
    let contained: TestDaemon;
    before(async () => {
      contained = await startDaemon({ contain: true, collectLog: true });
    });
    after(() => contained.close());

    test('a pty run is contained: the program has the terminal and its foreground; a setsid leftover is stopped', async () => {
      const pidFile = files.path('contained-leftover.pid');
      // The program's group must be the terminal's foreground group (not the reaper's).
      const script =
        'read -r _ _ _ _ pgrp _ _ tpgid _ < /proc/$$/stat; [ "$pgrp" = "$tpgid" ] && [ "$pgrp" = $$ ] && echo foreground; ' +
        `tty; setsid sleep 30 & echo $! > ${pidFile}`;
      const reply = await RawClient.exchange(
        contained.path,
        extendedRequest([...args(['sh', '-c', script]), ['pty', '1']]),
      );
      assert.match(reply.stdout, /^foreground\r\n\/dev\/pts\/\d+\r\n$/);
      assert.deepEqual(reply.exit, ['exitcode', '0']);
      assert.ok(
        contained.log.some((line) => /\(the reaper of a contained run\)$/.test(line)),
        'started under the reaper',
      );
      const usage = reply.pairs.find(([type]) => type === 'usage')?.[1] ?? '';
      assert.match(usage, /descendantsStopped=1/);
      const leftover = Number(readFileSync(pidFile, 'utf8'));
      await waitUntil(() => !isAlive(leftover), 'the setsid sleep is gone', 10_000);
    });
  });
});

describe('a daemon on the child_process backend', {
  skip: native && "the child_process backend's case: runs in the child_process pass",
}, () => {
  test('pty is answered unsupported, saying it needs the native backend; nothing run', async () => {
    const marker = files.path('cp-ran');
    const reply = await RawClient.exchange(
      daemon.path,
      extendedRequest([...args(['touch', marker]), ['pty', '1']]),
    );
    const pairs = pairsAfterHello(reply.pairs);
    assert.match(
      pairs[0]![1],
      /^procsock: pty: this daemon cannot give a program a terminal: it needs the native spawn backend/,
    );
    assert.deepEqual(pairs.slice(1), [
      ['refused', 'pty'],
      ['reason', 'unsupported'],
      ['exitcode', '126'],
    ]);
    assert.equal(existsSync(marker), false);
  });
});

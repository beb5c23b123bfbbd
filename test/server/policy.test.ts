/**
 * The daemon's policy, end to end: a real daemon on a real socket, a raw protocol client,
 * and for each rule the exact reply — including the ways people try to get around it.
 */
import { strict as assert } from 'node:assert';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { spawnBackendInUse } from '../../src/channel/local.js';
import { parseServeArgs } from '../../src/cli/serve.js';
import { serve } from '../../src/server/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { tempDir } from '../helpers/process.js';
import { ns, type Pair, RawClient, request } from '../helpers/raw-client.js';

const files = tempDir('procsock-policy-');
after(() => files.cleanup());

async function exchange(daemon: TestDaemon, argv: (string | Buffer)[], stdin: string[] = []) {
  return RawClient.exchange(daemon.path, request(argv, stdin));
}

function refusedPairs(program: string, reason: string): Pair[] {
  return [
    ['stderr', `procsock: ${program}: ${reason}\n`],
    ['exitcode', reason === 'command not found' ? '127' : '126'],
  ];
}

describe('programs: the allow-list, checked by real path', () => {
  let daemon: TestDaemon;
  let allowed: string;
  let outside: string;
  before(async () => {
    allowed = files.path('allowed');
    outside = files.path('outside');
    mkdirSync(allowed);
    mkdirSync(outside);
    for (const dir of [allowed, outside]) {
      writeFileSync(`${dir}/tool`, `#!/bin/sh\necho "tool in ${dir}"\n`);
      chmodSync(`${dir}/tool`, 0o755);
    }
    symlinkSync(`${outside}/tool`, `${allowed}/escape`);
    symlinkSync('/bin/sh', `${allowed}/sh`);
    daemon = await startDaemon({
      collectLog: true,
      policy: { allow: ['/usr/bin/echo', allowed], path: `/usr/bin:/bin`, cwd: allowed },
    });
  });
  after(() => daemon.close());

  test('an allowed program runs, found through PATH', async () => {
    assert.ok(daemon.log.some((line) => /listening on .*policy in force\)/.test(line)));
    assert.deepEqual((await exchange(daemon, ['echo', 'hi'])).pairs, [
      ['stdout', 'hi\n'],
      ['exitcode', '0'],
    ]);
    assert.deepEqual((await exchange(daemon, [`${allowed}/tool`])).pairs, [
      ['stdout', `tool in ${allowed}\n`],
      ['exitcode', '0'],
    ]);
  });

  test('anything else gets a stderr message naming the policy and exit 126, and is logged', async () => {
    assert.deepEqual(
      (await exchange(daemon, ['sh', '-c', 'id'])).pairs,
      refusedPairs(
        'sh',
        'not allowed by the daemon policy (its operator can allow it: procsock serve --allow PATH)',
      ),
    );
    assert.ok(
      daemon.log.some((line) => /refused \["sh","-c","id"\]/.test(line)),
      'logged',
    );
  });

  test('a symlink in the allowed directory pointing out of it is refused', async () => {
    assert.deepEqual(
      (await exchange(daemon, [`${allowed}/escape`])).pairs,
      refusedPairs(
        `${allowed}/escape`,
        'not allowed by the daemon policy (its operator can allow it: procsock serve --allow PATH)',
      ),
    );
    // Even one pointing at a system shell.
    assert.deepEqual(
      (await exchange(daemon, [`${allowed}/sh`, '-c', 'id'])).pairs,
      refusedPairs(
        `${allowed}/sh`,
        'not allowed by the daemon policy (its operator can allow it: procsock serve --allow PATH)',
      ),
    );
  });

  test('../ in the program path does not escape', async () => {
    const sneaky = `${allowed}/../outside/tool`;
    assert.deepEqual(
      (await exchange(daemon, [sneaky])).pairs,
      refusedPairs(
        sneaky,
        'not allowed by the daemon policy (its operator can allow it: procsock serve --allow PATH)',
      ),
    );
  });

  test('relative names resolve against the programs working directory, then are checked', async () => {
    assert.deepEqual((await exchange(daemon, ['./tool'])).pairs, [
      ['stdout', `tool in ${allowed}\n`],
      ['exitcode', '0'],
    ]);
    assert.deepEqual(
      (await exchange(daemon, ['../outside/tool'])).pairs,
      refusedPairs(
        '../outside/tool',
        'not allowed by the daemon policy (its operator can allow it: procsock serve --allow PATH)',
      ),
    );
  });

  test('argv[0] with a NUL byte is refused, the NUL shown escaped', async () => {
    assert.deepEqual(
      (await exchange(daemon, [Buffer.from('echo\0-rf')])).pairs,
      refusedPairs('echo\\x00-rf', 'invalid program name'),
    );
  });

  test('an unknown program is "command not found", 127', async () => {
    assert.deepEqual(
      (await exchange(daemon, ['procsock-nope'])).pairs,
      refusedPairs('procsock-nope', 'command not found'),
    );
  });
});

test('PATH games: the lookup PATH is the policys, relative entries skipped', async () => {
  const dir = files.path('pathgames');
  mkdirSync(dir);
  writeFileSync(`${dir}/echo`, '#!/bin/sh\necho hijacked\n');
  chmodSync(`${dir}/echo`, 0o755);
  // `.` first in PATH, with the programs' cwd holding a fake echo: skipped, /usr/bin/echo runs.
  const daemon = await startDaemon({
    policy: { allow: ['/usr/bin'], path: `.:${'/usr/bin'}`, cwd: dir },
  });
  try {
    assert.deepEqual((await exchange(daemon, ['echo', 'real'])).pairs, [
      ['stdout', 'real\n'],
      ['exitcode', '0'],
    ]);
  } finally {
    await daemon.close();
  }
});

describe('environment and working directory', () => {
  test('none passed, some set: the program sees exactly those', async () => {
    const daemon = await startDaemon({
      policy: { envPass: 'none', envSet: { GREETING: 'hi', PATH: '/usr/bin:/bin' } },
    });
    try {
      const reply = await exchange(daemon, ['/usr/bin/env']);
      assert.deepEqual(reply.stdout.split('\n').filter(Boolean).sort(), [
        'GREETING=hi',
        'PATH=/usr/bin:/bin',
      ]);
    } finally {
      await daemon.close();
    }
  });

  test('a listed variable passes, the daemons other secrets do not', async () => {
    process.env.PROCSOCK_TEST_SECRET = 's3cret';
    process.env.PROCSOCK_TEST_PUBLIC = 'public';
    const daemon = await startDaemon({ policy: { envPass: ['PROCSOCK_TEST_PUBLIC', 'PATH'] } });
    try {
      const reply = await exchange(daemon, ['env']);
      assert.match(reply.stdout, /^PROCSOCK_TEST_PUBLIC=public$/m);
      assert.doesNotMatch(reply.stdout, /s3cret/);
    } finally {
      delete process.env.PROCSOCK_TEST_SECRET;
      delete process.env.PROCSOCK_TEST_PUBLIC;
      await daemon.close();
    }
  });

  test('a huge environment is passed intact', async () => {
    const envSet = Object.fromEntries(
      Array.from({ length: 2000 }, (_, i) => [`BIG_${i}`, 'x'.repeat(200)]),
    );
    const daemon = await startDaemon({ policy: { envPass: 'none', envSet } });
    try {
      const reply = await exchange(daemon, ['/usr/bin/env']);
      assert.equal(reply.stdout.split('\n').filter((l) => l.startsWith('BIG_')).length, 2000);
      assert.deepEqual(reply.exit, ['exitcode', '0']);
    } finally {
      await daemon.close();
    }
  });

  test('the working directory is the policys', async () => {
    const daemon = await startDaemon({ policy: { cwd: files.dir } });
    try {
      assert.equal((await exchange(daemon, ['pwd'])).stdout, `${files.dir}\n`);
    } finally {
      await daemon.close();
    }
  });
});

describe('limits per program', () => {
  let daemon: TestDaemon;
  before(async () => {
    daemon = await startDaemon({
      killTimeout: 500,
      policy: { maxOutputBytes: 1000, maxStdinBytes: 5 },
    });
  });
  after(() => daemon.close());

  test('output beyond the limit: cut at the limit, the client told, the program stopped', async () => {
    const reply = await exchange(daemon, ['yes']);
    assert.equal(reply.stdout, 'y\n'.repeat(500));
    assert.equal(
      reply.stderr,
      'procsock: output limit of 1000 bytes reached; the program was stopped\n',
    );
    assert.deepEqual(reply.exit, ['termsig', 'TERM']);
  });

  test('stdin beyond the limit: the program stopped, the client told', async () => {
    const client = await RawClient.connect(daemon.path);
    client.send(request(['cat'], ['12345'], false));
    await client.waitForStdout('12345');
    client.send(Buffer.concat([ns('6'), ns('')]));
    const reply = await client.reply();
    assert.equal(reply.stdout, '12345');
    assert.equal(
      reply.stderr,
      'procsock: stdin limit of 5 bytes reached; the program was stopped\n',
    );
    assert.deepEqual(reply.exit, ['termsig', 'TERM']);
  });

  test('stdin beyond the limit: the program never reads an end of input (its input was cut)', async () => {
    // The client's terminator comes after the byte over the limit: the program is stopped
    // reading, not handed a clean end of file that would pass the truncated input for whole.
    const scratch = tempDir('procsock-stdin-limit-');
    try {
      const marker = scratch.path('finished');
      const client = await RawClient.connect(daemon.path);
      client.send(request(['sh', '-c', 'cat; : > "$0"', marker], ['12345'], false));
      await client.waitForStdout('12345');
      client.send(Buffer.concat([ns('678'), ns('')]));
      const reply = await client.reply();
      assert.deepEqual(reply.exit, ['termsig', 'TERM']);
      assert.equal(existsSync(marker), false, 'the program went on as if its input had ended');
    } finally {
      scratch.cleanup();
    }
  });

  test('within the limits nothing changes', async () => {
    assert.deepEqual((await exchange(daemon, ['cat'], ['12345'])).pairs, [
      ['stdout', '12345'],
      ['exitcode', '0'],
    ]);
  });
});

describe('resource limits', () => {
  const native = spawnBackendInUse() === 'native';

  test('are applied in the child before exec (native backend)', {
    skip: !native && 'the native backend only: runs in the native pass',
  }, async () => {
    const daemon = await startDaemon({ policy: { rlimits: { openFiles: 17, cpuSeconds: 3 } } });
    try {
      const reply = await exchange(daemon, ['sh', '-c', 'ulimit -n; ulimit -t']);
      assert.equal(reply.stdout, '17\n3\n');
      assert.deepEqual(reply.exit, ['exitcode', '0']);
    } finally {
      await daemon.close();
    }
  });

  test('without the native backend the daemon refuses to start, saying why', {
    skip: native && "the child_process backend's case: runs in the child_process pass",
  }, async () => {
    await assert.rejects(
      serve({
        path: files.path('rl.sock'),
        policy: { allowRoot: true, rlimits: { openFiles: 17 } },
      }),
      (error: Error & { code?: string }) =>
        error.code === 'PROCSOCK_ARGUMENT' && /native spawn backend/.test(error.message),
    );
  });
});

describe('identity', () => {
  const root = process.getuid?.() === 0;

  test('as root with no user and no allowRoot, the daemon refuses to start', {
    skip: !root && 'needs root',
  }, async () => {
    await assert.rejects(
      serve({ path: files.path('root.sock') }),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'PROCSOCK_ARGUMENT');
        assert.match(error.message, /refusing to run programs as root: give --user/);
        return true;
      },
    );
  });

  test('programs run as the given user, with its group only', {
    skip: !root && 'needs root',
  }, async () => {
    const daemon = await startDaemon({ policy: { user: 65_534, group: 65_534 } });
    try {
      const reply = await exchange(daemon, ['sh', '-c', 'id -u; id -g; id -G']);
      assert.equal(reply.stdout, '65534\n65534\n65534\n');
      assert.deepEqual(reply.exit, ['exitcode', '0']);
    } finally {
      await daemon.close();
    }
  });

  test('a user id that Node’s child_process cannot set is refused at start-up there', {
    skip:
      spawnBackendInUse() === 'native'
        ? 'the native backend sets any uid_t'
        : !root && 'needs root (--user needs a root daemon, refused first otherwise)',
  }, async () => {
    // Before, the daemon started and every run failed: "cannot execute (ERR_INVALID_ARG_TYPE)".
    await assert.rejects(
      serve({ path: files.path('bigid.sock'), policy: { user: 2147483648 } }),
      /id 2147483648 is beyond what Node's child_process can set \(2147483647\): it needs the native spawn backend/,
    );
  });

  test('a user that does not exist is refused at start-up', async () => {
    await assert.rejects(
      serve({ path: files.path('nouser.sock'), policy: { user: 'procsock-no-such-user' } }),
      /no user named "procsock-no-such-user"/,
    );
  });
});

test('the audit log: one JSON line per connection, peer, argv, exit, bytes', async () => {
  const auditFile = files.path('audit.jsonl');
  const daemon = await startDaemon({
    policy: { allow: ['/usr/bin/cat', '/usr/bin/true'], audit: auditFile },
  });
  await exchange(daemon, ['cat'], ['hello']);
  await exchange(daemon, ['sh']);
  const violation = await RawClient.connect(daemon.path);
  violation.send(Buffer.from('x:'));
  await violation.reply();
  await daemon.close();

  const records = readFileSync(auditFile, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
  assert.equal(records.length, 3);
  const [ran, refused, broken] = records;
  assert.deepEqual(ran.argv, ['cat']);
  assert.equal(ran.exitCode, 0);
  assert.equal(ran.bytesIn, 5);
  assert.equal(ran.bytesOut, 5);
  assert.equal(typeof ran.pid, 'number');
  assert.equal(typeof ran.durationMs, 'number');
  assert.match(ran.time, /^\d{4}-\d\d-\d\dT/);
  if (spawnBackendInUse() === 'native') {
    // The kernel's word on who connected: this very process.
    assert.deepEqual(ran.peer, {
      pid: process.pid,
      uid: process.getuid!(),
      gid: process.getgid!(),
    });
  }
  assert.equal(
    refused.refused,
    'procsock: sh: not allowed by the daemon policy (its operator can allow it: procsock serve --allow PATH)',
  );
  assert.equal(refused.exitCode, 126);
  assert.equal(refused.pid, null);
  assert.match(broken.error, /protocol violation/);
  assert.deepEqual(broken.argv, []);
});

describe('command line and config file', () => {
  test('policy flags become the policy options', () => {
    const command = parseServeArgs([
      '--allow',
      '/usr/bin/uname',
      '--allow',
      '/opt/tools',
      '--exec-path',
      '/usr/bin',
      '--env-pass',
      'LANG,TZ',
      '--env-set',
      'A=1=2',
      '--cwd',
      '/srv',
      '--max-output-bytes',
      '1000',
      '--max-stdin-bytes',
      '10',
      '--rlimit-cpu',
      '5',
      '--rlimit-nofile',
      '64',
      '--user',
      'www-data',
      '--group',
      'www-data',
      '--audit',
      '-',
      's.sock',
    ]);
    assert.equal(command.kind, 'serve');
    assert.deepEqual(command.kind === 'serve' && command.options.policy, {
      allow: ['/usr/bin/uname', '/opt/tools'],
      path: '/usr/bin',
      envPass: ['LANG', 'TZ'],
      envSet: { A: '1=2' },
      cwd: '/srv',
      maxOutputBytes: 1000,
      maxStdinBytes: 10,
      rlimits: { cpuSeconds: 5, openFiles: 64 },
      user: 'www-data',
      group: 'www-data',
      audit: '-',
    });
  });

  test('a JSON config file holds the same options; the command line overrides it', () => {
    const config = files.path('procsock.json');
    writeFileSync(
      config,
      JSON.stringify({
        allow: ['/usr/bin/uname'],
        'env-pass': 'none',
        timeout: 30,
        'kill-group': true,
      }),
    );
    const command = parseServeArgs(['--config', config, '-t', '5', 's.sock']);
    assert.equal(command.kind, 'serve');
    if (command.kind !== 'serve') return;
    assert.equal(command.options.timeout, 5000);
    assert.equal(command.options.processGroup, true);
    assert.deepEqual(command.options.policy, { allow: ['/usr/bin/uname'], envPass: 'none' });
  });

  test('a bad config file or flag value is a usage error', () => {
    const bad = files.path('bad.json');
    writeFileSync(bad, JSON.stringify({ 'no-such-option': 1 }));
    assert.throws(() => parseServeArgs(['--config', bad, 's']), /no-such-option/);
    writeFileSync(bad, '[1]');
    assert.throws(() => parseServeArgs(['--config', bad, 's']), /JSON object/);
    assert.throws(
      () => parseServeArgs(['--config', files.path('missing.json'), 's']),
      /cannot read/,
    );
    assert.throws(() => parseServeArgs(['--env-set', 'novalue', 's']), /NAME=VALUE/);
  });
});

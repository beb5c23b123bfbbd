/**
 * The protocol extension against a real daemon on a real socket, through the raw client
 * (test/helpers/raw-client.ts, written from the README's grammar): each per-run option is
 * honoured or refused with a reply that says why, signals reach the program, and every
 * cause that ends a run is reported as that cause — on the wire, and in the audit log for
 * the one cause no client is left to hear (a hang-up).
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { reaperAvailable } from '../../src/channel/contain.js';
import { spawnBackendInUse } from '../../src/channel/local.js';
import { startDaemon, type TestDaemon, testDaemonsContain } from '../helpers/daemon.js';
import { childrenOf, tempDir, waitUntil } from '../helpers/process.js';
import {
  args,
  extendedRequest,
  ns,
  type Pair,
  RawClient,
  type Reply,
} from '../helpers/raw-client.js';

const IGNORE_TERM = new URL('../fixtures/ignore-term.sh', import.meta.url).pathname;

let daemon: TestDaemon;
const files = tempDir('procsock-extension-');
before(async () => {
  daemon = await startDaemon({ timeout: 60_000, killTimeout: 60_000 });
});
after(async () => {
  await daemon.close();
  files.cleanup();
});

function exchange(bytes: Buffer, path = daemon.path): Promise<Reply> {
  return RawClient.exchange(path, bytes);
}

/** The pairs after the hello, with `usage` reduced to its keys (values vary). */
function shape(reply: Reply): Pair[] {
  assert.deepEqual(reply.pairs[0], ['procsock', '1'], 'the hello comes first');
  return reply.pairs
    .slice(1)
    .map(
      ([type, data]): Pair => (type === 'usage' ? [type, data.replace(/=\d+/g, '')] : [type, data]),
    );
}

/**
 * The usage keys of a run of a daemon with default options. Contained (where the reaper is
 * built): the reaper's wait4 of the whole tree, and how many descendants it stopped.
 * Uncontained: the native spawn reaps with wait4, so CPU times (its maxRSS would include
 * this process's, so none); child_process's waitpid gives nothing.
 */
const USAGE_OF_A_RUN = testDaemonsContain()
  ? 'userCPUTime systemCPUTime maxRSS wallTime descendantsStopped'
  : spawnBackendInUse() === 'native'
    ? 'userCPUTime systemCPUTime wallTime'
    : 'wallTime';

function reasonOf(reply: Reply): string | undefined {
  return reply.pairs.find(([type]) => type === 'reason')?.[1];
}

test('cwd and env: pwd prints /usr and $FOO is bar, as locally', async () => {
  const reply = await exchange(
    extendedRequest([
      ...args(['sh', '-c', 'pwd; echo $FOO']),
      ['cwd', '/usr'],
      ['env-mode', 'merge'],
      ['env', 'FOO=bar'],
    ]),
  );
  // Two writes of sh's: the output may come as one pair or two.
  assert.equal(reply.stdout, '/usr\nbar\n');
  assert.deepEqual(shape(reply).slice(-3), [
    ['reason', 'exit'],
    ['usage', USAGE_OF_A_RUN],
    ['exitcode', '0'],
  ]);
});

test('env-mode replace: the client variables are the whole environment', async () => {
  process.env.PROCSOCK_TEST_DAEMON_ONLY = 'daemon';
  try {
    const replaced = await exchange(
      extendedRequest([...args(['/usr/bin/env']), ['env-mode', 'replace'], ['env', 'ONLY=me']]),
    );
    assert.equal(replaced.stdout, 'ONLY=me\n');
    const merged = await exchange(
      extendedRequest([...args(['/usr/bin/env']), ['env-mode', 'merge'], ['env', 'ONLY=me']]),
    );
    assert.match(merged.stdout, /^ONLY=me$/m);
    assert.match(merged.stdout, /^PROCSOCK_TEST_DAEMON_ONLY=daemon$/m);
  } finally {
    delete process.env.PROCSOCK_TEST_DAEMON_ONLY;
  }
});

test('stdin messages reach the program; the empty one closes its stdin', async () => {
  const client = await RawClient.connect(daemon.path);
  client.send(extendedRequest(args(['cat']), [['stdin', 'first ']]));
  await client.waitForStdout('first ');
  client.send(Buffer.concat([ns('stdin'), ns('second'), ns('stdin'), ns('')]));
  const reply = await client.reply();
  assert.equal(reply.stdout, 'first second');
  assert.deepEqual(reply.exit, ['exitcode', '0']);
  assert.equal(reasonOf(reply), 'exit');
});

test("signal INT reaches the program, which handles it; the run's reason is its exit", async () => {
  const client = await RawClient.connect(daemon.path);
  client.send(
    extendedRequest(
      args([
        'sh',
        '-c',
        "trap 'echo got INT; exit 7' INT; echo ready; while :; do sleep 0.05; done",
      ]),
      [],
    ),
  );
  await client.waitForStdout('ready\n');
  client.send(Buffer.concat([ns('signal'), ns('INT')]));
  const reply = await client.reply();
  assert.equal(reply.stdout, 'ready\ngot INT\n');
  assert.deepEqual(reply.exit, ['exitcode', '7']);
  assert.equal(reasonOf(reply), 'exit');
});

test('reason signal: a program killed by a signal it did not handle', async () => {
  const client = await RawClient.connect(daemon.path);
  client.send(extendedRequest(args(['sh', '-c', 'echo ready; exec sleep 30']), []));
  await client.waitForStdout('ready\n');
  client.send(Buffer.concat([ns('signal'), ns('USR1')]));
  const reply = await client.reply();
  assert.deepEqual(shape(reply).slice(1), [
    ['reason', 'signal'],
    ['usage', USAGE_OF_A_RUN],
    ['termsig', 'USR1'],
  ]);
});

test('an unknown signal name is a protocol violation: that connection only is closed', async () => {
  const client = await RawClient.connect(daemon.path);
  client.send(extendedRequest(args(['sh', '-c', 'echo ready; exec sleep 30']), []));
  await client.waitForStdout('ready\n');
  client.send(Buffer.concat([ns('signal'), ns('NOSUCHSIG')]));
  const reply = await client.reply();
  assert.equal(reply.exit, undefined);
  assert.equal(
    (await exchange(extendedRequest(args(['echo', 'still here'])))).stdout,
    'still here\n',
  );
});

test('reason timeout: the per-run timeout stops the program (TERM)', async () => {
  const reply = await exchange(extendedRequest([...args(['sleep', '30']), ['timeout', '300']]));
  assert.deepEqual(shape(reply), [
    ['reason', 'timeout'],
    ['usage', USAGE_OF_A_RUN],
    ['termsig', 'TERM'],
  ]);
});

test('kill-timeout: KILL follows TERM after the run’s own grace, not the daemon’s minute', async () => {
  const record = files.path('kill-timeout.log');
  const reply = await exchange(
    extendedRequest([
      ...args(['sh', IGNORE_TERM, record]),
      ['timeout', '300'],
      ['kill-timeout', '300'],
    ]),
  );
  // A TERM that came before the fixture set its trap (a slow start) ends it at once; one it
  // caught is recorded by the trap, which sh runs only once its sleep returns — on a loaded
  // machine possibly after the KILL, 300 ms later (a KILL with no record). The daemon's own
  // minute would time the test out.
  const survivedTerm = existsSync(record) && /^TERM$/m.test(readFileSync(record, 'utf8'));
  if (survivedTerm) assert.deepEqual(reply.exit, ['termsig', 'KILL']);
  else assert.ok(reply.exit?.[0] === 'termsig' && /^(TERM|KILL)$/.test(reply.exit[1]));
  assert.equal(reasonOf(reply), 'timeout');
});

test('kill-group: the program leads a process group of its own', async () => {
  const script =
    'read -r _ _ _ _ pgid _ < /proc/$$/stat; [ "$pgid" = $$ ] && echo leader || echo member';
  const grouped = await exchange(
    extendedRequest([...args(['sh', '-c', script]), ['kill-group', '1']]),
  );
  assert.equal(grouped.stdout, 'leader\n');
  const plain = await exchange(extendedRequest(args(['sh', '-c', script])));
  assert.equal(plain.stdout, 'member\n');
});

test('reason output-limit: max-output stops the program at that many bytes', async () => {
  const reply = await exchange(
    extendedRequest([...args(['head', '-c', '100000', '/dev/zero']), ['max-output', '1000']]),
  );
  assert.equal(
    reply.pairs.filter(([type]) => type === 'stdout').reduce((n, [, d]) => n + d.length, 0),
    1000,
  );
  assert.match(
    reply.stderr,
    /procsock: output limit of 1000 bytes reached; the program was stopped/,
  );
  assert.equal(reasonOf(reply), 'output-limit');
});

test('reason spawn-failure: no such program, and no such cwd', async () => {
  const missing = await exchange(extendedRequest(args(['procsock-no-such-program-16'])));
  assert.deepEqual(shape(missing), [
    ['stderr', 'procsock: procsock-no-such-program-16: command not found\n'],
    ['reason', 'spawn-failure'],
    // It never ran: no usage, as for a local run (and as for the missing cwd below).
    ['usage', ''],
    ['exitcode', '127'],
  ]);
  const noCwd = await exchange(
    extendedRequest([...args(['pwd']), ['cwd', '/procsock/no/such/dir']]),
  );
  assert.deepEqual(shape(noCwd), [
    ['stderr', 'procsock: cwd /procsock/no/such/dir: no such directory\n'],
    ['reason', 'spawn-failure'],
    ['usage', ''],
    ['exitcode', '126'],
  ]);
});

test('reason unsupported: fields of a later version are named in the refusal', async () => {
  const reply = await exchange(
    extendedRequest([...args(['cat']), ['x-later', '1'], ['x-later-too', '24']]),
  );
  assert.deepEqual(shape(reply), [
    [
      'stderr',
      "procsock: this daemon does not support 'x-later', 'x-later-too' (protocol extension version 1)\n",
    ],
    ['refused', 'x-later'],
    ['reason', 'unsupported'],
    ['usage', ''],
    ['exitcode', '126'],
  ]);
});

test('a timeout or kill-timeout beyond the daemon’s own is refused, never shortened', async () => {
  const short = await startDaemon({ timeout: 5000, killTimeout: 1000 });
  try {
    const long = await exchange(
      extendedRequest([...args(['true']), ['timeout', '5001']]),
      short.path,
    );
    assert.equal(
      long.stderr,
      "procsock: timeout 5001 ms is longer than this daemon's deadline (5000 ms)\n",
    );
    assert.equal(reasonOf(long), 'policy-refused');
    assert.ok(long.pairs.some(([type, data]) => type === 'refused' && data === 'timeout'));
    assert.deepEqual(long.exit, ['exitcode', '126']);
    const grace = await exchange(
      extendedRequest([...args(['true']), ['kill-timeout', '1001']]),
      short.path,
    );
    assert.equal(reasonOf(grace), 'policy-refused');
    const ok = await exchange(
      extendedRequest([...args(['true']), ['timeout', '5000']]),
      short.path,
    );
    assert.equal(reasonOf(ok), 'exit');
  } finally {
    await short.close();
  }
});

test('reason deadline: the daemon’s -t stops an extended run too', async () => {
  const short = await startDaemon({ timeout: 400, killTimeout: 1000 });
  try {
    const reply = await exchange(extendedRequest(args(['sleep', '30'])), short.path);
    assert.deepEqual(shape(reply), [
      ['reason', 'deadline'],
      ['usage', USAGE_OF_A_RUN],
      ['termsig', 'TERM'],
    ]);
  } finally {
    await short.close();
  }
});

test('reason shutdown: a daemon shutting down reports it to its extended clients', async () => {
  const doomed = await startDaemon({ timeout: 60_000, killTimeout: 1000 });
  const client = await RawClient.connect(doomed.path);
  client.send(extendedRequest(args(['sh', '-c', 'echo ready; exec sleep 30'])));
  await client.waitForStdout('ready\n');
  const closing = doomed.close();
  const reply = await client.reply();
  await closing;
  assert.deepEqual(shape(reply).slice(1), [
    ['reason', 'shutdown'],
    ['usage', USAGE_OF_A_RUN],
    ['termsig', 'TERM'],
  ]);
});

test('a policy that restricts anything refuses client env and cwd by default, clearly', async () => {
  const auditFile = files.path('restricted.jsonl');
  const restricted = await startDaemon({
    policy: { allow: ['/usr/bin/sh', '/usr/bin/env', '/usr/bin/pwd'], audit: auditFile },
  });
  try {
    const env = await exchange(
      extendedRequest([
        ...args(['sh', '-c', 'echo $FOO']),
        ['env-mode', 'merge'],
        ['env', 'FOO=bar'],
      ]),
      restricted.path,
    );
    assert.deepEqual(shape(env), [
      [
        'stderr',
        'procsock: env: clients may not set FOO on this daemon (its operator can allow it: procsock serve --client-env NAME,…)\n',
      ],
      ['refused', 'env'],
      ['reason', 'policy-refused'],
      ['usage', ''],
      ['exitcode', '126'],
    ]);
    const cwd = await exchange(
      extendedRequest([...args(['pwd']), ['cwd', '/usr']]),
      restricted.path,
    );
    assert.equal(
      cwd.stderr,
      'procsock: cwd /usr: clients may not choose the working directory (its operator can allow it: procsock serve --client-cwd DIR,…)\n',
    );
    assert.equal(reasonOf(cwd), 'policy-refused');
    assert.ok(cwd.pairs.some(([type, data]) => type === 'refused' && data === 'cwd'));
    const program = await exchange(extendedRequest(args(['cat'])), restricted.path);
    assert.equal(
      program.stderr,
      'procsock: cat: not allowed by the daemon policy (its operator can allow it: procsock serve --allow PATH)\n',
    );
    assert.equal(reasonOf(program), 'policy-refused');
    assert.ok(!program.pairs.some(([type]) => type === 'refused'), 'the program is no option');
  } finally {
    await restricted.close();
  }
  const records = readFileSync(auditFile, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
  assert.deepEqual(
    records.map((record) => record.reason),
    ['policy-refused', 'policy-refused', 'policy-refused'],
  );
});

test('clientEnv and clientCwd lists open exactly what they name', async () => {
  const cwdRoot = files.path('allowed');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(`${cwdRoot}/sub`, { recursive: true });
  const opened = await startDaemon({
    policy: { allow: ['/usr/bin/sh'], clientEnv: ['FOO'], clientCwd: [cwdRoot] },
  });
  try {
    const ok = await exchange(
      extendedRequest([
        ...args(['sh', '-c', 'pwd; echo $FOO']),
        ['cwd', `${cwdRoot}/sub`],
        ['env-mode', 'merge'],
        ['env', 'FOO=bar'],
      ]),
      opened.path,
    );
    assert.equal(ok.stdout, `${cwdRoot}/sub\nbar\n`);
    const other = await exchange(
      extendedRequest([
        ...args(['sh', '-c', 'true']),
        ['env', 'FOO=1'],
        ['env', 'LD_PRELOAD=/x.so'],
      ]),
      opened.path,
    );
    assert.equal(
      other.stderr,
      'procsock: env: clients may not set LD_PRELOAD on this daemon (its operator can allow it: procsock serve --client-env NAME,…)\n',
    );
    const outside = await exchange(
      extendedRequest([...args(['sh', '-c', 'true']), ['cwd', '/tmp']]),
      opened.path,
    );
    assert.equal(
      outside.stderr,
      'procsock: cwd /tmp: outside the directories clients may choose (procsock serve --client-cwd names them)\n',
    );
  } finally {
    await opened.close();
  }
});

test('reason stdin-limit and hangup (the audit log hears the hang-up: no client is left to)', async () => {
  const auditFile = files.path('causes.jsonl');
  const audited = await startDaemon({
    timeout: 60_000,
    killTimeout: 1000,
    policy: { maxStdinBytes: 4, audit: auditFile },
  });
  try {
    const stdin = await exchange(
      extendedRequest(args(['cat']), [['stdin', 'too much']]),
      audited.path,
    );
    assert.equal(reasonOf(stdin), 'stdin-limit');
    const client = await RawClient.connect(audited.path);
    client.send(extendedRequest(args(['sh', '-c', 'echo ready; exec sleep 30']), []));
    await client.waitForStdout('ready\n');
    client.destroy();
    await waitUntil(
      () => readFileSync(auditFile, 'utf8').trim().split('\n').length === 2,
      'the hang-up is audited',
    );
  } finally {
    await audited.close();
  }
  const records = readFileSync(auditFile, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
  assert.deepEqual(
    records.map((record) => record.reason),
    ['stdin-limit', 'hangup'],
  );
  assert.equal(childrenOf().filter((child) => child.command === 'sleep').length, 0);
});

test('malformed extended input closes that connection only, after the hello', async () => {
  for (const bytes of [
    Buffer.concat([ns('1;procsock/1'), ns('garbage')]),
    Buffer.concat([ns('1;procsock/1'), ns(''), ns('arg'), Buffer.from('99999999999:')]),
    Buffer.concat([ns('1;procsock/1'), ns(''), ns('')]),
  ]) {
    const reply = await exchange(bytes);
    assert.deepEqual(reply.pairs, [['procsock', '1']]);
  }
  assert.equal((await exchange(extendedRequest(args(['echo', 'fine'])))).stdout, 'fine\n');
});

test('a daemon with the extension off answers its opening as sockexec would: closed', async () => {
  const plain = await startDaemon({ extension: false });
  try {
    const reply = await exchange(extendedRequest(args(['echo', 'no'])), plain.path);
    assert.deepEqual(reply.pairs, []);
    assert.equal((await exchange(Buffer.from('1:2,4:echo,3:yes,0:,'), plain.path)).stdout, 'yes\n');
  } finally {
    await plain.close();
  }
});

test('procsock serve --client-env / --client-cwd / --client-no-contain set the policy knobs', async () => {
  const { parseServeArgs } = await import('../../src/cli/serve.js');
  const command = parseServeArgs([
    '--client-env',
    'FOO,BAR',
    '--client-cwd',
    'none',
    '/tmp/x.sock',
  ]);
  assert.equal(command.kind, 'serve');
  if (command.kind !== 'serve') return;
  assert.deepEqual(command.options.policy?.clientEnv, ['FOO', 'BAR']);
  assert.equal(command.options.policy?.clientCwd, 'none');
  assert.equal(command.options.extension, undefined, 'the default: spoken');
  assert.equal(command.options.policy?.clientUncontained, undefined, 'the default: refused');
  const off = parseServeArgs(['--no-extension', '/tmp/x.sock']);
  assert.equal(off.kind === 'serve' && off.options.extension, false);
  const lenient = parseServeArgs(['--client-no-contain', '/tmp/x.sock']);
  assert.equal(lenient.kind === 'serve' && lenient.options.policy?.clientUncontained, true);
});

/** The value of one `usage` key, or undefined when the daemon sent none. */
function usageOf(reply: Reply, key: string): string | undefined {
  const usage = reply.pairs.find(([type]) => type === 'usage')?.[1] ?? '';
  return new RegExp(`(?:^| )${key}=(\\d+)`).exec(usage)?.[1];
}

test('contain 1 on a daemon started uncontained: every descendant stops with the run', {
  skip: !reaperAvailable() && 'procsock_reaper is not built',
}, async () => {
  const loose = await startDaemon({ contain: false, killTimeout: 2000 });
  try {
    const script = 'sleep 300 & echo $PPID';
    const contained = await exchange(
      extendedRequest([...args(['sh', '-c', script]), ['contain', '1'], ['exit-grace', '0']]),
      loose.path,
    );
    assert.equal(reasonOf(contained), 'exit');
    assert.equal(usageOf(contained, 'descendantsStopped'), '1');
    // Its parent is the reaper, not the daemon (this process).
    assert.notEqual(contained.stdout, `${process.pid}\n`);
    const plain = await exchange(extendedRequest(args(['sh', '-c', 'echo $PPID'])), loose.path);
    assert.equal(plain.stdout, `${process.pid}\n`);
    assert.equal(usageOf(plain, 'descendantsStopped'), undefined);
  } finally {
    await loose.close();
  }
});

test('contain 0 on a containing daemon is refused by its policy unless clientUncontained', {
  skip: !reaperAvailable() && 'procsock_reaper is not built',
}, async () => {
  const marker = files.path('uncontained-must-not-exist');
  const containing = await startDaemon({ contain: true });
  const refused = await exchange(
    extendedRequest([...args(['touch', marker]), ['contain', '0']]),
    containing.path,
  ).finally(() => containing.close());
  assert.equal(
    refused.stderr,
    'procsock: contain 0: this daemon contains every run, and clients may not opt out (procsock serve --client-no-contain allows it)\n',
  );
  assert.equal(reasonOf(refused), 'policy-refused');
  assert.ok(refused.pairs.some(([type, data]) => type === 'refused' && data === 'contain'));
  assert.deepEqual(refused.exit, ['exitcode', '126']);
  assert.throws(() => readFileSync(marker), { code: 'ENOENT' }, 'nothing ran');
  const lenient = await startDaemon({ contain: true, policy: { clientUncontained: true } });
  try {
    const loose = await exchange(
      extendedRequest([...args(['sh', '-c', 'echo $PPID']), ['contain', '0']]),
      lenient.path,
    );
    assert.equal(loose.stdout, `${process.pid}\n`, 'the daemon is its parent: no reaper');
    assert.equal(usageOf(loose, 'descendantsStopped'), undefined);
    const contained = await exchange(
      extendedRequest(args(['sh', '-c', 'echo $PPID'])),
      lenient.path,
    );
    assert.notEqual(contained.stdout, `${process.pid}\n`, 'the default stays contained');
  } finally {
    await lenient.close();
  }
});

test('contain 1 where the run cannot be contained (policy rlimits) is refused as unsupported', {
  skip: spawnBackendInUse() !== 'native' && 'policy rlimits need the native backend',
}, async () => {
  const limited = await startDaemon({ policy: { rlimits: { openFiles: 77 } } });
  const marker = files.path('rlimited-must-not-exist');
  try {
    const reply = await exchange(
      extendedRequest([...args(['touch', marker]), ['contain', '1']]),
      limited.path,
    );
    assert.equal(reasonOf(reply), 'unsupported');
    assert.ok(reply.pairs.some(([type, data]) => type === 'refused' && data === 'contain'));
    assert.match(reply.stderr, /^procsock: contain: this daemon cannot contain this run: /);
    assert.deepEqual(reply.exit, ['exitcode', '126']);
    assert.throws(() => readFileSync(marker), { code: 'ENOENT' }, 'nothing ran');
    // contain 0 is what the daemon does for such a run anyway: accepted.
    const loose = await exchange(
      extendedRequest([...args(['sh', '-c', 'ulimit -n']), ['contain', '0']]),
      limited.path,
    );
    assert.equal(loose.stdout, '77\n');
  } finally {
    await limited.close();
  }
});

test('exit-grace: the daemon ends a run whose descendant holds its pipes after that grace', {
  skip: !reaperAvailable() && 'procsock_reaper is not built',
}, async () => {
  const logged = await startDaemon({ contain: true, collectLog: true, killTimeout: 2000 });
  const fifo = files.path('never-written');
  try {
    execFileSync('mkfifo', [fifo]);
    // The descendant would print 'late' only once the fifo is written, which it never is.
    const script = `(read x < ${fifo}; echo late) & echo early`;
    const reply = await exchange(
      extendedRequest([...args(['sh', '-c', script]), ['exit-grace', '0']]),
      logged.path,
    );
    assert.equal(reply.stdout, 'early\n');
    assert.equal(reasonOf(reply), 'exit');
    assert.equal(usageOf(reply, 'descendantsStopped'), '1');
    assert.ok(
      logged.log.some((line) => line.includes('exit grace 0 ms')),
      'the daemon took the client exit grace',
    );
    // Bounded by the daemon's kill timeout (2000 ms here).
    const long = await exchange(
      extendedRequest([...args(['true']), ['exit-grace', '2001']]),
      logged.path,
    );
    assert.equal(
      long.stderr,
      "procsock: exit-grace 2001 ms is longer than this daemon's kill timeout (2000 ms), its bound\n",
    );
    assert.equal(reasonOf(long), 'policy-refused');
    assert.ok(long.pairs.some(([type, data]) => type === 'refused' && data === 'exit-grace'));
    const most = await exchange(
      extendedRequest([...args(['true']), ['exit-grace', '2000']]),
      logged.path,
    );
    assert.equal(reasonOf(most), 'exit');
  } finally {
    await logged.close();
  }
});

test('contain and exit-grace are checked for form: a bad value closes that connection', async () => {
  for (const field of [
    ['contain', 'yes'],
    ['exit-grace', '-1'],
    ['exit-grace', '1.5'],
  ] as Pair[]) {
    const reply = await exchange(extendedRequest([...args(['true']), field]));
    assert.deepEqual(
      reply.pairs,
      [['procsock', '1']],
      `${field.join(' ')}: closed after the hello`,
    );
  }
});

test("stop: the client's own cause — TERM, its later output dropped, stopping, then the end with that reason", async () => {
  const auditFile = files.path('stops.jsonl');
  const audited = await startDaemon({
    timeout: 60_000,
    killTimeout: 60_000,
    collectLog: true,
    policy: { audit: auditFile },
  });
  try {
    const client = await RawClient.connect(audited.path);
    client.send(
      extendedRequest(
        [
          ...args([
            'sh',
            '-c',
            "trap 'echo after TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
          ]),
          ['kill-timeout', '2500'],
        ],
        [],
      ),
    );
    await client.waitForStdout('ready\n');
    // Twice: only the first is answered (a client repeating it gets no growing reply).
    client.send(Buffer.concat([ns('stop'), ns('abort'), ns('stop'), ns('timeout')]));
    const reply = await client.reply();
    // What the program printed after the stop is dropped: the client gave up on it.
    assert.equal(reply.stdout, 'ready\n');
    assert.deepEqual(shape(reply).slice(1), [
      // KILL would follow within the run's kill timeout.
      ['stopping', '2500'],
      ['reason', 'abort'],
      ['usage', USAGE_OF_A_RUN],
      ['exitcode', '3'],
    ]);
    assert.ok(
      audited.log.some((line) => /the client stopped the run \(abort\): sending TERM/.test(line)),
      audited.log.join('\n'),
    );
  } finally {
    await audited.close();
  }
  const [record] = readFileSync(auditFile, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
  assert.deepEqual([record.reason, record.exitCode], ['abort', 3]);
});

test('stop of a program that ignores TERM: KILL after the kill timeout, every cause its own reason', async () => {
  const causes = ['timeout', 'idle-timeout', 'abort', 'output-limit'];
  await Promise.all(
    causes.map(async (cause) => {
      const record = files.path(`stop-${cause}.log`);
      const client = await RawClient.connect(daemon.path);
      client.send(
        extendedRequest([...args(['sh', IGNORE_TERM, record]), ['kill-timeout', '300']], []),
      );
      // The fixture prints its pid first: it runs, its TERM trap is set.
      await client.waitForStdout('\n');
      client.send(Buffer.concat([ns('stop'), ns(cause)]));
      const reply = await client.reply();
      assert.deepEqual(shape(reply).slice(-4), [
        ['stopping', '300'],
        ['reason', cause],
        ['usage', USAGE_OF_A_RUN],
        ['termsig', 'KILL'],
      ]);
      assert.match(readFileSync(record, 'utf8'), /^TERM$/m, 'TERM came first');
    }),
  );
});

test('stop after a deadline already stopped the run: the first cause stays the reason', async () => {
  const record = files.path('stop-after-timeout.log');
  const client = await RawClient.connect(daemon.path);
  client.send(
    extendedRequest(
      [...args(['sh', IGNORE_TERM, record]), ['timeout', '100'], ['kill-timeout', '1000']],
      [],
    ),
  );
  await waitUntil(
    () => existsSync(record) && readFileSync(record, 'utf8').includes('TERM'),
    "the run timeout's TERM reached the program",
  );
  client.send(Buffer.concat([ns('stop'), ns('abort')]));
  const reply = await client.reply();
  // Still answered, so the client knows how long the KILL can take.
  assert.deepEqual(shape(reply).slice(-4), [
    ['stopping', '1000'],
    ['reason', 'timeout'],
    ['usage', USAGE_OF_A_RUN],
    ['termsig', 'KILL'],
  ]);
});

test('stop on a contained run stops its descendants too, and counts them', {
  skip: reaperAvailable() ? false : 'the reaper is not built',
}, async () => {
  const contained = await startDaemon({ timeout: 60_000, killTimeout: 1000, contain: true });
  try {
    const client = await RawClient.connect(contained.path);
    client.send(extendedRequest(args(['sh', '-c', 'sleep 300 & echo ready; wait']), []));
    await client.waitForStdout('ready\n');
    client.send(Buffer.concat([ns('stop'), ns('idle-timeout')]));
    const reply = await client.reply();
    assert.equal(reasonOf(reply), 'idle-timeout');
    assert.deepEqual(reply.exit, ['termsig', 'TERM']);
    assert.match(reply.pairs.find(([type]) => type === 'usage')![1], /descendantsStopped=1/);
  } finally {
    await contained.close();
  }
  assert.equal(childrenOf().filter((child) => child.command === 'sleep').length, 0);
});

test('a stop with a cause that is not a client cause is a protocol violation: closed, program stopped', async () => {
  const client = await RawClient.connect(daemon.path);
  client.send(extendedRequest(args(['sh', '-c', 'echo ready; exec sleep 30']), []));
  await client.waitForStdout('ready\n');
  client.send(Buffer.concat([ns('stop'), ns('deadline')]));
  const reply = await client.reply();
  assert.equal(reply.exit, undefined);
  await waitUntil(
    () => childrenOf().filter((child) => child.command === 'sleep').length === 0,
    'the program is stopped with the connection',
  );
});

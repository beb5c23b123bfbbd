/**
 * Against the C sockexec 3.1.1 itself, when a binary is given:
 *
 *   PROCSOCK_C_SOCKEXEC=/path/to/sockexec node scripts/run-tests.mjs test/server/c-sockexec.test.ts
 *
 * Plain requests work through procsock's client; an extended request (the protocol
 * extension's opening) fails at once — the C daemon closes the connection without a reply
 * and without running anything — and procsock's client says the daemon does not speak the
 * extension. The C daemon runs with a one-minute deadline, so a client that waited for it
 * instead of failing fast would exceed this file's test timeout. Skipped, saying why, when
 * no binary is given (sockexec is not packaged; README "Protocol extension" says how to
 * build one).
 */
import { strict as assert } from 'node:assert';
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { daemonSpeaksExtension } from '../../src/channel/socket.js';
import { connect, type ProcsockError, run, UnsupportedOptionError } from '../../src/index.js';
import { isListening } from '../helpers/daemon.js';
import { tempDir, waitUntil } from '../helpers/process.js';
import { args, extendedRequest, RawClient, request } from '../helpers/raw-client.js';

const BINARY = process.env.PROCSOCK_C_SOCKEXEC;
const skip = (() => {
  if (!BINARY) return 'PROCSOCK_C_SOCKEXEC is not set (path of a C sockexec binary)';
  try {
    accessSync(BINARY, constants.X_OK);
  } catch {
    return `PROCSOCK_C_SOCKEXEC=${BINARY} is not an executable file`;
  }
  return false;
})();
if (skip) console.log(`# skipping the C sockexec tests: ${skip}`);

const dir = tempDir('procsock-c-sockexec-');
const path = dir.path('sockexec.sock');
let daemon: ChildProcess | null = null;

before(async () => {
  if (skip) return;
  daemon = spawn(BINARY!, ['-t', '60', path], { stdio: ['ignore', 'ignore', 'pipe'] });
  daemon.stderr!.resume();
  await waitUntil(() => isListening(path), 'the C sockexec listens');
});

after(async () => {
  if (daemon && daemon.exitCode === null) {
    const exited = new Promise((resolve) => daemon!.once('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
  }
  dir.cleanup();
});

const TEST = { skip, timeout: 20_000 };

test('plain requests work: the raw client and procsock run()', TEST, async () => {
  const reply = await RawClient.exchange(path, request(['echo', 'hello']));
  // The C daemon may send the exit before the output (procsock's "exit is last" fixes that).
  assert.equal(reply.stdout, 'hello\n');
  assert.ok(reply.pairs.some(([type, data]) => type === 'exitcode' && data === '0'));
  const result = await run(['sh', '-c', 'echo out; exit 3'], { socket: path });
  assert.equal(result.stdout, 'out\n');
  assert.equal(result.exitCode, 3);
});

test('an extended request: closed at once, no reply, nothing run', TEST, async () => {
  const marker = dir.path('must-not-exist');
  const reply = await RawClient.exchange(
    path,
    extendedRequest([...args(['touch', marker]), ['cwd', '/']]),
  );
  assert.deepEqual(reply.pairs, []);
  assert.equal(reply.trailing.length, 0);
  assert.equal(existsSync(marker), false, 'the C daemon ran nothing');
  // It is still serving.
  assert.equal((await RawClient.exchange(path, request(['echo', 'alive']))).stdout, 'alive\n');
});

test(
  'procsock client: an option that needs the extension fails fast with a typed error',
  TEST,
  async () => {
    const marker = dir.path('client-must-not-exist');
    await assert.rejects(run(['touch', marker], { socket: path, cwd: '/' }), (error: Error) => {
      assert.ok(error instanceof UnsupportedOptionError, String(error));
      assert.equal(error.option, 'cwd');
      assert.match(error.message, /does not speak the procsock protocol extension/);
      return true;
    });
    assert.equal(existsSync(marker), false, 'the C daemon ran nothing');
    // ez-mode asking for the extension (for reason and usage) without any option needing it.
    await assert.rejects(run(['touch', marker], { socket: path, protocol: 'procsock' }), {
      code: 'PROCSOCK_UNSUPPORTED',
      option: 'protocol',
    });
    assert.equal(existsSync(marker), false, 'the C daemon ran nothing');
    const session = await connect(path, { protocol: 'procsock' });
    session.sendArgs(['cat']);
    await assert.rejects(session.wait(), { code: 'PROCSOCK_UNSUPPORTED', option: 'protocol' });
    await session.close();
  },
);

test(
  'a call that only wants the extension (a limit of its own) runs plain there, once',
  TEST,
  async () => {
    const marker = dir.path('ran-once');
    const result = await run(['sh', '-c', `echo ran >> ${marker}; cat`], {
      socket: path,
      timeout: 30_000,
      stdin: 'replayed stdin',
    });
    assert.deepEqual([result.stdout, result.exitCode], ['replayed stdin', 0]);
    assert.equal(
      readFileSync(marker, 'utf8'),
      'ran\n',
      'the C daemon turned the opening down, then ran it once',
    );
    assert.equal(daemonSpeaksExtension(path), false);
    // Its stop can only hang up: the result has the cause, no status, no usage.
    const stopped = await run(['sleep', '30'], { socket: path, timeout: 200 }).then(
      () => assert.fail('the call should time out'),
      (error: ProcsockError) => error.result!,
    );
    assert.deepEqual(
      [stopped.reason, stopped.exitCode, stopped.termSignal, stopped.usage],
      ['timeout', null, null, null],
    );
  },
);

/**
 * Runs every example in examples/ as a user would (`node --import tsx examples/NAME.ts`),
 * locally and against a real daemon (PROCSOCK_SOCKET), and checks what it prints.
 *
 * Adding an example: add a row to EXPECTED with what it must print (a string for exact
 * output, a RegExp otherwise), or `skip` with the reason (e.g. a server that never exits).
 * An example without a row is still run, and must exit 0 within the time limit.
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { startDaemon, type TestDaemon } from './helpers/daemon.js';
import { tempDir } from './helpers/process.js';

const run = promisify(execFile);

interface Expectation {
  /** The example's whole stdout (string), or a pattern it must match. */
  stdout?: string | RegExp;
  skip?: string;
}

const EXPECTED: Record<string, Expectation> = {
  'run-program.ts': { stdout: 'Linux\n' },
  'argv-beforehand.ts': { stdout: /^Linux \S+ .*\n$/ },
  'stdin-beforehand.ts': { stdout: 'this is neat!\n' },
  'explicit-options.ts': {
    stdout:
      /^fun!\n\{\n {2}argv: \[ 'cat' \],\n {2}stdout: '',\n {2}stderr: '',\n {2}unknown: '',\n {2}exitCode: 0,\n {2}termSignal: null,\n {2}reason: 'exit',\n {2}usage: (null|\{[^}]*\}),\n {2}descendantsStopped: null\n\}\nto stdout\nerror: to stderr\n$/,
  },
  'stdout-callback.ts': {
    stdout:
      /^\[\+\d+ ms\] line 1\n\[\+\d+ ms\] line 2\n\[\+\d+ ms\] line 3\n\[\+\d+ ms\] line 4\n\[\+\d+ ms\] line 5\nexit 0\n$/,
  },
  'timeout-nonfatal.ts': {
    stdout: 'fatal: idleTimeout after 100 ms\nfinally\nfinally\nfatal: timeout after 300 ms\n',
  },
  'bash-c.ts': { stdout: `${process.env.PATH}\n` },
  'bash-script.ts': {
    stdout:
      "hello from bash\ntrace: + greeting=hello\ntrace: + echo 'hello from bash'\ntrace: + exit 0\nexit 0\n",
  },
  'cat-conversation.ts': {
    stdout:
      'Received stdout data: hello there\nReceived stdout data: hey this cat process is still running\nReceived exit code: 0\nclosed\n',
  },
  // stdout and stderr are separate pipes: their two labelled lines may come in either order.
  'shell.ts': {
    stdout:
      /^hello from \/tmp \(exit 0\)\n1\nprevious: 1\n\d+ entries in \/, stderr: to stderr\n(out: out\nerr: err|err: err\nout: out)\n1 2 3\n$/,
  },
  'http-server.ts': { skip: 'a server that never exits; test/examples/http-server.test.ts' },
};

const examplesDir = join(import.meta.dirname, '..', 'examples');
const examples = readdirSync(examplesDir)
  .filter((name) => name.endsWith('.ts'))
  .sort();

const emptyHome = tempDir('procsock-examples-home-');
after(() => emptyHome.cleanup());

describe('examples', () => {
  let daemon: TestDaemon;
  before(async () => {
    daemon = await startDaemon();
  });
  after(() => daemon.close());

  test('every lua-resty-exec example has a TypeScript equivalent here', () => {
    for (const name of Object.keys(EXPECTED)) assert.ok(examples.includes(name), name);
  });

  for (const name of examples) {
    const expected = EXPECTED[name] ?? {};
    for (const where of ['local', 'daemon']) {
      test(`${name} (${where})`, { skip: expected.skip }, async () => {
        // bash started with a socket as stdin (child_process pipes are socketpairs) reads
        // ~/.bashrc, which may change PATH: an empty HOME keeps the machine's rc files out.
        const env: NodeJS.ProcessEnv = { ...process.env, HOME: emptyHome.dir };
        delete env.PROCSOCK_SOCKET;
        if (where === 'daemon') env.PROCSOCK_SOCKET = daemon.path;
        const { stdout } = await run(
          process.execPath,
          ['--import', 'tsx', join(examplesDir, name)],
          {
            env,
            timeout: 30_000,
          },
        );
        if (typeof expected.stdout === 'string') assert.equal(stdout, expected.stdout);
        else if (expected.stdout) assert.match(stdout, expected.stdout);
      });
    }
  }
});

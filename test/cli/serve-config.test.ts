/**
 * `procsock serve --config FILE`: a mistake in the file is reported with the file and the
 * key (not as an unknown command-line flag), and a bad value names the file it came from.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { parseServeArgs } from '../../src/cli/serve.js';
import { runCli } from '../helpers/daemon.js';
import { tempDir } from '../helpers/process.js';

const dir = tempDir('procsock-config-');
after(() => dir.cleanup());

function config(name: string, content: unknown): string {
  const file = dir.path(name);
  writeFileSync(file, JSON.stringify(content));
  return file;
}

function message(file: string): string {
  try {
    parseServeArgs(['--config', file, 's.sock']);
  } catch (error) {
    return (error as Error).message;
  }
  return 'no error';
}

describe('serve --config mistakes', () => {
  test('an unknown key names the file and the key, and a near option', () => {
    const file = config('procsock.json', { alow: ['/usr/bin/uname'] });
    assert.equal(message(file), `${file}: unknown key 'alow' (did you mean 'allow'?)`);
    const far = config('far.json', { 'no-such-option': 1 });
    assert.equal(message(far), `${far}: unknown key 'no-such-option'`);
    for (const key of ['config', 'help', 'version']) {
      assert.match(message(config(`${key}.json`, { [key]: true })), /unknown key/);
    }
  });

  test('a value of the wrong kind names the file and the key', () => {
    assert.match(
      message(config('flag.json', { 'kill-group': 'yes' })),
      /flag\.json: key 'kill-group' is a flag: true or false$/,
    );
    assert.match(
      message(config('list.json', { timeout: [1, 2] })),
      /list\.json: key 'timeout' takes one value, not a list$/,
    );
    assert.match(
      message(config('object.json', { cwd: { path: '/' } })),
      /object\.json: key 'cwd' needs a string or a number/,
    );
    assert.match(
      message(config('bad-seconds.json', { timeout: 'soon' })),
      /bad-seconds\.json: -t: expected seconds from 0 to 2147483 \(about 24 days: the longest timer\), got "soon"$/,
    );
  });

  test('a FIFO (or any file that is not a regular one) is refused, not read', () => {
    // Reading a FIFO nobody writes blocked the daemon's start for ever, SIGTERM unhandled.
    const fifo = dir.path('config.fifo');
    execFileSync('mkfifo', [fifo]);
    assert.throws(
      () => parseServeArgs(['--config', fifo, 's']),
      /--config: cannot read .*config\.fifo: not a regular file/,
    );
  });

  test('good files still work, and the command line overrides them', () => {
    const file = config('good.json', { allow: ['/usr/bin/uname'], 'kill-group': true, timeout: 5 });
    const command = parseServeArgs(['--config', file, '-t', '7', 's.sock']);
    assert.equal(command.kind, 'serve');
    if (command.kind !== 'serve') return;
    assert.equal(command.options.timeout, 7000);
    assert.equal(command.options.processGroup, true);
    assert.deepEqual(command.options.policy?.allow, ['/usr/bin/uname']);
  });

  test('from the command line: exit 100 and the one line', async () => {
    const file = config('procsock.json', { alow: [] });
    const child = runCli(['serve', '--config', file, dir.path('s.sock')]);
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
    child.stdout!.resume();
    const [code] = await new Promise<[number | null]>((resolve) =>
      child.on('close', (status) => resolve([status])),
    );
    assert.equal(code, 100);
    assert.match(
      stderr,
      new RegExp(
        `^procsock serve: ${file}: unknown key 'alow' \\(did you mean 'allow'\\?\\) \\(usage: procsock serve `,
      ),
    );
  });
});

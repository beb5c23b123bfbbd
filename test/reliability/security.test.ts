/**
 * Security properties proven from outside the daemon process:
 * - the socket is created with the requested mode and never wider, even for an instant:
 *   the system calls show the umask narrowed before bind(2), and no chmod of the path;
 * - request limits given as command-line flags are enforced by a daemon process.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { after, test } from 'node:test';
import { startDaemonProcess } from '../helpers/daemon.js';
import { childrenOf, tempDir, waitUntil } from '../helpers/process.js';
import { RawClient, request } from '../helpers/raw-client.js';

const tmp = tempDir('procsock-security-');
after(() => tmp.cleanup());

const hasStrace = spawnSync('strace', ['-V']).status === 0;

test('the socket never exists with wider permissions: umask before bind, no chmod', {
  skip: hasStrace ? false : 'strace is not installed (apt-get install strace)',
}, async () => {
  assert.ok(existsSync('dist/cli/main.js'), 'run `npm run build` first');
  for (const mode of ['600', '660', '777']) {
    const path = tmp.path(`mode-${mode}.sock`);
    const trace = tmp.path(`trace-${mode}.txt`);
    const daemon = spawn(
      'strace',
      [
        '-f',
        '-e',
        'trace=umask,bind,chmod,fchmod,fchmodat',
        '-o',
        trace,
        process.execPath,
        'dist/cli/main.js',
        'serve',
        '--allow-root',
        '-M',
        mode,
        path,
      ],
      { stdio: 'ignore' },
    );
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    await waitUntil(() => existsSync(path), 'the daemon listens');
    assert.equal((statSync(path).mode & 0o777).toString(8), mode);
    // strace does not pass SIGTERM on: signal the traced daemon; strace exits with it.
    const traced = childrenOf(daemon.pid!).find((child) => child.command === 'node');
    assert.ok(traced, 'the traced daemon process');
    process.kill(traced.pid, 'SIGTERM');
    await exited;

    const calls = readFileSync(trace, 'utf8').split('\n');
    const bindAt = calls.findIndex((line) => line.includes('bind(') && line.includes(path));
    assert.ok(bindAt > 0, `bind of ${path} traced`);
    // The last umask before bind(2) leaves exactly the requested bits.
    const umasks = calls.slice(0, bindAt).filter((line) => /\bumask\(/.test(line));
    const last = umasks.at(-1) ?? '';
    const set = Number.parseInt(/umask\((0?[0-7]+)\)/.exec(last)?.[1] ?? 'NaN', 8);
    assert.equal((~set & 0o777).toString(8), mode, `umask before bind: ${last}`);
    const chmods = calls.filter((line) => /chmod/.test(line) && line.includes(path));
    assert.deepEqual(chmods, [], 'the socket path is never chmod-ed');
  }
});

test('request limits given as flags are enforced; the daemon keeps serving', async () => {
  const daemon = await startDaemonProcess([
    '--max-args',
    '3',
    '--max-arg-length',
    '16',
    '--max-data-length',
    '8',
  ]);
  try {
    const cases: Buffer[] = [
      request(['echo', 'a', 'b', 'c']), // 4 arguments > 3
      request(['echo', 'x'.repeat(17)]), // one argument of 17 bytes > 16
      request(['cat'], ['123456789']), // a 9-byte stdin netstring > 8
    ];
    for (const bytes of cases) {
      const client = await RawClient.connect(daemon.path);
      client.send(bytes);
      const reply = await client.reply();
      assert.equal(reply.exit, undefined, 'a violating request gets no exit status');
      assert.ok(!reply.pairs.some(([type]) => type === 'stdout'), 'and no output');
    }
    const client = await RawClient.connect(daemon.path);
    client.send(request(['echo', 'x'.repeat(16)], ['12345678']));
    assert.deepEqual((await client.reply()).pairs, [
      ['stdout', `${'x'.repeat(16)}\n`],
      ['exitcode', '0'],
    ]);
  } finally {
    assert.equal(await daemon.stop(), 0);
  }
});

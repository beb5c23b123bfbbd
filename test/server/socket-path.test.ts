/**
 * SPEC §2 point 9 (safe socket path) and the socket's permissions (-M).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import {
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { after, test } from 'node:test';
import { SocketPathError } from '../../src/errors.js';
import { serve } from '../../src/server/index.js';
import { startDaemon } from '../helpers/daemon.js';
import { tempDir } from '../helpers/process.js';
import { RawClient, request } from '../helpers/raw-client.js';

const dir = tempDir('procsock-path-');
after(() => dir.cleanup());

/** A socket file nobody listens on: a process bound it and died without removing it. */
function makeStaleSocket(path: string): void {
  const result = spawnSync(process.execPath, [
    '-e',
    `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`,
  ]);
  assert.equal(result.signal, 'SIGKILL');
  assert.ok(lstatSync(path).isSocket());
}

async function assertServes(path: string): Promise<void> {
  const reply = await RawClient.exchange(path, request(['echo', 'ok']));
  assert.deepEqual(reply.pairs, [
    ['stdout', 'ok\n'],
    ['exitcode', '0'],
  ]);
}

/** Tests run as root in CI; say so explicitly, as a root deployment must. */
const AS_ROOT = { allowRoot: true };

test('a missing path is bound with mode 0660 by default, and removed on close', async () => {
  const path = dir.path('fresh.sock');
  const server = await serve({ policy: AS_ROOT, path });
  assert.equal(statSync(path).mode & 0o777, 0o660);
  await assertServes(path);
  await server.close();
  assert.throws(() => lstatSync(path), { code: 'ENOENT' });
});

test('the socket gets exactly the requested mode, narrower or wider than the umask allows', async () => {
  const umask = process.umask(0o022);
  process.umask(umask);
  for (const mode of [0o600, 0o666, 0o777, 0o640, 0o000]) {
    const path = dir.path(`mode-${mode.toString(8)}.sock`);
    const server = await serve({ policy: AS_ROOT, path, mode });
    try {
      assert.equal(statSync(path).mode & 0o7777, mode, `mode 0${mode.toString(8)}`);
    } finally {
      await server.close();
    }
  }
  // The process umask is left as it was.
  const umaskAfter = process.umask(0o022);
  process.umask(umaskAfter);
  assert.equal(umaskAfter, umask);
});

test('a stale socket file (nothing listening) is replaced', async () => {
  const path = dir.path('stale.sock');
  makeStaleSocket(path);
  const server = await serve({ policy: AS_ROOT, path });
  try {
    await assertServes(path);
  } finally {
    await server.close();
  }
});

test('a live daemon is refused, and keeps working', async () => {
  const live = await startDaemon();
  try {
    await assert.rejects(serve({ policy: AS_ROOT, path: live.path }), (error) => {
      assert.ok(error instanceof SocketPathError);
      assert.match(error.message, /another daemon is already listening/);
      return true;
    });
    await assertServes(live.path);
  } finally {
    await live.close();
  }
});

for (const contain of [true, false]) {
  test(`shutdown leaves a socket that replaced ours alone (${contain ? 'contained: served in JS' : 'uncontained: served natively'})`, async () => {
    // Ours was removed (by hand, a tmp cleaner) and another daemon bound the path since. Before,
    // the JS path's listener was libuv's, which unlinks its path by name at close: the other
    // daemon's live socket went with ours.
    const path = dir.path(`replaced-${contain}.sock`);
    const first = await serve({ policy: AS_ROOT, path, ...(contain ? {} : { contain: false }) });
    rmSync(path);
    const second = await serve({ policy: AS_ROOT, path, ...(contain ? {} : { contain: false }) });
    try {
      await first.close();
      assert.ok(lstatSync(path).isSocket(), 'the second daemon’s socket is still there');
      await assertServes(path);
    } finally {
      await second.close();
    }
    assert.throws(() => lstatSync(path), { code: 'ENOENT' }, 'removed by its own daemon');
  });
}

test('a regular file is never deleted', async () => {
  const path = dir.path('file.sock');
  writeFileSync(path, 'precious', { mode: 0o640 });
  await assert.rejects(serve({ policy: AS_ROOT, path }), (error) => {
    assert.ok(error instanceof SocketPathError);
    assert.match(error.message, /not a socket/);
    return true;
  });
  assert.equal(readFileSync(path, 'utf8'), 'precious');
  assert.equal(statSync(path).mode & 0o777, 0o640);
});

test('a directory is refused', async () => {
  const path = dir.path('dir.sock');
  mkdirSync(path);
  await assert.rejects(serve({ policy: AS_ROOT, path }), SocketPathError);
  assert.ok(statSync(path).isDirectory());
});

test('a symbolic link is refused and left alone, wherever it points', async () => {
  const stale = dir.path('target-stale.sock');
  makeStaleSocket(stale);
  for (const [name, target] of [
    ['link-to-stale.sock', stale],
    ['link-to-nothing.sock', dir.path('nothing-here')],
    ['link-to-file.sock', '/etc/hostname'],
  ] as const) {
    const path = dir.path(name);
    symlinkSync(target, path);
    await assert.rejects(serve({ policy: AS_ROOT, path }), (error) => {
      assert.ok(error instanceof SocketPathError);
      assert.match(error.message, /symbolic link/);
      return true;
    });
    assert.ok(lstatSync(path).isSymbolicLink());
    assert.equal(readlinkSync(path), target);
  }
  assert.ok(lstatSync(stale).isSocket(), 'the link target is untouched');
});

test('bad options are ArgumentErrors', async () => {
  await assert.rejects(serve({ policy: AS_ROOT, path: '' }), { code: 'PROCSOCK_ARGUMENT' });
  await assert.rejects(serve({ policy: AS_ROOT, path: dir.path('x.sock'), mode: 0o1777 }), {
    code: 'PROCSOCK_ARGUMENT',
  });
  await assert.rejects(serve({ policy: AS_ROOT, path: dir.path('x.sock'), killTimeout: 0 }), {
    code: 'PROCSOCK_ARGUMENT',
  });
  await assert.rejects(serve({ policy: AS_ROOT, path: dir.path('x.sock'), maxConnections: 0 }), {
    code: 'PROCSOCK_ARGUMENT',
  });
  await assert.rejects(
    serve({ policy: AS_ROOT, path: dir.path('x.sock'), limits: { maxArgs: -1 } }),
    {
      code: 'PROCSOCK_ARGUMENT',
    },
  );
});

test('a missing directory is named in the error', async () => {
  const path = dir.path('no/such/dir/daemon.sock');
  await assert.rejects(serve({ policy: AS_ROOT, path }), (error) => {
    assert.ok(error instanceof SocketPathError);
    assert.match(error.message, /directory .*no\/such\/dir does not exist/);
    return true;
  });
});

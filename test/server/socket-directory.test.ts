/**
 * The socket's directory is trusted only when nobody but root and the daemon's user can
 * change it: every directory on the way owned by one of them and not group/other-writable
 * unless sticky, every symlink on the way owned by one of them. Otherwise another user could
 * move the daemon's socket aside, bind their own, and read every client's argv and stdin.
 * (Run as root, as CI does: the files are handed to another uid with chown, which needs no
 * account; the attack itself is played by that uid through setpriv.)
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lchownSync,
  mkdirSync,
  readdirSync,
  symlinkSync,
} from 'node:fs';
import { after, describe, test } from 'node:test';
import { SocketPathError } from '../../src/errors.js';
import { serve } from '../../src/server/index.js';
import { MAX_SOCKET_PATH_BYTES } from '../../src/server/socket-directory.js';
import { startDaemonProcess } from '../helpers/daemon.js';
import { tempDir } from '../helpers/process.js';
import { RawClient, request } from '../helpers/raw-client.js';

const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : 'needs root (to hand files to another uid)';
/** Another user, by number: no account is needed to own files or to run as it. */
const OTHER = 4242;
const AS_ROOT = { allowRoot: true };

const dir = tempDir('procsock-socket-dir-');
after(() => dir.cleanup());

let serial = 0;
/** A fresh directory below the test's own, with `mode` and owner. */
function makeDir(mode: number, uid = 0, parent = dir.dir): string {
  const path = `${parent}/d${serial++}`;
  mkdirSync(path);
  chmodSync(path, mode);
  chownSync(path, uid, uid === 0 ? 0 : uid);
  return path;
}

async function assertRefused(path: string, message: RegExp): Promise<void> {
  await assert.rejects(serve({ policy: AS_ROOT, path }), (error) => {
    assert.ok(error instanceof SocketPathError, String(error));
    assert.match(error.message, message);
    return true;
  });
  assert.equal(existsSync(path), false, 'no socket was created');
}

async function assertServes(path: string, contain?: boolean): Promise<void> {
  const server = await serve({ policy: AS_ROOT, path, contain });
  try {
    const reply = await RawClient.exchange(path, request(['echo', 'ok']));
    assert.deepEqual(reply.pairs, [
      ['stdout', 'ok\n'],
      ['exitcode', '0'],
    ]);
  } finally {
    await server.close();
  }
  assert.equal(existsSync(path), false, 'the socket is removed at close');
}

describe('owners and modes of the directories on the way', { skip }, () => {
  test("a directory owned by another user: its owner could rename the daemon's socket", async () => {
    const theirs = makeDir(0o755, OTHER);
    await assertRefused(`${theirs}/daemon.sock`, /owned by uid 4242, not by root or the daemon/);
  });

  test('an ancestor owned by another user, though the directory itself is root’s', async () => {
    const theirs = makeDir(0o755, OTHER);
    const ours = makeDir(0o755, 0, theirs);
    await assertRefused(`${ours}/daemon.sock`, new RegExp(`under ${theirs}: it is owned by uid`));
  });

  test('writable by others, or by the group, without the sticky bit', async () => {
    await assertRefused(`${makeDir(0o777)}/daemon.sock`, /mode 0777 lets anyone replace/);
    await assertRefused(`${makeDir(0o775)}/daemon.sock`, /mode 0775 lets its group replace/);
  });

  test('a sticky world-writable directory (as /tmp) and a private one are fine', async () => {
    await assertServes(`${makeDir(0o1777)}/daemon.sock`);
    await assertServes(`${makeDir(0o700)}/daemon.sock`);
  });
});

describe('symbolic links on the way', { skip }, () => {
  test('a link owned by another user in a sticky directory is not followed', async () => {
    const sticky = makeDir(0o1777);
    const target = makeDir(0o700);
    const link = `${sticky}/run`;
    symlinkSync(target, link);
    lchownSync(link, OTHER, OTHER);
    await assertRefused(
      `${link}/daemon.sock`,
      /refusing to follow .*run: a symbolic link owned by uid 4242/,
    );
    assert.deepEqual(readdirSync(target), []);
  });

  test("a link of root's is followed, relative target and .. included", async () => {
    const target = makeDir(0o700);
    const holder = makeDir(0o755);
    symlinkSync(`../${target.split('/').at(-1)}/.`, `${holder}/link`);
    await assertServes(`${holder}/link/daemon.sock`);
  });
});

test('the attack: another user renames the socket away and binds their own', { skip }, async () => {
  // Where that user can do it, the daemon does not start; where it starts, they cannot.
  const theirs = makeDir(0o755, OTHER);
  const path = `${theirs}/daemon.sock`;
  const daemon = startDaemonProcess([], { path }).catch((error: Error) => error.message);
  assert.match(String(await daemon), /exited at start:.*owned by uid 4242/s);

  const sticky = makeDir(0o1777);
  const ours = `${sticky}/daemon.sock`;
  const server = await serve({ policy: AS_ROOT, path: ours });
  try {
    const moved = spawnSync('setpriv', [
      `--reuid=${OTHER}`,
      `--regid=${OTHER}`,
      '--clear-groups',
      'mv',
      ours,
      `${sticky}/moved.sock`,
    ]);
    assert.notEqual(moved.status, 0, 'the sticky bit stops the other user');
    assert.match(moved.stderr.toString(), /Operation not permitted|Permission denied/);
    assert.equal(existsSync(ours), true);
  } finally {
    await server.close();
  }
});

test(`a path over ${MAX_SOCKET_PATH_BYTES} bytes is refused as such`, async () => {
  const long = `${dir.dir}/${'x'.repeat(MAX_SOCKET_PATH_BYTES - dir.dir.length)}`;
  assert.equal(Buffer.byteLength(long), MAX_SOCKET_PATH_BYTES + 1);
  await assertRefused(long, /is 108 bytes long; a Unix socket path holds at most 107/);
  const fits = long.slice(0, -1);
  await assertServes(fits);
  // Uncontained, the addon binds (native/conn.c): it refused 107 bytes as too long, before.
  await assertServes(fits, false);
});

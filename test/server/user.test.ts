/**
 * `--user`: a program gets the account's HOME, USER and LOGNAME and starts in its home (or
 * `/` when the home is missing or closed to the user), as after `runuser -l` — not root's
 * HOME and working directory. Accounts are looked up through NSS (getent), also those only
 * a non-files source knows (the last test).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { test } from 'node:test';
import { resolveIdentity } from '../../src/policy/identity.js';
import type { ServeOptions } from '../../src/server/index.js';
import { startDaemon, startDaemonProcess } from '../helpers/daemon.js';
import { tempDir } from '../helpers/process.js';
import { RawClient, request } from '../helpers/raw-client.js';
import { testAccount } from '../helpers/users.js';

const withHome = testAccount('procsock-t-home', true);
const homeless = testAccount('procsock-t-nohome', '/nonexistent/procsock-t-nohome');
const closed = testAccount('procsock-t-closed', '/var/tmp/procsock-t-closed-home');
const skip = withHome && homeless && closed ? false : 'needs root and useradd';

const SHOW = [
  'sh',
  '-c',
  'printf "%s|%s|%s|%s|" "$HOME" "$USER" "$LOGNAME" "$(pwd)"; ls . >/dev/null && echo ok',
];

async function shown(policy: ServeOptions['policy']): Promise<string> {
  const daemon = await startDaemon({ policy });
  try {
    const reply = await RawClient.exchange(daemon.path, request(SHOW));
    assert.deepEqual(reply.exit, ['exitcode', '0'], reply.stderr);
    return reply.stdout;
  } finally {
    await daemon.close();
  }
}

test('the account’s HOME, USER, LOGNAME and home as the working directory', { skip }, async () => {
  const { name, home } = withHome!;
  assert.equal(await shown({ user: name }), `${home}|${name}|${name}|${home}|ok\n`);
  // By uid too; an explicit --env-set and --cwd still win.
  assert.equal(
    await shown({ user: withHome!.uid, envSet: { HOME: '/srv' }, cwd: '/' }),
    `/srv|${name}|${name}|/|ok\n`,
  );
});

test('a home that is missing, or closed to the user: the program starts in /', {
  skip,
}, async () => {
  assert.equal(
    await shown({ user: homeless!.name }),
    `${homeless!.home}|${homeless!.name}|${homeless!.name}|/|ok\n`,
  );
  mkdirSync(closed!.home, { recursive: true });
  chmodSync(closed!.home, 0o700);
  chownSync(closed!.home, 0, 0);
  assert.equal(
    await shown({ user: closed!.name }),
    `${closed!.home}|${closed!.name}|${closed!.name}|/|ok\n`,
  );
});

test('a uid without an account: HOME=/ and no USER or LOGNAME of the daemon’s', {
  skip,
}, async () => {
  assert.equal(await shown({ user: 4343, group: 4343 }), '/|||/|ok\n');
});

test('accounts are resolved through NSS (getent), by name and by uid', { skip }, () => {
  const byName = resolveIdentity(withHome!.name);
  assert.deepEqual(byName.account, withHome);
  assert.deepEqual(resolveIdentity(String(withHome!.uid)).account, withHome);
});

/**
 * An account that only a non-files NSS source knows (as LDAP or sssd accounts are): the
 * daemon runs in a mount namespace of its own where /etc/nsswitch.conf says `passwd: files
 * extrausers` and /var/lib/extrausers holds this test's passwd and group — nothing of the
 * machine's changes, and /etc/passwd never has the account (checked outside). Needs root,
 * unshare(1) and libnss-extrausers (.ci/run installs it).
 */
const NSS_MODULE = [
  '/usr/lib/libnss_extrausers.so.2',
  '/lib/x86_64-linux-gnu/libnss_extrausers.so.2',
];
const nssSkip = (() => {
  if (process.getuid?.() !== 0)
    return 'needs root (a mount namespace, and a program run as another user)';
  if (!NSS_MODULE.some((path) => existsSync(path))) {
    return 'libnss-extrausers is not installed (apt-get install libnss-extrausers; .ci/run does)';
  }
  if (spawnSync('unshare', ['-m', 'true']).status !== 0) return 'unshare -m does not work here';
  return false;
})();

test('an account only NSS knows (not in /etc/passwd): found through getent, with its HOME and home', {
  skip: nssSkip,
}, async () => {
  const dir = tempDir('procsock-nss-');
  const name = 'procsock-t-nss';
  const uid = 4345;
  const home = dir.path('home');
  mkdirSync(home, { mode: 0o700 });
  chownSync(home, uid, uid);
  mkdirSync(dir.path('extrausers'));
  writeFileSync(
    dir.path('extrausers/passwd'),
    `${name}:x:${uid}:${uid}:NSS only:${home}:/bin/sh\n`,
  );
  writeFileSync(dir.path('extrausers/group'), `${name}:x:${uid}:\n`);
  writeFileSync(
    dir.path('nsswitch.conf'),
    readFileSync('/etc/nsswitch.conf', 'utf8').replace(
      /^(passwd|group):.*$/gm,
      '$1: files extrausers',
    ),
  );
  assert.equal(
    spawnSync('getent', ['passwd', name]).status,
    2,
    'outside the namespace the account does not exist',
  );
  assert.ok(!readFileSync('/etc/passwd', 'utf8').includes(`${name}:`));
  const mounts =
    `mount --bind ${dir.path('nsswitch.conf')} /etc/nsswitch.conf && ` +
    `mount --bind ${dir.path('extrausers')} /var/lib/extrausers && exec "$0" "$@"`;
  const daemon = await startDaemonProcess(['--user', name], {
    prefix: ['unshare', '-m', 'sh', '-c', mounts],
  });
  try {
    const reply = await RawClient.exchange(
      daemon.path,
      request([
        'sh',
        '-c',
        'id -u; id -g; printf "%s|%s|%s|%s\\n" "$HOME" "$USER" "$LOGNAME" "$(pwd)"; touch mine',
      ]),
    );
    assert.deepEqual(reply.exit, ['exitcode', '0'], reply.stderr + daemon.stderr());
    assert.equal(reply.stdout, `${uid}\n${uid}\n${home}|${name}|${name}|${home}\n`);
    assert.equal(statSync(`${home}/mine`).uid, uid, 'the program ran as the account, at home');
  } finally {
    assert.equal(await daemon.stop(), 0);
    daemon.cleanup();
    dir.cleanup();
  }
});

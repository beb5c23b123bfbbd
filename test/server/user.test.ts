/**
 * `--user`: a program gets the account's HOME, USER and LOGNAME and starts in its home (or
 * `/` when the home is missing or closed to the user), as after `runuser -l` — not root's
 * HOME and working directory. Accounts are looked up through NSS (getent).
 */
import { strict as assert } from 'node:assert';
import { chmodSync, chownSync, mkdirSync } from 'node:fs';
import { test } from 'node:test';
import { resolveIdentity } from '../../src/policy/identity.js';
import type { ServeOptions } from '../../src/server/index.js';
import { startDaemon } from '../helpers/daemon.js';
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

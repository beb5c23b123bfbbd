/**
 * examples/systemd/procsock.service passes `systemd-analyze verify` as written, with procsock
 * installed where `npm install -g` puts it (/usr/local/bin, in a private mount namespace
 * holding a symlink to the packed package's bin, so the machine itself is not changed). The
 * unit checked is the one the package ships (the README copies it from `npm root -g`).
 */
import { strict as assert } from 'node:assert';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { installInto, packWorkspace, type Workspace } from '../helpers/package.js';

const run = promisify(execFile);

function why(): string | false {
  if (process.env.PROCSOCK_SPAWN === 'child_process') {
    return 'backend-independent: runs in the native pass';
  }
  if (process.getuid?.() !== 0) return 'needs root for a private mount namespace';
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'systemd-analyze is not installed (Debian: systemd; .ci/run installs it)';
  }
  return false;
}

describe('the systemd unit', { skip: why() }, () => {
  let workspace: Workspace;
  let bin: string;
  let unit: string;
  before(async () => {
    workspace = await packWorkspace();
    const { dir } = await installInto(workspace, 'systemd', ['--ignore-scripts']);
    bin = join(dir, 'node_modules', '.bin', 'procsock');
    unit = join(dir, 'node_modules', 'procsock', 'examples', 'systemd', 'procsock.service');
  });
  after(() => workspace?.cleanup());

  const verify = (setup: string) =>
    run('unshare', [
      '--mount',
      'sh',
      '-c',
      `mount -t tmpfs tmpfs /usr/local/bin && ${setup} && exec systemd-analyze verify "$0"`,
      unit,
    ]);

  test('systemd-analyze verify passes with procsock in /usr/local/bin', async () => {
    const { stderr } = await verify(`ln -s ${bin} /usr/local/bin/procsock`);
    assert.equal(stderr, '');
  });

  const installed = ['/usr/bin/procsock', '/bin/procsock'].find((path) => existsSync(path));
  test('and fails without it: the check can fail', {
    skip: installed && `${installed} exists`,
  }, async () => {
    await assert.rejects(verify('true'), /procsock is not executable/);
  });
});

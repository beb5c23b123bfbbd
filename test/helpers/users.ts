/**
 * Accounts for tests that run programs as another user (root only: CI runs as root). Each is
 * created once per machine with useradd and left in place: tests in parallel, or a later
 * run, find it there.
 */
import { spawnSync } from 'node:child_process';

export interface TestAccount {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function find(name: string): TestAccount | null {
  const result = spawnSync('getent', ['passwd', name], { encoding: 'utf8' });
  if (result.status !== 0) return null;
  const fields = result.stdout.trim().split(':');
  return { name, uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5]! };
}

/**
 * The account `name`, created if missing: with its home directory made (`home` true), or
 * with `home` as its home path, not created. Null when not root or useradd is missing.
 */
export function testAccount(name: string, home: true | string): TestAccount | null {
  if (process.getuid?.() !== 0) return null;
  const existing = find(name);
  if (existing) return existing;
  const homeArgs = home === true ? ['--create-home'] : ['--no-create-home', '--home-dir', home];
  spawnSync('useradd', ['--shell', '/bin/sh', ...homeArgs, name]);
  // Another test may have created it at the same moment: whoever won, it exists now.
  return find(name);
}

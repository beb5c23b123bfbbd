/**
 * The user and group programs run as, given by number or by name, looked up the way the C
 * library does — through NSS, so accounts from LDAP, sssd or systemd resolve as well as
 * those in /etc/passwd: `getent` is asked (Node has no getpwnam), and only where it is not
 * installed are /etc/passwd and /etc/group read. A name that is not found is an error at
 * start-up.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { PolicyError } from '../errors.js';

export interface Identity {
  uid: number;
  gid: number;
  /** The account (name, home), when the user has one: a bare uid may not. */
  account: Account | null;
}

export interface Account {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** Absolute paths only: a root daemon must not run whatever `getent` its PATH finds first. */
const GETENT = ['/usr/bin/getent', '/bin/getent'].find((path) => existsSync(path));

/** One entry of the `passwd` or `group` database, as its colon-separated fields. */
function lookup(database: 'passwd' | 'group', key: string): string[] | undefined {
  if (GETENT) {
    // `--`: a key that starts with a dash (`--user=--help`) is a key, never an option of getent's.
    const result = spawnSync(GETENT, [database, '--', key], { encoding: 'utf8' });
    // Exit 2: no such entry. Anything else but 0 means getent could not answer.
    if (result.status === 0) return result.stdout.split('\n')[0]!.split(':');
    if (result.status === 2) return undefined;
    throw new PolicyError(
      `getent ${database} ${key} failed: ${result.error?.message ?? result.stderr.trim()}`,
    );
  }
  let text: string;
  try {
    text = readFileSync(`/etc/${database}`, 'utf8');
  } catch {
    return undefined;
  }
  const column = NUMERIC.test(key) ? 2 : 0;
  return text
    .split('\n')
    .map((line) => line.split(':'))
    .find((fields) => fields[column] === key);
}

const NUMERIC = /^[0-9]+$/;

/**
 * The highest user or group id: uid_t is 32 bits, and its all-ones value, (uid_t)-1, is no id
 * but setresuid(2)'s "leave it unchanged".
 */
export const MAX_ID = 0xfffffffe;

/** A user or group id given as a number: in range, or a PolicyError saying what is wrong. */
function checkedId(what: 'user' | 'group', text: string): number {
  const id = Number(text);
  if (!Number.isSafeInteger(id) || id > MAX_ID) {
    throw new PolicyError(`${what} id ${text} is out of range: ids go from 0 to ${MAX_ID}`);
  }
  return id;
}

/** An entry's id field: a number, or the entry is not one (a getent that printed something else). */
function entryId(database: string, key: string, field: string | undefined): number {
  if (field === undefined || !NUMERIC.test(field) || Number(field) > MAX_ID) {
    throw new PolicyError(
      `getent ${database} ${key} gave no ${database} entry (an id field of ${JSON.stringify(field ?? '')})`,
    );
  }
  return Number(field);
}

function account(key: string, fields: string[]): Account {
  return {
    name: fields[0]!,
    uid: entryId('passwd', key, fields[2]),
    gid: entryId('passwd', key, fields[3]),
    home: fields[5] ?? '/',
  };
}

/**
 * `user` as a name or number; `group` defaults to the user's primary group (the same number
 * when a uid has no account).
 */
export function resolveIdentity(user: string | number, group?: string | number): Identity {
  const key = String(user);
  if (key === '') throw new PolicyError('the user is empty: give a name or a number');
  const numeric = NUMERIC.test(key);
  const wanted = numeric ? checkedId('user', key) : undefined;
  const entry = lookup('passwd', key);
  if (!entry && !numeric) throw new PolicyError(`no user named ${JSON.stringify(key)}`);
  const found = entry ? account(key, entry) : null;
  const uid = found?.uid ?? wanted!;
  let gid: number;
  if (group === undefined) {
    gid = found?.gid ?? uid;
  } else if (typeof group === 'number' || NUMERIC.test(group)) {
    gid = checkedId('group', String(group));
  } else if (group === '') {
    throw new PolicyError('the group is empty: give a name or a number');
  } else {
    const groupEntry = lookup('group', group);
    if (!groupEntry) throw new PolicyError(`no group named ${JSON.stringify(group)}`);
    gid = entryId('group', group, groupEntry[2]);
  }
  return { uid, gid, account: found };
}

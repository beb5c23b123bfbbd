/**
 * The user and group programs run as, given by number or by name. Names are looked up in
 * /etc/passwd and /etc/group (Node has no getpwnam), which is what the C library does on
 * a system without NSS modules; a name not found there is an error at start-up.
 */

import { readFileSync } from 'node:fs';
import { PolicyError } from '../errors.js';

export interface Identity {
  uid: number;
  gid: number;
}

function lookup(file: string, name: string): string[] | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name) return fields;
  }
  return undefined;
}

const NUMERIC = /^[0-9]+$/;

/**
 * `user` as a name or number; `group` defaults to the user's primary group (from
 * /etc/passwd when the user is a name, else the same number).
 */
export function resolveIdentity(user: string | number, group?: string | number): Identity {
  let uid: number;
  let primaryGid: number | undefined;
  if (typeof user === 'number' || NUMERIC.test(user)) {
    uid = Number(user);
  } else {
    const entry = lookup('/etc/passwd', user);
    if (!entry) throw new PolicyError(`no user named ${JSON.stringify(user)} in /etc/passwd`);
    uid = Number(entry[2]);
    primaryGid = Number(entry[3]);
  }
  let gid: number;
  if (group === undefined) {
    gid = primaryGid ?? uid;
  } else if (typeof group === 'number' || NUMERIC.test(group)) {
    gid = Number(group);
  } else {
    const entry = lookup('/etc/group', group);
    if (!entry) throw new PolicyError(`no group named ${JSON.stringify(group)} in /etc/group`);
    gid = Number(entry[2]);
  }
  return { uid, gid };
}

/**
 * A cgroup v2 directory of the test's own to make runs' leaves in, where this machine lets
 * the test make one (root, or a delegated cgroup): below this process's own cgroup, else
 * below the hierarchy's root. Tests skip with `cgroupSkip` where there is none.
 */
import { existsSync, mkdirSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { ownCgroup } from '../../src/channel/cgroup.js';

let made = 0;

/** A new empty cgroup v2 directory, or the reason there cannot be one here. */
export function makeTestCgroup(): { dir: string } | { skip: string } {
  const own = ownCgroup();
  if (own === null) return { skip: 'no cgroup v2 hierarchy is mounted here' };
  const name = `procsock-test-${process.pid}-${++made}`;
  let reason = '';
  for (const parent of new Set([own, rootOf(own)])) {
    removeStale(parent);
    const dir = join(parent, name);
    try {
      mkdirSync(dir);
    } catch (error) {
      reason = `cannot make a cgroup in ${parent} (${(error as NodeJS.ErrnoException).code}): no delegated cgroup v2 here`;
      continue;
    }
    if (!existsSync(join(dir, 'cgroup.kill'))) {
      rmdirSync(dir);
      return { skip: 'cgroup.kill is missing (Linux < 5.14)' };
    }
    return { dir };
  }
  return { skip: reason };
}

/** Test cgroups of test processes that are gone (killed before their `after` ran). */
function removeStale(parent: string): void {
  let entries: string[];
  try {
    entries = readdirSync(parent);
  } catch {
    return;
  }
  for (const entry of entries) {
    const pid = /^procsock-test-(\d+)-\d+$/.exec(entry)?.[1];
    if (pid === undefined || existsSync(`/proc/${pid}`)) continue;
    try {
      removeTestCgroup(join(parent, entry));
    } catch {
      // still busy, or another test process's removal won: left for the next one
    }
  }
}

function rootOf(dir: string): string {
  let root = dir;
  while (existsSync(join(root, '..', 'cgroup.procs'))) root = join(root, '..');
  return root;
}

/** The leaves left in a test cgroup (`run-…` directories). */
export function leavesOf(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name);
}

/** Removes a test cgroup and the cgroups below it (empty by then: a test that left a process has failed already). */
export function removeTestCgroup(dir: string): void {
  for (const leaf of leavesOf(dir)) removeTestCgroup(join(dir, leaf));
  rmdirSync(dir);
}

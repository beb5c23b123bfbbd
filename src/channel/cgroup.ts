/**
 * Cgroup v2 per run, where a cgroup is delegated to procsock: the reaper (native/reaper.c,
 * `-c DIR`) makes each contained run a leaf `DIR/run-<reaper's pid>`, puts the program in it
 * before its exec, stops the run through it (cgroup.kill) and removes it. This file holds what
 * JavaScript needs around that: checking a directory given as `cgroup`, finding this process's
 * own cgroup and whether it was delegated (`auto`), moving this process into a leaf of its
 * own (the "no internal processes" rule: a cgroup that hands out controllers to its children
 * holds no process itself), and cleaning up after a reaper that was killed before it could.
 */
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  rmdirSync,
  statSync,
  watch,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { ArgumentError } from '../errors.js';

/** What a run's leaf is called in its parent (the reaper's naming). */
export function runCgroup(parent: string, reaperPid: number): string {
  return join(parent, `run-${reaperPid}`);
}

/** What a run is given as `cgroup`: an absolute path (the reaper finds out the rest). */
export function checkCgroupPath(dir: unknown, what = 'cgroup'): asserts dir is string {
  if (typeof dir !== 'string' || !dir.startsWith('/') || dir.includes('\0')) {
    throw new ArgumentError(
      `${what}: a cgroup must be an absolute directory path, got ${String(dir)}`,
    );
  }
}

/**
 * Checks that `dir` is a cgroup v2 directory this process may make children in and move
 * processes into; throws `ArgumentError` saying why not (`what` names the option).
 */
export function checkCgroupDirectory(dir: string, what: string): void {
  checkCgroupPath(dir, what);
  let isDirectory = false;
  try {
    isDirectory = statSync(dir).isDirectory();
  } catch {
    // reported below
  }
  if (!isDirectory) throw new ArgumentError(`${what}: ${dir} is not a directory`);
  if (!existsSync(join(dir, 'cgroup.procs')) || !existsSync(join(dir, 'cgroup.controllers'))) {
    throw new ArgumentError(`${what}: ${dir} is not a cgroup v2 directory (no cgroup.controllers)`);
  }
  try {
    accessSync(dir, constants.W_OK);
    accessSync(join(dir, 'cgroup.procs'), constants.W_OK);
  } catch {
    throw new ArgumentError(
      `${what}: ${dir} is not delegated to this user (it cannot make cgroups there): ` +
        'see the README, "Containment" (systemd Delegate=yes)',
    );
  }
}

/** The cgroup v2 hierarchy's mount point, from /proc/self/mountinfo; null without one. */
function cgroup2Mount(): { mount: string; root: string } | null {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'latin1');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    // "id parent major:minor root mount-point options [optional…] - fstype source super-options"
    const [left, right] = line.split(' - ');
    if (!left || !right?.startsWith('cgroup2 ')) continue;
    const fields = left.split(' ');
    if (fields[3] !== undefined && fields[4] !== undefined) {
      return { root: unescapeMount(fields[3]), mount: unescapeMount(fields[4]) };
    }
  }
  return null;
}

function unescapeMount(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) =>
    String.fromCharCode(parseInt(octal, 8)),
  );
}

/** This process's cgroup v2 directory ("0::/path" in /proc/self/cgroup); null without one. */
export function ownCgroup(): string | null {
  const mount = cgroup2Mount();
  if (!mount) return null;
  let text: string;
  try {
    text = readFileSync('/proc/self/cgroup', 'latin1');
  } catch {
    return null;
  }
  const line = text.split('\n').find((entry) => entry.startsWith('0::'));
  if (line === undefined) return null;
  // The path is from the hierarchy's root (as this cgroup namespace sees it); the mount may
  // show a part of it only (its root field).
  let path = line.slice(3);
  if (mount.root !== '/') {
    if (path !== mount.root && !path.startsWith(`${mount.root}/`)) return null;
    path = path.slice(mount.root.length) || '/';
  }
  return path === '/' ? mount.mount : join(mount.mount, path);
}

/**
 * `cgroup: 'auto'`: this process's own cgroup, when it was delegated to it, else null.
 * Delegated means: not the hierarchy's root (a host's root cgroup is the system's), writable
 * by this process, and one of: systemd marked it (`Delegate=yes` sets the xattr
 * trusted.delegate or user.delegate, read through `delegateMark` when the native addon is
 * there), it belongs to this user and this user is not root (nobody else could have given
 * it), or it is a cgroup namespace's root (a container: the runtime gave it whole).
 */
export function delegatedCgroup(delegateMark: (dir: string) => boolean | null): string | null {
  const dir = ownCgroup();
  // The hierarchy's root has no cgroup.events: no process's own cgroup to split up.
  if (dir === null || !existsSync(join(dir, 'cgroup.events'))) return null;
  try {
    checkCgroupDirectory(dir, 'cgroup');
  } catch {
    return null;
  }
  if (delegateMark(dir) === true) return dir;
  const uid = process.geteuid?.() ?? 0;
  if (uid !== 0 && statSync(dir).uid === uid) return dir;
  // In a cgroup namespace of its own, this process's cgroup shows as "/": a container's.
  return readFileSync('/proc/self/cgroup', 'latin1').includes('0::/\n') ? dir : null;
}

/** The leaf this process moves itself into, in the cgroup that runs are made in. */
export const DAEMON_LEAF = 'procsock-daemon';

/**
 * Runs are made in `dir`; if this process is in `dir` itself, it moves into `dir/procsock-
 * daemon` first (every thread: cgroup.procs moves the whole process), so that `dir` holds no
 * process and its controllers can be handed to the runs' leaves; then enables there what
 * `dir` has of cpu, memory and pids (best effort: a controller its parent does not give is
 * left out). Returns the controllers the runs' leaves get.
 */
export function prepareCgroup(dir: string): string[] {
  if (ownCgroup() === dir) {
    const leaf = join(dir, DAEMON_LEAF);
    try {
      rmdirSync(leaf); // an empty one of an earlier daemon
    } catch {
      // absent, or busy (refused below)
    }
    try {
      writeFileSync(join(makeDirectory(leaf), 'cgroup.procs'), '0');
    } catch (error) {
      throw new ArgumentError(
        `cgroup: cannot move this process into ${leaf}: ${(error as Error).message}`,
      );
    }
  }
  const available = readFileSync(join(dir, 'cgroup.controllers'), 'latin1').split(/\s+/);
  const enabled: string[] = [];
  for (const controller of ['cpu', 'memory', 'pids']) {
    if (!available.includes(controller)) continue;
    try {
      writeFileSync(join(dir, 'cgroup.subtree_control'), `+${controller}`);
      enabled.push(controller);
    } catch {
      // another process is in dir (not a leaf), or the controller is threaded elsewhere
    }
  }
  return enabled;
}

function makeDirectory(path: string): string {
  try {
    mkdirSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  return path;
}

/**
 * After a reaper that died without its report (SIGKILLed): what it left in the run's leaf is
 * KILLed (cgroup.kill) and the leaf removed once empty. Never throws; the watcher it may
 * need does not keep the process alive.
 */
export function removeAbandonedCgroup(leaf: string): void {
  try {
    writeFileSync(join(leaf, 'cgroup.kill'), '1');
  } catch {
    // no cgroup.kill (Linux < 5.14) or the leaf is gone: the rmdir below tells
  }
  if (tryRemove(leaf)) return;
  try {
    // The kernel reports cgroup.events changes to inotify: "populated 0" once the last is gone.
    const watcher = watch(join(leaf, 'cgroup.events'), { persistent: false }, () => {
      if (tryRemove(leaf)) watcher.close();
    });
    if (tryRemove(leaf)) watcher.close();
  } catch {
    // the leaf went meanwhile
  }
}

function tryRemove(leaf: string): boolean {
  try {
    rmdirSync(leaf);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

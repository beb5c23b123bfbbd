/**
 * Looking at processes and descriptors from outside, through /proc: the leak checks of
 * every suite use these (open descriptors, live and zombie children).
 */
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Number of open descriptors of a process (this one by default). */
export function openFdCount(pid: number = process.pid): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** What each open descriptor of a process points at (`socket:[123]`, `pipe:[45]`, a path). */
export function openFds(pid: number = process.pid): string[] {
  const dir = `/proc/${pid}/fd`;
  return readdirSync(dir).map((fd) => {
    try {
      return `${fd} -> ${readlinkSync(`${dir}/${fd}`)}`;
    } catch {
      return fd;
    }
  });
}

export interface ProcessInfo {
  pid: number;
  ppid: number;
  pgid: number;
  /** R, S, D, Z (zombie), T… */
  state: string;
  command: string;
}

/** Reads /proc/PID/stat; undefined when the process is gone. */
export function processInfo(pid: number): ProcessInfo | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command is in parentheses and may itself contain spaces or parentheses.
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  const fields = stat.slice(close + 2).split(' ');
  return {
    pid,
    command: stat.slice(open + 1, close),
    state: fields[0]!,
    ppid: Number(fields[1]),
    pgid: Number(fields[2]),
  };
}

function allProcesses(): ProcessInfo[] {
  const list: ProcessInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const info = processInfo(Number(name));
    if (info) list.push(info);
  }
  return list;
}

/**
 * Children of a process, zombies included (state 'Z'). procsock's reaper (a contained run,
 * src/channel/contain.ts) is seen through: a live reaper counts as the programs it runs, so
 * a program started through one is found where an uncontained one would be; a reaper with
 * no child left, or a zombie one, counts as itself.
 */
export function childrenOf(pid: number = process.pid): ProcessInfo[] {
  return flatten(allProcesses(), pid);
}

function flatten(all: ProcessInfo[], pid: number): ProcessInfo[] {
  return all
    .filter((p) => p.ppid === pid)
    .flatMap((child) => {
      if (child.command !== 'procsock_reaper' || child.state === 'Z') return [child];
      const below = flatten(all, child.pid);
      return below.length > 0 ? below : [child];
    });
}

/** Every process in a process group (alive or zombie). */
export function processGroupMembers(pgid: number): ProcessInfo[] {
  return allProcesses().filter((p) => p.pgid === pgid);
}

/** True while the process exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  const info = processInfo(pid);
  return info !== undefined && info.state !== 'Z';
}

/**
 * Waits until `condition()` holds, checking every few ms, for things that have no event
 * here (a process in another process being reaped). Throws with `what` on timeout.
 */
export async function waitUntil(
  condition: () => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A fresh private directory for a test's sockets; `cleanup()` removes it. */
export function tempDir(prefix = 'procsock-test-'): {
  dir: string;
  path(name: string): string;
  cleanup(): void;
} {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    path: (name) => join(dir, name),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

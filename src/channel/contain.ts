/**
 * Containment: procsock's reaper (native/reaper.c, built with the addon into
 * build/Release/procsock_reaper) runs between this process and a contained program. It is a
 * child subreaper, so everything the program starts stays below it whatever process group
 * or session it moves to; it ends the whole tree when the program exits (after the exit
 * grace), when it is stopped (TERM, then KILL after the kill timeout) and when this process
 * dies (a parent-death signal it sets itself, so this holds on both spawn backends), and
 * reports on its descriptor 3 how the program ended, what the tree cost and how many
 * descendants it had to stop.
 *
 * The user's Node process never becomes a subreaper: the reaper is a process of its own.
 */
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ExitStatus, exitedWith, killedBy } from '../core/output.js';
import { wireSignalName } from '../core/signals.js';
import { ArgumentError } from '../errors.js';
import { runtimeLibc } from '../native/locate.js';
import type { ChildUsage } from './usage.js';

/** The package root: the same two levels up from src/channel and dist/channel. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Where the reaper is run from, as the addon is loaded (src/native/locate.ts):
 * `PROCSOCK_REAPER_PATH` (exactly that file: a sanitizer build under test), else the one
 * compiled at install (`build/Release/procsock_reaper`), else the prebuilt one shipped in the
 * package for this platform and C library (`prebuilds/linux-<arch>/procsock_reaper.<libc>`),
 * so that a machine without a C compiler still contains its runs.
 */
export function reaperCandidates(): string[] {
  const explicit = process.env.PROCSOCK_REAPER_PATH;
  if (explicit) return [explicit];
  return [
    join(ROOT, 'build', 'Release', 'procsock_reaper'),
    join(
      ROOT,
      'prebuilds',
      `${process.platform}-${process.arch}`,
      `procsock_reaper.${runtimeLibc()}`,
    ),
  ];
}

let found: string | null | undefined;

/** The reaper's path, or null when there is none that can be executed here. */
export function reaperPath(): string | null {
  if (found === undefined) {
    found =
      reaperCandidates().find((path) => {
        try {
          accessSync(path, constants.X_OK);
          return true;
        } catch {
          return false;
        }
      }) ?? null;
  }
  return found;
}

/** Whether there is a reaper (compiled at install, or prebuilt). */
export function reaperAvailable(): boolean {
  return reaperPath() !== null;
}

export const REAPER_MISSING =
  'containment needs procsock_reaper: prebuilt in the package for linux x64 and arm64 ' +
  '(glibc, musl), else compiled at install with a C compiler (then npm rebuild procsock)';

/**
 * What runs `file` under the reaper: the reaper's file, and the arguments that go before the
 * program's own argv (`SpawnRequest.argvPrefix`: the argv itself is not copied).
 */
export function reaperArgv(
  file: string,
  timing: {
    exitGrace: number;
    killTimeout: number;
    detached: boolean;
    processGroup: boolean;
    /** A delegated cgroup v2 directory: the run gets a leaf cgroup there (see `cgroup`). */
    cgroup?: string | undefined;
    /** The program's user and group, set by the reaper in the program alone (with `cgroup`). */
    identity?: { uid: number; gid: number } | undefined;
  },
): { file: string; argvPrefix: string[] } {
  const ms = (value: number) => String(Math.max(0, Math.round(value)));
  // Parent 0: a detached run sets no parent-death signal.
  const parent = timing.detached ? '0' : String(process.pid);
  const reaper = reaperPath();
  if (reaper === null) throw new ArgumentError(REAPER_MISSING);
  return {
    file: reaper,
    argvPrefix: [
      'procsock_reaper',
      ...(timing.cgroup === undefined ? [] : ['-c', timing.cgroup]),
      ...(timing.identity === undefined
        ? []
        : ['-u', String(timing.identity.uid), '-g', String(timing.identity.gid)]),
      parent,
      ms(timing.exitGrace),
      ms(timing.killTimeout),
      timing.processGroup ? '1' : '0', // the program leads a process group of its own
      file,
    ],
  };
}

/** The program's pid, from the reaper's first line, once it has come; null before. */
export function reportedPid(text: string): number | null {
  const match = /^pid=(\d+)\n/.exec(text);
  return match ? Number(match[1]) : null;
}

export interface ReaperReport {
  status: ExitStatus;
  usage: ChildUsage;
  /** Processes other than the program that had to be signalled. */
  descendantsStopped: number;
  /** errno of the program's failed exec; 0 when it ran. */
  execErrno: number;
  /** errno of a leaf cgroup that could not be made or joined (the program did not run); else 0. */
  cgroupErrno: number;
  /** The leaf cgroup's memory.peak, bytes, where its memory controller was enabled; else null. */
  memoryPeak: number | null;
  /** Whether the reaper sent KILL to the tree (its kill timeout expired, or it was asked to). */
  killed: boolean;
}

/** Parses the reaper's one line; null when it is missing or malformed (the reaper was killed). */
export function parseReaperReport(text: string): ReaperReport | null {
  const fields = new Map<string, number>();
  for (const part of text.trim().split(/\s+/)) {
    const [key, value] = part.split('=');
    if (key && value !== undefined && /^-?\d+$/.test(value)) fields.set(key, Number(value));
  }
  const raw = fields.get('status');
  if (raw === undefined) return null;
  // A wait status: low 7 bits the signal (0: exited), bits 8-15 the exit code.
  const signal = raw & 0x7f;
  const status = signal === 0 ? exitedWith((raw >> 8) & 0xff) : killedBy(wireSignalName(signal));
  return {
    status,
    usage: {
      userCPUTime: fields.get('utime') ?? null,
      systemCPUTime: fields.get('stime') ?? null,
      maxRSS: fields.get('maxrss') ?? null,
    },
    descendantsStopped: fields.get('stopped') ?? 0,
    execErrno: fields.get('execerr') ?? 0,
    cgroupErrno: fields.get('cgerr') ?? 0,
    memoryPeak: fields.get('mempeak') ?? null,
    killed: (fields.get('killed') ?? 0) > 0,
  };
}

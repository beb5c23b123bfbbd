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
import { fileURLToPath } from 'node:url';
import { type ExitStatus, exitedWith, killedBy } from '../core/output.js';
import { wireSignalName } from '../core/signals.js';
import type { ChildUsage } from './usage.js';

// The same relative path from src/channel and from dist/channel.
const REAPER = fileURLToPath(new URL('../../build/Release/procsock_reaper', import.meta.url));

let available: boolean | null = null;

/** Whether the reaper was built (with the native addon, at install). */
export function reaperAvailable(): boolean {
  if (available === null) {
    try {
      accessSync(REAPER, constants.X_OK);
      available = true;
    } catch {
      available = false;
    }
  }
  return available;
}

export const REAPER_MISSING =
  'containment needs procsock_reaper, built with the native addon at install ' +
  '(python3, make and a C compiler; then npm rebuild procsock)';

/**
 * What runs `file` under the reaper: the reaper's file, and the arguments that go before the
 * program's own argv (`SpawnRequest.argvPrefix`: the argv itself is not copied).
 */
export function reaperArgv(
  file: string,
  timing: { exitGrace: number; killTimeout: number; detached: boolean; processGroup: boolean },
): { file: string; argvPrefix: string[] } {
  const ms = (value: number) => String(Math.max(0, Math.round(value)));
  // Parent 0: a detached run sets no parent-death signal.
  const parent = timing.detached ? '0' : String(process.pid);
  return {
    file: REAPER,
    argvPrefix: [
      'procsock_reaper',
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
  };
}
